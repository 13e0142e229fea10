package monitor

import (
	"maps"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// Snapshot is the monitor's view at one instant. Counts are cumulative over
// the input streams (deduplicated: a prediction, outcome or dead letter delivered or
// published twice counts once); Window* values are over the sliding window.
// Ratios with a zero denominator are 0: check the sample counts.
type Snapshot struct {
	At time.Time
	// Positions are the last stream sequence folded in, by input
	// (predictions, outcomes, deadletter).
	Positions map[string]uint64

	Predictions         int64
	DeadLettered        int64
	DeadLetteredByStage map[schemas.Stage]int64
	Received            int64 // Predictions + DeadLettered
	Outcomes            int64
	Joined              int64
	OutcomesUnscorable  int64 // outcomes whose record was dead-lettered

	// Pending* are joins waiting for their other side, by the side present,
	// and not yet past the label deadline. Expired* are the ones that passed
	// it unresolved.
	PendingPredictions int64
	PendingOutcomes    int64
	PendingDeadLetters int64
	ExpiredPredictions int64
	ExpiredOutcomes    int64
	ExpiredDeadLetters int64

	Cumulative Classification
	Window     Classification

	// Versions are the window metrics per model version and role (see
	// VersionMetrics). PredictionsByVersion and ShadowPredictionsByVersion
	// count distinct predictions per version, cumulatively.
	Versions                   []VersionMetrics
	PredictionsByVersion       map[string]int64
	ShadowPredictionsByVersion map[string]int64

	// Latency quantiles (milliseconds) over the window's predictions.
	LatencySamples int64
	LatencyP50     float64
	LatencyP95     float64
	LatencyP99     float64

	// ErrorRate is dead-lettered / received over the window.
	ErrorRateSamples int64
	ErrorRate        float64

	AlertsFired    int64 // by this process
	AlertsResolved int64
	Rules          []RuleSnapshot
}

// RuleSnapshot is one alert rule's state.
type RuleSnapshot struct {
	Name     string
	Metric   string
	Status   RuleStatus
	Value    float64 // the metric now (0 when undefined)
	Samples  int64
	Since    time.Time // start of the current breach (pending or firing)
	StartsAt time.Time // when it fired (firing only)
	Fired    int64     // firings published by this process
	Resolved int64
}

type histogramView struct {
	counts []uint64
	sum    float64
}

// Snapshot returns the current metrics, with the window evaluated at the
// monitor's clock.
func (m *Monitor) Snapshot() Snapshot {
	s, _ := m.snapshotWithHistogram()
	return s
}

func (m *Monitor) snapshotWithHistogram() (Snapshot, histogramView) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.agg
	st := &a.st
	w := a.window(now)
	s := Snapshot{
		At:                         now,
		Positions:                  maps.Clone(st.Positions),
		Predictions:                st.Predictions,
		DeadLettered:               st.DeadLettered,
		DeadLetteredByStage:        maps.Clone(st.DeadByStage),
		Received:                   st.Predictions + st.DeadLettered,
		Outcomes:                   st.Outcomes,
		Joined:                     st.Joined,
		OutcomesUnscorable:         st.Unscorable,
		PendingPredictions:         a.pending(sidePrediction, now),
		PendingOutcomes:            a.pending(sideOutcome, now),
		PendingDeadLetters:         a.pending(sideDeadLetter, now),
		Cumulative:                 classify(st.Confusion[1][1], st.Confusion[0][1], st.Confusion[0][0], st.Confusion[1][0]),
		Window:                     w.Class,
		Versions:                   a.versions(now),
		PredictionsByVersion:       maps.Clone(st.PredictionsByVersion),
		ShadowPredictionsByVersion: maps.Clone(st.ShadowByVersion),
		LatencySamples:             w.LatencySamples,
		LatencyP50:                 w.P50,
		LatencyP95:                 w.P95,
		LatencyP99:                 w.P99,
		ErrorRateSamples:           w.ErrorSamples,
		ErrorRate:                  w.ErrorRate,
	}
	s.ExpiredPredictions = max(st.Recorded[sidePrediction]-st.Resolved[sidePrediction]-s.PendingPredictions, 0)
	s.ExpiredOutcomes = max(st.Recorded[sideOutcome]-st.Resolved[sideOutcome]-s.PendingOutcomes, 0)
	s.ExpiredDeadLetters = max(st.Recorded[sideDeadLetter]-st.Resolved[sideDeadLetter]-s.PendingDeadLetters, 0)
	for _, r := range m.rules {
		mv := w.metric(r.rule.Metric)
		s.Rules = append(s.Rules, RuleSnapshot{
			Name: r.rule.Name, Metric: r.rule.Metric, Status: r.st.Status,
			Value: mv.Value, Samples: mv.Samples,
			Since: r.st.PendingSince, StartsAt: r.st.StartsAt,
			Fired: r.fired, Resolved: r.resolved,
		})
		s.AlertsFired += r.fired
		s.AlertsResolved += r.resolved
	}
	return s, histogramView{counts: append([]uint64(nil), st.LatencyCounts...), sum: st.LatencySumSec}
}
