package monitor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// flapSegment is one minute of joins: n joins, the last `correct` of them right.
type flapSegment struct {
	n, correct int
}

// flapTimeline is the metric of the no-flapping test, one segment a minute:
// a thin warm-up (5 joins, accuracy 0.4), ten minutes of accuracy alternating
// 0.79 / 0.81 around the 0.80 threshold, four minutes clearly bad (0.70),
// ten more minutes alternating 0.81 / 0.79, three minutes clearly good (0.90).
func flapTimeline() []flapSegment {
	segs := []flapSegment{{n: 5, correct: 2}} // step 0
	for i := range 10 {                       // steps 1-10
		segs = append(segs, flapSegment{n: 100, correct: []int{79, 81}[i%2]})
	}
	for range 4 { // steps 11-14
		segs = append(segs, flapSegment{n: 100, correct: 70})
	}
	for i := range 10 { // steps 15-24
		segs = append(segs, flapSegment{n: 100, correct: []int{81, 79}[i%2]})
	}
	for range 3 { // steps 25-27
		segs = append(segs, flapSegment{n: 100, correct: 90})
	}
	return segs
}

// TestNoFlapping runs one monitor with one accuracy rule (< 0.80) per set of
// anti-flapping options over the same oscillating metric, moving the
// monitor's clock (WithClock) one minute per segment, and counts the
// notifications each rule stored in ALERTS.
//
// The window is the last 100 joins. Each segment's joins are wrong first,
// then right, and one input loop joins them in order, so while a segment
// replaces the previous one the window accuracy moves monotonically from the
// old value to the new: the rules see the oscillation itself, not artefacts
// of the mix.
func TestNoFlapping(t *testing.T) {
	const step = time.Minute
	hyst := 0.85
	tests := []struct {
		doc  string // the row's first cell in docs/alert-rules.md
		rule Rule
		// Expected notifications in ALERTS.
		fired, repeats, resolved int
		// The step of the first firing and of the last resolution (-1: none).
		firedAt, resolvedAt int
	}{
		{doc: "no options", rule: Rule{Name: "none"}, fired: 11, resolved: 11, firedAt: 0, resolvedAt: 25},
		{doc: "`min_samples: 50`", rule: Rule{Name: "min_samples", MinSamples: 50}, fired: 11, resolved: 11, firedAt: 1, resolvedAt: 25},
		{doc: "`for: 150s`", rule: Rule{Name: "for", For: 150 * time.Second}, fired: 1, resolved: 1, firedAt: 14, resolvedAt: 15},
		{doc: "`recover_threshold: 0.85`", rule: Rule{Name: "hysteresis", RecoverThreshold: &hyst}, fired: 1, resolved: 1, firedAt: 0, resolvedAt: 25},
		{doc: "`recover_threshold: 0.85`, `repeat_interval: 5m`", rule: Rule{Name: "repeat", RecoverThreshold: &hyst, RepeatInterval: 5 * time.Minute}, fired: 1, repeats: 5, resolved: 1, firedAt: 0, resolvedAt: 25},
		{doc: "all four (`min_samples: 50`, `for: 150s`, `recover_threshold: 0.85`, `repeat_interval: 1h`)", rule: Rule{Name: "all", MinSamples: 50, For: 150 * time.Second, RecoverThreshold: &hyst, RepeatInterval: time.Hour}, fired: 1, resolved: 1, firedAt: 14, resolvedAt: 25},
	}

	h := newHarness(t)
	cfg := testConfig()
	cfg.WindowSize = 100
	cfg.WindowDuration = 24 * time.Hour
	cfg.EvaluationInterval = 10 * time.Millisecond
	for i := range tests {
		r := &tests[i].rule
		r.Metric, r.Comparator, r.Threshold, r.Severity = MetricAccuracy, "<", 0.80, "critical"
		cfg.Rules = append(cfg.Rules, *r)
	}
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := newFakeClock()
	clock.Set(base)
	mon := h.start(cfg, clock)

	segs := flapTimeline()
	id := func(i, j int) string { return fmt.Sprintf("s%02d-%03d", i, j) }
	right := func(seg flapSegment, j int) bool { return j >= seg.n-seg.correct } // wrong ones first
	began := time.Now()
	var preds []any
	for i, seg := range segs {
		for j := range seg.n {
			preds = append(preds, schemas.Prediction{SchemaVersion: schemas.Version, RecordID: id(i, j), Source: "clinic",
				Probability: 1, Label: 1, Threshold: 0.5, Model: schemas.ModelRef{Name: "test", Version: "1"}, LatencyMS: 1})
		}
	}
	h.publishAll(h.subjects.Predictions("clinic"), preds)
	h.settleWithin(mon, 3*time.Minute) // one input loop; slow under -race on a busy machine
	for i, seg := range segs {
		clock.Set(base.Add(time.Duration(i) * step))
		// The minute begins with the previous segment still in the
		// window: a breach that lasted into this minute counts for "for",
		// a repeat falls due before a recovery.
		waitEvaluations(t, mon.m, 3)
		outs := make([]any, seg.n)
		for j := range seg.n {
			actual := 0
			if right(seg, j) {
				actual = 1
			}
			outs[j] = schemas.Outcome{SchemaVersion: schemas.Version, RecordID: id(i, j), Label: actual, ObservedAt: base}
		}
		h.publishAll(h.subjects.Outcomes("clinic"), outs) // in order: one stream, one publisher
		h.settle(mon)
		// Two whole evaluations of the complete segment (one may have
		// begun before the last join was folded in).
		waitEvaluations(t, mon.m, 3)
	}

	t.Logf("%d segments fed and evaluated in %s", len(segs), time.Since(began).Round(time.Millisecond))

	doc, err := os.ReadFile(filepath.Join("..", "docs", "alert-rules.md"))
	if err != nil {
		t.Fatal(err)
	}

	byRule := map[string][]schemas.Alert{}
	for _, a := range h.alerts() {
		byRule[a.Rule] = append(byRule[a.Rule], a)
	}
	stepOf := func(a schemas.Alert) int { return int(a.At.Sub(base) / step) }
	for _, tc := range tests {
		t.Run(tc.rule.Name, func(t *testing.T) {
			var fired, repeats, resolved int
			firedAt, resolvedAt := -1, -1
			for _, a := range byRule[tc.rule.Name] {
				switch {
				case a.Status == schemas.AlertResolved:
					resolved++
					resolvedAt = stepOf(a)
				case strings.Contains(a.ID, "-repeat-"):
					repeats++
				default:
					if fired++; fired == 1 {
						firedAt = stepOf(a)
					}
				}
			}
			t.Logf("FIGURE TestNoFlapping rule=%s min_samples=%d for=%s recover=%g repeat=%s steps=%d fired=%d repeats=%d resolved=%d first_fired_step=%d last_resolved_step=%d",
				tc.rule.Name, tc.rule.MinSamples, tc.rule.For, tc.rule.Recover(), tc.rule.RepeatInterval, len(segs), fired, repeats, resolved, firedAt, resolvedAt)
			// The table in docs/alert-rules.md shows these counts.
			if row := fmt.Sprintf("| %s | %d | %d | %d |", tc.doc, tc.fired, tc.repeats, tc.resolved); !strings.Contains(string(doc), row) {
				t.Errorf("docs/alert-rules.md lacks the row %q", row)
			}
			if fired != tc.fired || repeats != tc.repeats || resolved != tc.resolved || firedAt != tc.firedAt || resolvedAt != tc.resolvedAt {
				t.Errorf("fired %d (first at step %d), repeats %d, resolved %d (last at step %d); want %d (%d), %d, %d (%d)",
					fired, firedAt, repeats, resolved, resolvedAt, tc.fired, tc.firedAt, tc.repeats, tc.resolved, tc.resolvedAt)
			}
		})
	}
}
