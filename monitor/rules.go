package monitor

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// RuleStatus is a rule's state: inactive → pending → firing → inactive.
type RuleStatus string

const (
	RuleInactive RuleStatus = "inactive"
	RulePending  RuleStatus = "pending" // breached, waiting for Rule.For
	RuleFiring   RuleStatus = "firing"
)

// ruleState is one rule's state machine.
type ruleState struct {
	Status       RuleStatus
	PendingSince time.Time // when the current breach began (pending and firing)
	StartsAt     time.Time // when the rule fired (firing only)
	LastNotified time.Time // last firing or repeat notification
	// LastSeq is the ALERTS sequence of the last transition on the rule's
	// subject; publishes expect it, so two monitors cannot both fire.
	LastSeq uint64
}

// transition is a notification the state machine asks for.
type transition int

const (
	noTransition transition = iota
	transFire
	transRepeat
	transResolve
)

// metricValue is one metric at one instant; ok is false when it cannot be
// evaluated (too few samples or an undefined ratio).
type metricValue struct {
	Value   float64
	Samples int64
	Defined bool
}

func (v windowView) metric(name string) metricValue {
	switch name {
	case MetricAccuracy, MetricPrecision, MetricRecall, MetricF1:
		c := v.Class
		val := map[string]float64{MetricAccuracy: c.Accuracy, MetricPrecision: c.Precision, MetricRecall: c.Recall, MetricF1: c.F1}[name]
		return metricValue{Value: val, Samples: c.Samples, Defined: c.defined(name)}
	case MetricLatencyP50:
		return metricValue{Value: v.P50, Samples: v.LatencySamples, Defined: v.LatencySamples > 0}
	case MetricLatencyP95:
		return metricValue{Value: v.P95, Samples: v.LatencySamples, Defined: v.LatencySamples > 0}
	case MetricLatencyP99:
		return metricValue{Value: v.P99, Samples: v.LatencySamples, Defined: v.LatencySamples > 0}
	case MetricErrorRate:
		return metricValue{Value: v.ErrorRate, Samples: v.ErrorSamples, Defined: v.ErrorSamples > 0}
	}
	return metricValue{}
}

func (r Rule) breached(v float64) bool {
	if r.Comparator == "<" {
		return v < r.Threshold
	}
	return v > r.Threshold
}

func (r Rule) recovered(v float64) bool {
	if r.Comparator == "<" {
		return v >= r.Recover()
	}
	return v <= r.Recover()
}

// step advances the state machine of r at now given the metric value, and
// says which notification (if any) the new state needs. It is pure: the
// caller commits the new state only once the notification is published.
//
// With too few samples (or an undefined metric) a pending rule returns to
// inactive and a firing rule stays firing: no evidence of recovery.
func (r Rule) step(st ruleState, mv metricValue, now time.Time) (ruleState, transition) {
	evaluable := mv.Defined && mv.Samples >= int64(r.MinSamples) && !math.IsNaN(mv.Value)
	switch st.Status {
	case RuleFiring:
		if evaluable && r.recovered(mv.Value) {
			return ruleState{Status: RuleInactive, LastSeq: st.LastSeq, StartsAt: st.StartsAt}, transResolve
		}
		if r.RepeatInterval > 0 && now.Sub(st.LastNotified) >= r.RepeatInterval {
			st.LastNotified = now
			return st, transRepeat
		}
		return st, noTransition
	case RulePending:
		if !evaluable || !r.breached(mv.Value) {
			return ruleState{Status: RuleInactive, LastSeq: st.LastSeq}, noTransition
		}
		if now.Sub(st.PendingSince) >= r.For {
			return ruleState{Status: RuleFiring, PendingSince: st.PendingSince, StartsAt: now, LastNotified: now, LastSeq: st.LastSeq}, transFire
		}
		return st, noTransition
	default:
		if !evaluable || !r.breached(mv.Value) {
			return ruleState{Status: RuleInactive, LastSeq: st.LastSeq}, noTransition
		}
		if r.For <= 0 {
			return ruleState{Status: RuleFiring, PendingSince: now, StartsAt: now, LastNotified: now, LastSeq: st.LastSeq}, transFire
		}
		return ruleState{Status: RulePending, PendingSince: now, LastSeq: st.LastSeq}, noTransition
	}
}

// alertFor builds the alert a transition publishes. The id is a function of
// the rule, the firing start and the transition, so a retried publish of the
// same transition has the same id.
func (r Rule) alertFor(t transition, st ruleState, mv metricValue, now time.Time) schemas.Alert {
	a := schemas.Alert{
		SchemaVersion: schemas.Version,
		Rule:          r.Name,
		Severity:      r.Severity,
		Metric:        r.Metric,
		Comparator:    r.Comparator,
		Threshold:     r.Threshold,
		Value:         mv.Value,
		Samples:       mv.Samples,
		StartsAt:      st.StartsAt.UTC(),
		At:            now.UTC(),
	}
	base := r.Name + "-" + strconv.FormatInt(st.StartsAt.UnixNano(), 10)
	unit := ""
	if r.Metric == MetricLatencyP50 || r.Metric == MetricLatencyP95 || r.Metric == MetricLatencyP99 {
		unit = " ms"
	}
	switch t {
	case transFire, transRepeat:
		a.Status = schemas.AlertFiring
		a.ID = base + "-firing"
		if t == transRepeat {
			n := int64(1)
			if r.RepeatInterval > 0 {
				n = max(int64(now.Sub(st.StartsAt)/r.RepeatInterval), 1)
			}
			a.ID += "-repeat-" + strconv.FormatInt(n, 10)
		}
		a.Summary = fmt.Sprintf("window %s is %.4g%s (%s %g%s) over %d samples", r.Metric, mv.Value, unit, r.Comparator, r.Threshold, unit, mv.Samples)
	case transResolve:
		a.Status = schemas.AlertResolved
		a.ID = base + "-resolved"
		end := now.UTC()
		a.EndsAt = &end
		a.Summary = fmt.Sprintf("window %s recovered to %.4g%s (recovers at %g%s) over %d samples", r.Metric, mv.Value, unit, r.Recover(), unit, mv.Samples)
	}
	return a
}

// restoreState rebuilds a rule's state from the last alert published on its
// subject (nil when there is none).
func restoreState(last *schemas.Alert, seq uint64) ruleState {
	if last == nil || last.Status != schemas.AlertFiring {
		return ruleState{Status: RuleInactive, LastSeq: seq}
	}
	return ruleState{Status: RuleFiring, PendingSince: last.StartsAt, StartsAt: last.StartsAt, LastNotified: last.At, LastSeq: seq}
}
