package jsretry

import (
	"context"
	"errors"
	"fmt"
	"testing"

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
			if got := Unanswered(tt.err); got != tt.wantUnanswered {
				t.Errorf("unanswered = %v, want %v", got, tt.wantUnanswered)
			}
			if got := Transient(tt.ctx, tt.err); got != tt.wantTransient {
				t.Errorf("transient = %v, want %v", got, tt.wantTransient)
			}
		})
	}
}
