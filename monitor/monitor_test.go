package monitor

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

func TestJoinBothOrders(t *testing.T) {
	h := newHarness(t)
	r := h.start(testConfig(), newFakeClock())

	h.prediction("clinic-a", "r1", 1, 3, "") // prediction first: TP
	h.outcome("clinic-a", "r1", 1, "")
	h.outcome("clinic-a", "r2", 0, "") // outcome first: FP
	h.prediction("clinic-a", "r2", 1, 5, "")
	h.outcome("clinic-b", "r1", 0, "") // same id, other source: stays pending
	h.settle(r)

	s := r.m.Snapshot()
	if s.Joined != 2 || s.Predictions != 2 || s.Outcomes != 3 || s.Received != 2 {
		t.Fatalf("joined %d predictions %d outcomes %d received %d, want 2 2 3 2", s.Joined, s.Predictions, s.Outcomes, s.Received)
	}
	want := classify(1, 1, 0, 0)
	if s.Cumulative != want || s.Window != want {
		t.Errorf("cumulative %+v window %+v, want %+v", s.Cumulative, s.Window, want)
	}
	if s.PendingPredictions != 0 || s.PendingOutcomes != 1 {
		t.Errorf("pending predictions %d outcomes %d, want 0 1", s.PendingPredictions, s.PendingOutcomes)
	}
	if s.LatencySamples != 2 || s.LatencyP50 != 3 || s.LatencyP99 != 5 {
		t.Errorf("latency samples %d p50 %v p99 %v, want 2 3 5", s.LatencySamples, s.LatencyP50, s.LatencyP99)
	}
}

func TestDuplicatesCountOnce(t *testing.T) {
	h := newHarness(t)
	r := h.start(testConfig(), newFakeClock())

	// Published twice with different ids: both are stored in PREDICTIONS.
	h.prediction("s", "dup", 1, 1, "p-1")
	h.prediction("s", "dup", 1, 1, "p-2")
	// Published twice with one id: JetStream keeps one.
	h.prediction("s", "dup2", 0, 1, "same")
	h.prediction("s", "dup2", 0, 1, "same")
	h.outcome("s", "dup", 1, "")
	h.outcome("s", "dup", 1, "")
	h.outcome("s", "dup2", 0, "")
	h.settle(r)
	// A duplicate after the join is recognised by the resolved entry.
	h.prediction("s", "dup", 1, 1, "p-3")
	h.outcome("s", "dup2", 0, "")
	h.settle(r)

	s := r.m.Snapshot()
	if s.Predictions != 2 || s.Outcomes != 2 || s.Joined != 2 {
		t.Fatalf("predictions %d outcomes %d joined %d, want 2 2 2", s.Predictions, s.Outcomes, s.Joined)
	}
	if s.Cumulative.TP != 1 || s.Cumulative.TN != 1 || s.Cumulative.Samples != 2 {
		t.Errorf("confusion %+v, want TP 1 TN 1", s.Cumulative)
	}
	if s.PendingPredictions != 0 || s.PendingOutcomes != 0 {
		t.Errorf("pending %d/%d, want 0/0", s.PendingPredictions, s.PendingOutcomes)
	}
}

func TestUnscorableOutcomes(t *testing.T) {
	h := newHarness(t)
	r := h.start(testConfig(), newFakeClock())

	h.deadLetter("s", "d1", schemas.StageValidate) // dead letter first
	h.outcome("s", "d1", 1, "")
	h.outcome("s", "d2", 0, "") // outcome first
	h.deadLetter("s", "d2", schemas.StageDecode)
	h.deadLetter("s", "", schemas.StageDecode) // no readable id: counted, never pending
	h.deadLetter("s", "d3", "weird")           // unknown stage
	h.prediction("s", "ok", 1, 2, "")
	h.settle(r)

	s := r.m.Snapshot()
	if s.OutcomesUnscorable != 2 || s.Joined != 0 || s.DeadLettered != 4 || s.Received != 5 {
		t.Fatalf("unscorable %d joined %d dead %d received %d, want 2 0 4 5", s.OutcomesUnscorable, s.Joined, s.DeadLettered, s.Received)
	}
	wantStages := map[schemas.Stage]int64{schemas.StageValidate: 1, schemas.StageDecode: 2, "unknown": 1}
	if !reflect.DeepEqual(s.DeadLetteredByStage, wantStages) {
		t.Errorf("by stage %v, want %v", s.DeadLetteredByStage, wantStages)
	}
	if s.PendingOutcomes != 0 || s.PendingDeadLetters != 1 || s.PendingPredictions != 1 {
		t.Errorf("pending outcomes %d deadletters %d predictions %d, want 0 1 1", s.PendingOutcomes, s.PendingDeadLetters, s.PendingPredictions)
	}
	if s.ErrorRateSamples != 5 || s.ErrorRate != 0.8 {
		t.Errorf("error rate %v over %d, want 0.8 over 5", s.ErrorRate, s.ErrorRateSamples)
	}
}

func TestInvalidInputsAreRefused(t *testing.T) {
	h := newHarness(t)
	r := h.start(testConfig(), newFakeClock())
	h.publish(h.subjects.Predictions("s"), "", map[string]any{"record_id": "", "label": 1})
	h.publish(h.subjects.Outcomes("s"), "", map[string]any{"record_id": "a", "label": 7})
	h.publish(h.subjects.Predictions("s")+".shadow", "", map[string]any{"record_id": "x", "label": 1}) // not ours
	// Forged messages the scorer never writes: a record id no record can
	// have must be refused (counted as invalid), not held as a join.
	huge := strings.Repeat("x", 70_000)
	h.publish(h.subjects.Predictions("s"), "", map[string]any{"record_id": huge, "label": 1})
	h.publish(h.subjects.Predictions("s"), "", map[string]any{"record_id": "a b*>", "label": 0})
	h.publish(h.subjects.DeadLetter("s"), "", map[string]any{"record_id": huge, "stage": "decode"})
	h.settle(r)
	// The position is folded a moment before the counter is incremented:
	// poll for the counters.
	natstest.Eventually(t, 10*time.Second, func() error {
		got := testutil.ToFloat64(r.m.metrics.invalid["predictions"]) + testutil.ToFloat64(r.m.metrics.invalid["outcomes"]) +
			testutil.ToFloat64(r.m.metrics.invalid["deadletter"])
		if got != 5 {
			return fmt.Errorf("invalid_messages_total = %v, want 5", got)
		}
		return nil
	})
	if s := r.m.Snapshot(); s.Predictions != 0 || s.Outcomes != 0 || s.DeadLettered != 0 {
		t.Fatalf("predictions %d outcomes %d dead letters %d, want 0 0 0", s.Predictions, s.Outcomes, s.DeadLettered)
	}
}

// publishRecords publishes n records numbered from first: outcomes before
// predictions for every third one, every fifth prediction wrong; most also
// get a shadow prediction.
func publishRecords(h *harness, first, n int) {
	h.tb.Helper()
	for i := first; i < first+n; i++ {
		id := fmt.Sprintf("rec-%04d", i)
		actual := i % 2
		pred := actual
		if i%5 == 0 {
			pred = 1 - actual
		}
		if i%3 == 0 {
			h.outcome("src", id, actual, "")
			h.prediction("src", id, pred, float64(i%50), "")
		} else {
			h.prediction("src", id, pred, float64(i%50), "")
			if i%7 != 0 { // some stay pending
				h.outcome("src", id, actual, "")
			}
		}
		if i%11 == 0 {
			h.deadLetter("src", fmt.Sprintf("dead-%d", i), schemas.StageScore)
		}
		if i%4 != 0 { // a shadow model's prediction, right 3 times in 4
			h.versionedPrediction(h.subjects.ShadowPrediction("src"), "src", id, "2", actual^boolInt(i%8 == 1), "")
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// comparable strips what legitimately differs between two runs.
func comparable(s Snapshot) Snapshot {
	s.Positions = nil
	s.Rules = nil
	return s
}

func TestRestartEqualsUninterruptedRun(t *testing.T) {
	const n = 200
	clock := newFakeClock() // fixed: both runs stamp the same times

	ref := newHarness(t)
	rr := ref.start(testConfig(), clock)
	publishRecords(ref, 0, n)
	ref.settle(rr)
	want := comparable(rr.m.Snapshot())
	if want.Joined < 100 {
		t.Fatalf("reference run joined only %d", want.Joined)
	}

	for _, tc := range []struct {
		name           string
		dropCheckpoint bool
	}{
		{name: "from checkpoint"},
		{name: "full replay", dropCheckpoint: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			first := h.start(testConfig(), clock)
			publishRecords(h, 0, n/2)
			first.stop() // mid-stream: some inputs are still unprocessed
			if tc.dropCheckpoint {
				if err := first.m.state.Delete(context.Background(), checkpointKey); err != nil {
					t.Fatal(err)
				}
			}
			second := h.start(testConfig(), clock)
			publishRecords(h, n/2, n-n/2)
			h.settle(second)
			if got := comparable(second.m.Snapshot()); !reflect.DeepEqual(got, want) {
				t.Errorf("after restart:\n%+v\nuninterrupted:\n%+v", got, want)
			}
		})
	}
}

func accuracyRule() Rule {
	return Rule{Name: "accuracy", Metric: MetricAccuracy, Comparator: "<", Threshold: 0.8, MinSamples: 20, Severity: "critical"}
}

func TestAccuracyAlertFiresOnceAndResolvesOnce(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig()
	cfg.WindowSize = 20
	cfg.Rules = []Rule{accuracyRule()}
	clock := newFakeClock()
	r := h.start(cfg, clock)

	for i := range 25 { // all wrong
		id := fmt.Sprintf("bad-%d", i)
		h.prediction("s", id, 1, 1, "")
		h.outcome("s", id, 0, "")
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := len(h.alerts()); n != 1 {
			return fmt.Errorf("%d alerts, want 1", n)
		}
		return nil
	})
	h.settle(r)
	clock.Advance(time.Second)
	waitEvaluations(t, r.m, 5)
	for i := range 25 { // all right: the window (20) is all correct
		id := fmt.Sprintf("good-%d", i)
		h.prediction("s", id, 1, 1, "")
		h.outcome("s", id, 1, "")
	}
	h.settle(r)
	waitEvaluations(t, r.m, 5)

	alerts := h.alerts()
	if len(alerts) != 2 {
		t.Fatalf("%d alerts, want exactly 2: %+v", len(alerts), alerts)
	}
	fire, res := alerts[0], alerts[1]
	if fire.Status != schemas.AlertFiring || fire.Rule != "accuracy" || fire.Value >= 0.8 || fire.Samples < 20 || fire.Severity != "critical" {
		t.Errorf("firing alert %+v", fire)
	}
	if res.Status != schemas.AlertResolved || !res.StartsAt.Equal(fire.StartsAt) || res.EndsAt == nil || res.Value < 0.8 {
		t.Errorf("resolved alert %+v", res)
	}
	if fire.ID == res.ID || !strings.HasSuffix(fire.ID, "-firing") || !strings.HasSuffix(res.ID, "-resolved") {
		t.Errorf("ids %q %q", fire.ID, res.ID)
	}
	s := r.m.Snapshot()
	if s.AlertsFired != 1 || s.AlertsResolved != 1 || s.Rules[0].Status != RuleInactive {
		t.Errorf("snapshot fired %d resolved %d state %s", s.AlertsFired, s.AlertsResolved, s.Rules[0].Status)
	}
}

func TestFiringAlertSurvivesRestart(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig()
	cfg.WindowSize = 20
	cfg.Rules = []Rule{accuracyRule()}
	clock := newFakeClock()
	first := h.start(cfg, clock)
	for i := range 20 {
		id := fmt.Sprintf("bad-%d", i)
		h.prediction("s", id, 1, 1, "")
		h.outcome("s", id, 0, "")
	}
	h.settle(first)
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := len(h.alerts()); n != 1 {
			return fmt.Errorf("%d alerts, want 1", n)
		}
		return nil
	})
	first.stop()

	second := h.start(cfg, clock)
	clock.Advance(time.Minute)
	waitEvaluations(t, second.m, 5)
	if n := len(h.alerts()); n != 1 {
		t.Fatalf("%d alerts after restart, want still 1 (no re-fire)", n)
	}
	if st := second.m.Snapshot().Rules[0]; st.Status != RuleFiring {
		t.Fatalf("rule state after restart %s, want firing", st.Status)
	}
	for i := range 20 {
		id := fmt.Sprintf("good-%d", i)
		h.prediction("s", id, 0, 1, "")
		h.outcome("s", id, 0, "")
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := len(h.alerts()); n != 2 {
			return fmt.Errorf("%d alerts, want 2", n)
		}
		return nil
	})
	if a := h.alerts()[1]; a.Status != schemas.AlertResolved {
		t.Fatalf("second alert %+v, want resolved", a)
	}
}

func TestMetricsMatchSnapshot(t *testing.T) {
	h := newHarness(t)
	r := h.start(testConfig(), newFakeClock())
	publishRecords(h, 0, 40)
	h.settle(r)
	s := r.m.Snapshot()

	want := fmt.Sprintf(`
# HELP cardiostream_monitor_predictions_total Distinct predictions received.
# TYPE cardiostream_monitor_predictions_total counter
cardiostream_monitor_predictions_total %d
# HELP cardiostream_monitor_joined_total Predictions joined with their outcome.
# TYPE cardiostream_monitor_joined_total counter
cardiostream_monitor_joined_total %d
# HELP cardiostream_monitor_confusion_matrix Cumulative confusion matrix of joined predictions.
# TYPE cardiostream_monitor_confusion_matrix gauge
cardiostream_monitor_confusion_matrix{actual="0",predicted="0"} %d
cardiostream_monitor_confusion_matrix{actual="0",predicted="1"} %d
cardiostream_monitor_confusion_matrix{actual="1",predicted="0"} %d
cardiostream_monitor_confusion_matrix{actual="1",predicted="1"} %d
# HELP cardiostream_monitor_pending_joins Joins waiting for their other side, by the side present.
# TYPE cardiostream_monitor_pending_joins gauge
cardiostream_monitor_pending_joins{side="deadletter"} %d
cardiostream_monitor_pending_joins{side="outcome"} %d
cardiostream_monitor_pending_joins{side="prediction"} %d
# HELP cardiostream_monitor_dead_lettered_total Distinct dead-lettered records, by stage.
# TYPE cardiostream_monitor_dead_lettered_total counter
cardiostream_monitor_dead_lettered_total{stage="decode"} 0
cardiostream_monitor_dead_lettered_total{stage="score"} %d
cardiostream_monitor_dead_lettered_total{stage="unknown"} 0
cardiostream_monitor_dead_lettered_total{stage="validate"} 0
`, s.Predictions, s.Joined, s.Cumulative.TN, s.Cumulative.FP, s.Cumulative.FN, s.Cumulative.TP,
		s.PendingDeadLetters, s.PendingOutcomes, s.PendingPredictions, s.DeadLettered)
	if err := testutil.GatherAndCompare(r.reg, strings.NewReader(want),
		"cardiostream_monitor_predictions_total", "cardiostream_monitor_joined_total",
		"cardiostream_monitor_confusion_matrix", "cardiostream_monitor_pending_joins",
		"cardiostream_monitor_dead_lettered_total"); err != nil {
		t.Error(err)
	}

	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "," + l.GetValue()
			}
			switch {
			case m.Gauge != nil:
				got[name] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				got[name] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for name, want := range map[string]float64{
		"cardiostream_monitor_window_accuracy":                        s.Window.Accuracy,
		"cardiostream_monitor_window_f1":                              s.Window.F1,
		"cardiostream_monitor_window_samples":                         float64(s.Window.Samples),
		"cardiostream_monitor_accuracy":                               s.Cumulative.Accuracy,
		"cardiostream_monitor_window_error_rate":                      s.ErrorRate,
		"cardiostream_monitor_prediction_latency_window_seconds,0.95": s.LatencyP95 / 1000,
		"cardiostream_monitor_prediction_latency_seconds":             float64(s.Predictions),
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}

func TestPendingExpiresWithLabelDeadline(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig()
	cfg.LabelDeadline = time.Second
	clock := newFakeClock()
	r := h.start(cfg, clock)
	for i := range 3 {
		h.prediction("s", fmt.Sprintf("p%d", i), 1, 1, "")
	}
	h.outcome("s", "o1", 1, "")
	h.settle(r)
	if s := r.m.Snapshot(); s.PendingPredictions != 3 || s.PendingOutcomes != 1 {
		t.Fatalf("pending %d/%d, want 3/1", s.PendingPredictions, s.PendingOutcomes)
	}
	clock.Advance(2 * time.Second)
	s := r.m.Snapshot()
	if s.PendingPredictions != 0 || s.PendingOutcomes != 0 || s.ExpiredPredictions != 3 || s.ExpiredOutcomes != 1 {
		t.Fatalf("after the deadline: pending %d/%d expired %d/%d, want 0/0 3/1",
			s.PendingPredictions, s.PendingOutcomes, s.ExpiredPredictions, s.ExpiredOutcomes)
	}
	// The join's memory is bounded too: the expired entries are dropped.
	r.m.mu.Lock()
	r.m.join.prune(clock.Now())
	open, _ := r.m.join.sizes()
	r.m.mu.Unlock()
	if open != 0 {
		t.Errorf("%d join entries still open after the deadline", open)
	}
}
