package monitor

import (
	"maps"
	"math"
	"slices"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// latencyBuckets are the prediction latency histogram bounds in seconds,
// 0.5 ms to 5 s.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// stages are the dead-letter stages with their own label value; anything
// else is counted as "unknown".
var stages = []schemas.Stage{schemas.StageDecode, schemas.StageValidate, schemas.StageScore, "unknown"}

// Window samples (in the gob checkpoint as they are).
type joinSample struct {
	At        int64 // unix nanoseconds, the monitor's clock
	O         int64 // data time: the window's order (event.Ord)
	Actual    uint8
	Predicted uint8
	Version   string // the model version that predicted
}

// shadowSample is a shadow join: a shadow model's label, the outcome and
// whether the active model agreed on the same record.
type shadowSample struct {
	At        int64
	O         int64
	Version   string
	Actual    uint8
	Predicted uint8
	// Agree is 1 when the active model predicted the same label, 0 when it
	// did not, -1 when the record has no active prediction (dead-lettered).
	Agree int8
}

type latencySample struct {
	At int64
	O  int64
	MS float64
}

type errorSample struct {
	At  int64
	O   int64
	Err bool
}

// aggState is everything the fold keeps. Its fields are exported for the
// checkpoint's gob encoding only.
type aggState struct {
	// Positions are the last stream sequence folded in, by input
	// (predictions, outcomes, deadletter).
	Positions map[string]uint64

	Predictions  int64
	DeadLettered int64
	DeadByStage  map[schemas.Stage]int64
	Outcomes     int64
	Joined       int64
	Unscorable   int64
	// Confusion is indexed [actual][predicted].
	Confusion [2][2]int64

	// LatencyCounts are the non-cumulative histogram counts, one per bucket
	// plus +Inf.
	LatencyCounts []uint64
	LatencySumSec float64

	// Recorded and Resolved count pending sides opened and closed; Pending
	// holds the open ones by the time bucket they were opened in, so that
	// the ones older than the label deadline can be left out (their joins
	// expired).
	Recorded [numSides]int64
	Resolved [numSides]int64
	Pending  [numSides]map[int64]int64

	Joins     []joinSample
	Latencies []latencySample
	Errors    []errorSample

	// Per model version: distinct predictions of the active path and of
	// the shadow path, and the window of shadow joins.
	PredictionsByVersion map[string]int64
	ShadowByVersion      map[string]int64
	ShadowJoins          []shadowSample
}

// aggregator folds events into aggState. It is not safe for
// concurrent use; Monitor guards it.
type aggregator struct {
	windowSize     int
	windowDuration time.Duration
	labelDeadline  time.Duration
	granularity    int64 // pending time-bucket width in nanoseconds
	st             aggState
}

func newAggregator(cfg Config) *aggregator {
	a := &aggregator{
		windowSize:     cfg.WindowSize,
		windowDuration: cfg.WindowDuration,
		labelDeadline:  cfg.LabelDeadline,
		// 1/1000 of the deadline: the pending gauge is exact to 0.1% of
		// the deadline (86 s for 24 h) while the map stays ≤ 2000 entries.
		granularity: max(int64(cfg.LabelDeadline/1000), int64(time.Millisecond)),
	}
	a.st = newAggState()
	return a
}

func newAggState() aggState {
	st := aggState{
		DeadByStage:          map[schemas.Stage]int64{},
		LatencyCounts:        make([]uint64, len(latencyBuckets)+1),
		PredictionsByVersion: map[string]int64{},
		ShadowByVersion:      map[string]int64{},
		Positions:            map[string]uint64{},
	}
	for i := range st.Pending {
		st.Pending[i] = map[int64]int64{}
	}
	return st
}

// clone copies the state deeply, for a checkpoint encoded outside the lock.
func (st *aggState) clone() aggState {
	c := *st
	c.DeadByStage = maps.Clone(st.DeadByStage)
	c.LatencyCounts = slices.Clone(st.LatencyCounts)
	for i := range st.Pending {
		c.Pending[i] = maps.Clone(st.Pending[i])
	}
	c.Joins = slices.Clone(st.Joins)
	c.Latencies = slices.Clone(st.Latencies)
	c.Errors = slices.Clone(st.Errors)
	c.PredictionsByVersion = maps.Clone(st.PredictionsByVersion)
	c.ShadowByVersion = maps.Clone(st.ShadowByVersion)
	c.ShadowJoins = slices.Clone(st.ShadowJoins)
	c.Positions = maps.Clone(st.Positions)
	return c
}

// restore replaces the state with a checkpoint's, trimming the windows to
// the current window size (the configuration may have changed).
func (a *aggregator) restore(st aggState) {
	if st.DeadByStage == nil {
		st.DeadByStage = map[schemas.Stage]int64{}
	}
	if st.PredictionsByVersion == nil {
		st.PredictionsByVersion = map[string]int64{}
	}
	if st.ShadowByVersion == nil {
		st.ShadowByVersion = map[string]int64{}
	}
	if st.Positions == nil {
		st.Positions = map[string]uint64{}
	}
	if len(st.LatencyCounts) != len(latencyBuckets)+1 {
		st.LatencyCounts = make([]uint64, len(latencyBuckets)+1)
	}
	for i := range st.Pending {
		if st.Pending[i] == nil {
			st.Pending[i] = map[int64]int64{}
		}
	}
	st.Joins = trimFront(st.Joins, a.windowSize)
	st.Latencies = trimFront(st.Latencies, a.windowSize)
	st.Errors = trimFront(st.Errors, a.windowSize)
	st.ShadowJoins = trimFront(st.ShadowJoins, a.windowSize)
	a.st = st
}

func trimFront[T any](s []T, n int) []T {
	if len(s) > n {
		return slices.Clone(s[len(s)-n:])
	}
	return s
}

// push inserts v in order of its data time and drops the oldest samples
// beyond n, so a window holds the n latest samples by data time whatever
// order the inputs were read in. Samples arrive nearly in order, so the
// insertion moves few. Re-slicing the front keeps the backing array
// bounded: only the live part is copied when it grows.
func push[T any](s []T, v T, n int, ord func(T) int64) []T {
	if len(s) == cap(s) && len(s) >= n {
		// A full window: move it to an array with room for 3n more pushes
		// (append would leave room for about n/4: a copy of the window, and
		// a new array, every few hundred samples).
		ns := make([]T, len(s), len(s)+3*n)
		copy(ns, s)
		s = ns
	}
	s = append(s, v)
	o := ord(v)
	i := len(s) - 1
	for i > 0 && ord(s[i-1]) > o {
		s[i] = s[i-1]
		i--
	}
	s[i] = v
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

func joinOrd(s joinSample) int64       { return s.O }
func shadowOrd(s shadowSample) int64   { return s.O }
func latencyOrd(s latencySample) int64 { return s.O }
func errorOrd(s errorSample) int64     { return s.O }

// apply folds one event.
func (a *aggregator) apply(ev event) {
	st := &a.st
	at := ev.At.UnixNano()
	switch ev.Kind {
	case kindPrediction:
		st.Predictions++
		if ev.Version != "" {
			st.PredictionsByVersion[ev.Version]++
		}
		a.observeLatency(ev.LatencyMS)
		st.Latencies = push(st.Latencies, latencySample{At: at, O: ev.Ord, MS: ev.LatencyMS}, a.windowSize, latencyOrd)
		st.Errors = push(st.Errors, errorSample{At: at, O: ev.Ord}, a.windowSize, errorOrd)
		a.open(sidePrediction, ev)
	case kindDeadLetter:
		st.DeadLettered++
		st.DeadByStage[stageLabel(ev.Stage)]++
		st.Errors = push(st.Errors, errorSample{At: at, O: ev.Ord, Err: true}, a.windowSize, errorOrd)
		a.open(sideDeadLetter, ev)
	case kindOutcome:
		st.Outcomes++
		a.open(sideOutcome, ev)
	case kindJoin:
		st.Joined++
		st.Confusion[ev.Actual][ev.Predicted]++
		st.Joins = push(st.Joins, joinSample{At: at, O: ev.Ord, Actual: uint8(ev.Actual), Predicted: uint8(ev.Predicted), Version: ev.Version}, a.windowSize, joinOrd)
		a.close(ev)
	case kindShadow:
		st.ShadowByVersion[ev.Version]++
	case kindShadowJoin:
		agree := int8(-1)
		if ev.ActivePredicted != nil {
			agree = 0
			if *ev.ActivePredicted == ev.Predicted {
				agree = 1
			}
		}
		st.ShadowJoins = push(st.ShadowJoins, shadowSample{At: at, O: ev.Ord, Version: ev.Version, Actual: uint8(ev.Actual), Predicted: uint8(ev.Predicted), Agree: agree}, a.windowSize, shadowOrd)
	case kindUnscorable:
		st.Unscorable++
		a.close(ev)
	}
	a.prune(at)
}

func (a *aggregator) observeLatency(ms float64) {
	sec := ms / 1000
	if math.IsNaN(sec) || sec < 0 {
		sec = 0
	}
	i, _ := slices.BinarySearch(latencyBuckets, sec)
	a.st.LatencyCounts[i]++
	a.st.LatencySumSec += sec
}

func stageLabel(s schemas.Stage) schemas.Stage {
	switch s {
	case schemas.StageDecode, schemas.StageValidate, schemas.StageScore:
		return s
	}
	return "unknown"
}

func (a *aggregator) bucket(t time.Time) int64 {
	n := t.UnixNano()
	return n - mod(n, a.granularity)
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

func (a *aggregator) open(s side, ev event) {
	if !ev.Pending {
		return
	}
	a.st.Recorded[s]++
	a.st.Pending[s][a.bucket(ev.At)]++
}

func (a *aggregator) close(ev event) {
	for s, t := range [numSides]time.Time{ev.PredictionAt, ev.OutcomeAt, ev.DeadLetterAt} {
		if t.IsZero() {
			continue
		}
		a.st.Resolved[s]++
		b := a.bucket(t)
		if a.st.Pending[s][b]--; a.st.Pending[s][b] == 0 {
			delete(a.st.Pending[s], b)
		}
	}
}

// prune drops pending buckets far older than the label deadline, measured in
// the events' time. Their entries have expired from the join.
func (a *aggregator) prune(now int64) {
	cutoff := now - 2*int64(a.labelDeadline) - a.granularity
	for s := range a.st.Pending {
		if len(a.st.Pending[s]) < 64 {
			continue // cheap enough to keep; avoids a scan per event
		}
		for b := range a.st.Pending[s] {
			if b < cutoff {
				delete(a.st.Pending[s], b)
			}
		}
	}
}

// pending returns the open entries of side s that have not yet expired at now.
func (a *aggregator) pending(s side, now time.Time) int64 {
	cutoff := a.bucket(now.Add(-a.labelDeadline))
	var n int64
	for b, c := range a.st.Pending[s] {
		if b >= cutoff {
			n += c
		}
	}
	return max(n, 0)
}

// Classification is a confusion matrix and the metrics derived from it.
// Metrics with a zero denominator are 0; check the counts.
type Classification struct {
	Samples   int64
	TP        int64
	FP        int64
	TN        int64
	FN        int64
	Accuracy  float64
	Precision float64
	Recall    float64
	F1        float64
}

func classify(tp, fp, tn, fn int64) Classification {
	c := Classification{Samples: tp + fp + tn + fn, TP: tp, FP: fp, TN: tn, FN: fn}
	c.Accuracy = ratio(tp+tn, c.Samples)
	c.Precision = ratio(tp, tp+fp)
	c.Recall = ratio(tp, tp+fn)
	c.F1 = ratio(2*tp, 2*tp+fp+fn)
	return c
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// defined reports whether metric has a non-zero denominator.
func (c Classification) defined(metric string) bool {
	switch metric {
	case MetricPrecision:
		return c.TP+c.FP > 0
	case MetricRecall:
		return c.TP+c.FN > 0
	case MetricF1:
		return 2*c.TP+c.FP+c.FN > 0
	}
	return c.Samples > 0
}

// windowView is the window metrics at one instant.
type windowView struct {
	Class          Classification
	LatencySamples int64
	P50, P95, P99  float64
	ErrorSamples   int64
	ErrorRate      float64
}

// window computes the window metrics at now: the samples among the last
// windowSize that are younger than windowDuration.
func (a *aggregator) window(now time.Time) windowView {
	cutoff := now.Add(-a.windowDuration).UnixNano()
	var v windowView
	var cm [2][2]int64
	for _, s := range a.st.Joins {
		if s.At > cutoff {
			cm[s.Actual][s.Predicted]++
		}
	}
	v.Class = classify(cm[1][1], cm[0][1], cm[0][0], cm[1][0])
	lat := make([]float64, 0, len(a.st.Latencies))
	for _, s := range a.st.Latencies {
		if s.At > cutoff {
			lat = append(lat, s.MS)
		}
	}
	slices.Sort(lat)
	v.LatencySamples = int64(len(lat))
	v.P50, v.P95, v.P99 = quantile(lat, 0.50), quantile(lat, 0.95), quantile(lat, 0.99)
	var errs int64
	for _, s := range a.st.Errors {
		if s.At > cutoff {
			v.ErrorSamples++
			if s.Err {
				errs++
			}
		}
	}
	v.ErrorRate = ratio(errs, v.ErrorSamples)
	return v
}

// quantile is the nearest-rank q-quantile of sorted values (0 when empty).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// Roles of a model version in the per-version metrics.
const (
	RoleActive = "active" // its predictions are the main predictions
	RoleShadow = "shadow" // it scored beside the active model
)

// VersionMetrics are one model version's window metrics in one role: the
// classification over its joined records (active: joins of main predictions
// it made; shadow: its shadow predictions joined with their outcome) and,
// for a shadow version, its agreement with the active model's label on the
// same joined records.
type VersionMetrics struct {
	Version string
	Role    string
	Classification
	// AgreementSamples are the shadow joins whose record also has an active
	// prediction; Agreement is the fraction of them where both labels are
	// equal (0 when there are none; always 0 for the active role).
	AgreementSamples int64
	Agreement        float64
}

// versions computes the per-version window metrics at now, sorted by role
// then version. A version appears while it has samples in the window.
func (a *aggregator) versions(now time.Time) []VersionMetrics {
	cutoff := now.Add(-a.windowDuration).UnixNano()
	type acc struct {
		cm          [2][2]int64
		agree, with int64
	}
	active, shadow := map[string]*acc{}, map[string]*acc{}
	get := func(m map[string]*acc, v string) *acc {
		if m[v] == nil {
			m[v] = &acc{}
		}
		return m[v]
	}
	for _, s := range a.st.Joins {
		if s.At > cutoff && s.Version != "" {
			get(active, s.Version).cm[s.Actual][s.Predicted]++
		}
	}
	for _, s := range a.st.ShadowJoins {
		if s.At <= cutoff {
			continue
		}
		c := get(shadow, s.Version)
		c.cm[s.Actual][s.Predicted]++
		if s.Agree >= 0 {
			c.with++
			c.agree += int64(s.Agree)
		}
	}
	var out []VersionMetrics
	for _, r := range []struct {
		role string
		m    map[string]*acc
	}{{RoleActive, active}, {RoleShadow, shadow}} {
		for _, v := range slices.Sorted(maps.Keys(r.m)) {
			c := r.m[v]
			out = append(out, VersionMetrics{
				Version: v, Role: r.role,
				Classification:   classify(c.cm[1][1], c.cm[0][1], c.cm[0][0], c.cm[1][0]),
				AgreementSamples: c.with, Agreement: ratio(c.agree, c.with),
			})
		}
	}
	return out
}
