package scorer

import (
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

// TestInstanceHeader: with WithInstance every output (prediction, shadow
// prediction, dead letter) carries the scorer's name in ScorerHeader;
// without it, none does.
func TestInstanceHeader(t *testing.T) {
	for _, tc := range []struct {
		name     string
		instance string
	}{
		{"named", "cardiostream-scorer@test pid 1"},
		{"unnamed", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			var opts []Option
			if tc.instance != "" {
				opts = append(opts, WithInstance(tc.instance))
			}
			r := e.start(t, testConfig(), fakeModel{}, opts...)
			if err := r.s.SetModels(fakeModel{}, newVersioned("shadow-1", 2, 0)); err != nil {
				t.Fatal(err)
			}
			e.publishRecords(t, "clinic", "h", 20)
			e.publish(t, e.subjects.Records("clinic"), []byte(`{"id":"bad"}`))
			e.settled(t, 30*time.Second)
			seen := map[string]int{}
			for _, stream := range []string{schemas.StreamPredictions, schemas.StreamDeadLetter} {
				for _, m := range natstest.StreamMessages(t, e.js, stream) {
					seen[stream]++
					if got := m.Headers().Get(schemas.ScorerHeader); got != tc.instance {
						t.Errorf("%s on %s: %s %q, want %q", stream, m.Subject(), schemas.ScorerHeader, got, tc.instance)
					}
				}
			}
			if seen[schemas.StreamPredictions] != 40 || seen[schemas.StreamDeadLetter] != 1 {
				t.Fatalf("outputs %v, want 40 predictions (20 main, 20 shadow) and 1 dead letter", seen)
			}
		})
	}
}
