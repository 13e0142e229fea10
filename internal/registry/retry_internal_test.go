package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestTransientErrors(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name           string
		ctx            context.Context
		err            error
		wantUnanswered bool
		wantTransient  bool
	}{
		{name: "no responders", ctx: live, err: fmt.Errorf("reading: %w", nats.ErrNoResponders), wantUnanswered: true, wantTransient: true},
		{name: "no stream response", ctx: live, err: jetstream.ErrNoStreamResponse, wantUnanswered: true, wantTransient: true},
		{name: "cluster unavailable", ctx: live, err: &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, wantUnanswered: true, wantTransient: true},
		{name: "attempt timed out", ctx: live, err: context.DeadlineExceeded, wantTransient: true},
		{name: "request timed out", ctx: live, err: nats.ErrTimeout, wantTransient: true},
		{name: "operation's time is up", ctx: ended, err: context.DeadlineExceeded},
		{name: "no responders, time is up", ctx: ended, err: nats.ErrNoResponders, wantUnanswered: true},
		{name: "revision conflict", ctx: live, err: jetstream.ErrKeyExists},
		{name: "not found", ctx: live, err: jetstream.ErrKeyNotFound},
		{name: "bad request", ctx: live, err: &jetstream.APIError{Code: 400, ErrorCode: 10003}},
		{name: "other", ctx: live, err: errors.New("boom")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unanswered(tt.err); got != tt.wantUnanswered {
				t.Errorf("unanswered = %v, want %v", got, tt.wantUnanswered)
			}
			if got := transient(tt.ctx, tt.err); got != tt.wantTransient {
				t.Errorf("transient = %v, want %v", got, tt.wantTransient)
			}
		})
	}
}

// TestLandedReady: after the answer to the update that marks a push ready
// is lost, the push goes on (and is audited) only if what it reads back is
// its own update: the same push, ready, with the same files and signature.
func TestLandedReady(t *testing.T) {
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	want := Metadata{State: StateReady, PushedAt: at, Files: map[string]FileInfo{"model.json": {SHA256: "ab", Size: 2}}}
	tests := []struct {
		name string
		edit func(m *Metadata)
		ok   bool
	}{
		{"landed", func(*Metadata) {}, true},
		{"still uploading", func(m *Metadata) { m.State = StateUploading }, false},
		{"signature differs", func(m *Metadata) { m.Signed = true }, false},
		{"another push", func(m *Metadata) { m.PushedAt = at.Add(time.Second) }, false},
		{"other files", func(m *Metadata) { m.Files = map[string]FileInfo{"model.json": {SHA256: "cd", Size: 2}} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			have := want
			have.Files = maps.Clone(want.Files)
			tt.edit(&have)
			if got := landedReady(&have, &want); got != tt.ok {
				t.Fatalf("landedReady = %v, want %v", got, tt.ok)
			}
		})
	}
}
