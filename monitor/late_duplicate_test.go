package monitor

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestLateDuplicateIsNotCountedAgain is the regression test of the "monitor
// double count" defect: a duplicate prediction and outcome of a joined record
// that arrive after its join entry expired (label deadline) must not be
// counted, joined or scored again. Without the memory of resolved records
// (joined_ttl) both were counted a second time.
func TestLateDuplicateIsNotCountedAgain(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig()
	cfg.LabelDeadline = time.Second
	clock := newFakeClock()
	r := h.start(cfg, clock)

	h.prediction("s", "x", 1, 1, "")
	h.outcome("s", "x", 0, "")
	h.prediction("s", "open", 1, 1, "") // never joined: expires unresolved
	h.settle(r)
	if s := r.m.Snapshot(); s.Joined != 1 || s.Predictions != 2 || s.Outcomes != 1 {
		t.Fatalf("before the duplicates: joined %d predictions %d outcomes %d, want 1 2 1", s.Joined, s.Predictions, s.Outcomes)
	}

	// The label deadline passes; a checkpoint prunes the expired entries,
	// so the record is remembered only as resolved.
	clock.Advance(2 * time.Second)
	r.m.mu.Lock()
	r.m.join.prune(clock.Now())
	open, done := r.m.join.sizes()
	r.m.mu.Unlock()
	if open != 0 || done != 1 {
		t.Fatalf("after the deadline: %d open entries and %d resolved records, want 0 and 1", open, done)
	}

	// The duplicates arrive, published with new message ids so that
	// PREDICTIONS and OUTCOMES store them; and a late input of the record
	// that expired unresolved, which is new information: counted.
	h.prediction("s", "x", 1, 1, "late-p")
	h.outcome("s", "x", 0, "late-o")
	h.outcome("s", "open", 1, "")
	h.settle(r)

	s := r.m.Snapshot()
	late := testutil.ToFloat64(r.m.metrics.lateDuplicates)
	t.Logf("FIGURE TestLateDuplicateIsNotCountedAgain late_inputs=2 joined=%d predictions=%d outcomes=%d late_duplicates_total=%v",
		s.Joined, s.Predictions, s.Outcomes, late)
	if s.Joined != 1 || s.Predictions != 2 || s.Outcomes != 2 || s.Cumulative.FP != 1 {
		t.Errorf("after the late duplicates: joined %d predictions %d outcomes %d FP %d, want 1 2 2 1", s.Joined, s.Predictions, s.Outcomes, s.Cumulative.FP)
	}
	if late != 2 {
		t.Errorf("late_duplicates_total = %v, want 2", late)
	}

	// Past joined_ttl the record is forgotten: the memory stays bounded.
	clock.Advance(cfg.JoinedTTL + time.Second)
	r.m.mu.Lock()
	r.m.join.prune(clock.Now())
	_, done = r.m.join.sizes()
	r.m.mu.Unlock()
	if done != 0 {
		t.Errorf("%d resolved records remembered past joined_ttl, want 0", done)
	}
}
