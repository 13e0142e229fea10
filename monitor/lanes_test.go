package monitor

import (
	"fmt"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

// TestLanesRecordEachInputOnce: a backlog in which every record's outcome
// arrives three times among the other records' inputs, so one pulled batch
// holds several inputs for the same record, goes through many lanes. The
// ledger, read back, holds exactly one event per distinct input and one join
// per record with the right labels, each after both of its inputs.
func TestLanesRecordEachInputOnce(t *testing.T) {
	const n = 300
	h := newHarness(t)
	cfg := testConfig()
	cfg.Consumer.Lanes = 64
	id := func(i int) string { return fmt.Sprintf("r-%04d", i) }
	var preds, outs []any
	for i := range n {
		preds = append(preds, schemas.Prediction{SchemaVersion: schemas.Version, RecordID: id(i), Source: "clinic",
			Probability: float64(i % 2), Label: i % 2, Threshold: 0.5, Model: schemas.ModelRef{Name: "test", Version: "1"}, LatencyMS: 1})
	}
	for rep := range 3 {
		for i := range n {
			outs = append(outs, schemas.Outcome{SchemaVersion: schemas.Version, RecordID: id((i + rep*7) % n), Label: (i + rep*7) % n % 3 % 2})
		}
	}
	// Outcomes first for half of the records: both join orders.
	h.publishAll(h.subjects.Outcomes("clinic"), outs[:n/2])
	h.publishAll(h.subjects.Predictions("clinic"), preds)
	h.publishAll(h.subjects.Outcomes("clinic"), outs[n/2:])
	r := h.start(cfg, newFakeClock())
	h.settleWithin(r, 2*time.Minute)

	count := map[string]int{}
	seen := map[string]int{} // record id -> inputs recorded so far in ledger order
	for _, m := range natstest.StreamMessages(t, h.js, cfg.Ledger.Stream) {
		ev, err := decodeEvent(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		count[ev.Kind]++
		switch ev.Kind {
		case kindPrediction, kindOutcome:
			seen[ev.RecordID]++
		case kindJoin:
			var i int
			if _, err := fmt.Sscanf(ev.RecordID, "r-%04d", &i); err != nil {
				t.Fatal(err)
			}
			if ev.Predicted != i%2 || ev.Actual != i%3%2 {
				t.Errorf("join %s: predicted %d actual %d, want %d %d", ev.RecordID, ev.Predicted, ev.Actual, i%2, i%3%2)
			}
			if seen[ev.RecordID] != 2 {
				t.Errorf("join %s after %d of its inputs in the ledger, want 2", ev.RecordID, seen[ev.RecordID])
			}
		}
	}
	if count[kindPrediction] != n || count[kindOutcome] != n || count[kindJoin] != n || len(count) != 3 {
		t.Fatalf("ledger events by kind %v, want %d predictions, outcomes and joins", count, n)
	}
	if s := r.m.Snapshot(); s.Joined != n || s.Outcomes != n {
		t.Errorf("snapshot joined %d outcomes %d, want %d %d", s.Joined, s.Outcomes, n, n)
	}
}
