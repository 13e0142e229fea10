package monitor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cardiostream/cardiostream/internal/natstest"
)

// TestLateDuplicateIsNotCountedAgain is the regression test of the "monitor
// double count" defect: a duplicate prediction and outcome of a joined record
// that arrive after its pending entry expired (label deadline) and after the
// ledger's duplicate window must not be counted, joined or scored again.
// Before the joined marker both were counted a second time.
func TestLateDuplicateIsNotCountedAgain(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig()
	cfg.LabelDeadline = time.Second
	r := h.start(cfg, newFakeClock())

	h.prediction("s", "x", 1, 1, "")
	h.outcome("s", "x", 0, "")
	h.prediction("s", "open", 1, 1, "") // never joined: expires unresolved
	h.settle(r)
	if s := r.m.Snapshot(); s.Joined != 1 || s.Predictions != 2 || s.Outcomes != 1 {
		t.Fatalf("before the duplicates: joined %d predictions %d outcomes %d, want 1 2 1", s.Joined, s.Predictions, s.Outcomes)
	}

	// The pending entries expire (server time).
	ctx := context.Background()
	natstest.Eventually(t, 20*time.Second, func() error {
		st, err := r.m.pending.Status(ctx)
		if err != nil {
			return err
		}
		if st.Values() != 0 {
			return fmt.Errorf("%d pending entries left", st.Values())
		}
		return nil
	})
	// Time passes beyond the ledger's duplicate window: shrinking the window
	// makes the server forget the event ids now instead of in an hour.
	ledger, err := h.js.Stream(ctx, cfg.Ledger.Stream)
	if err != nil {
		t.Fatal(err)
	}
	lc := ledger.CachedInfo().Config
	lc.Duplicates = 100 * time.Millisecond
	if _, err := h.js.UpdateStream(ctx, lc); err != nil {
		t.Fatal(err)
	}
	// Proof that the window is gone: the same event id is stored again.
	probe := fmt.Sprintf("probe-%d", time.Now().UnixNano())
	natstest.Eventually(t, 10*time.Second, func() error {
		if _, err := h.js.Publish(ctx, h.subjects.Prefix+".monitor.ledger.probe.s", []byte("{}"), jetstream.WithMsgID(probe)); err != nil {
			return err
		}
		info, err := ledger.Info(ctx, jetstream.WithSubjectFilter(h.subjects.Prefix+".monitor.ledger.probe.s"))
		if err != nil {
			return err
		}
		if n := info.State.Subjects[h.subjects.Prefix+".monitor.ledger.probe.s"]; n < 2 {
			return fmt.Errorf("%s: probe stored %d times, want 2 (duplicate window still holds it)", probe, n)
		}
		return nil
	})

	// The duplicates arrive, published with new message ids so that
	// PREDICTIONS and OUTCOMES store them.
	h.prediction("s", "x", 1, 1, "late-p")
	h.outcome("s", "x", 0, "late-o")
	h.settle(r)

	kinds := map[string]int{}
	for _, msg := range natstest.StreamMessages(t, h.js, cfg.Ledger.Stream) {
		ev, err := decodeEvent(msg.Data())
		if err != nil {
			continue // the probe
		}
		if ev.RecordID == "x" {
			kinds[ev.Kind]++
		}
	}
	if kinds[kindPrediction] != 1 || kinds[kindOutcome] != 1 || kinds[kindJoin] != 1 {
		t.Errorf("ledger events of record x: %v, want one prediction, one outcome, one join", kinds)
	}
	s := r.m.Snapshot()
	if s.Joined != 1 || s.Predictions != 2 || s.Outcomes != 1 || s.Cumulative.FP != 1 {
		t.Errorf("after the late duplicates: joined %d predictions %d outcomes %d FP %d, want 1 2 1 1", s.Joined, s.Predictions, s.Outcomes, s.Cumulative.FP)
	}
	t.Logf("FIGURE TestLateDuplicateIsNotCountedAgain late_inputs=2 ledger_events_x=%v joined=%d predictions=%d outcomes=%d late_duplicates_total=%v",
		kinds, s.Joined, s.Predictions, s.Outcomes, testutil.ToFloat64(r.m.metrics.lateDuplicates))
	if got := testutil.ToFloat64(r.m.metrics.lateDuplicates); got != 2 {
		t.Errorf("late_duplicates_total = %v, want 2", got)
	}
}
