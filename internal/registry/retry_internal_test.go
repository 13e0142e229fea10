package registry

import (
	"maps"
	"testing"
	"time"
)

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
