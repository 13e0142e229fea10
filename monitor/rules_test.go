package monitor

import (
	"strings"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

func ptr[T any](v T) *T { return &v }

// TestRuleStateMachine drives one rule through a sequence of (time offset,
// value, samples) observations and checks the state and the notification
// after each.
func TestRuleStateMachine(t *testing.T) {
	type obs struct {
		at      time.Duration
		value   float64
		samples int64
		state   RuleStatus
		trans   transition
	}
	acc := Rule{Name: "acc", Metric: MetricAccuracy, Comparator: "<", Threshold: 0.8, MinSamples: 50}
	tests := []struct {
		name string
		rule Rule
		obs  []obs
	}{
		{name: "fires once and resolves once", rule: acc, obs: []obs{
			{0, 0.9, 100, RuleInactive, noTransition},
			{1 * time.Second, 0.7, 100, RuleFiring, transFire},
			{2 * time.Second, 0.6, 100, RuleFiring, noTransition},
			{3 * time.Second, 0.79, 100, RuleFiring, noTransition},
			{4 * time.Second, 0.8, 100, RuleInactive, transResolve},
			{5 * time.Second, 0.9, 100, RuleInactive, noTransition},
		}},
		{name: "min_samples gates firing", rule: acc, obs: []obs{
			{0, 0.1, 49, RuleInactive, noTransition},
			{time.Second, 0.1, 50, RuleFiring, transFire},
		}},
		{name: "too few samples keep a firing rule firing", rule: acc, obs: []obs{
			{0, 0.1, 60, RuleFiring, transFire},
			{time.Second, 0.95, 10, RuleFiring, noTransition},
			{2 * time.Second, 0.95, 60, RuleInactive, transResolve},
		}},
		{name: "hysteresis", rule: func() Rule { r := acc; r.RecoverThreshold = ptr(0.85); return r }(), obs: []obs{
			{0, 0.79, 100, RuleFiring, transFire},
			{time.Second, 0.81, 100, RuleFiring, noTransition},
			{2 * time.Second, 0.849, 100, RuleFiring, noTransition},
			{3 * time.Second, 0.85, 100, RuleInactive, transResolve},
			{4 * time.Second, 0.81, 100, RuleInactive, noTransition},
		}},
		{name: "for delays firing; a recovery resets it", rule: func() Rule { r := acc; r.For = 10 * time.Second; return r }(), obs: []obs{
			{0, 0.7, 100, RulePending, noTransition},
			{9 * time.Second, 0.7, 100, RulePending, noTransition},
			{9500 * time.Millisecond, 0.9, 100, RuleInactive, noTransition},
			{10 * time.Second, 0.7, 100, RulePending, noTransition},
			{20 * time.Second, 0.7, 100, RuleFiring, transFire},
			{21 * time.Second, 0.7, 100, RuleFiring, noTransition},
		}},
		{name: "pending drops to inactive without samples", rule: func() Rule { r := acc; r.For = time.Minute; return r }(), obs: []obs{
			{0, 0.7, 100, RulePending, noTransition},
			{time.Second, 0.7, 1, RuleInactive, noTransition},
		}},
		{name: "repeat interval", rule: func() Rule { r := acc; r.RepeatInterval = time.Minute; return r }(), obs: []obs{
			{0, 0.7, 100, RuleFiring, transFire},
			{59 * time.Second, 0.7, 100, RuleFiring, noTransition},
			{60 * time.Second, 0.7, 100, RuleFiring, transRepeat},
			{90 * time.Second, 0.7, 100, RuleFiring, noTransition},
			{120 * time.Second, 0.7, 100, RuleFiring, transRepeat},
			{121 * time.Second, 0.9, 100, RuleInactive, transResolve},
		}},
		{name: "greater-than comparator", rule: Rule{Name: "p95", Metric: MetricLatencyP95, Comparator: ">", Threshold: 200, RecoverThreshold: ptr(150.0)}, obs: []obs{
			{0, 200, 5, RuleInactive, noTransition},
			{time.Second, 201, 5, RuleFiring, transFire},
			{2 * time.Second, 151, 5, RuleFiring, noTransition},
			{3 * time.Second, 150, 5, RuleInactive, transResolve},
		}},
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := ruleState{Status: RuleInactive}
			for i, o := range tc.obs {
				var tr transition
				st, tr = tc.rule.step(st, metricValue{Value: o.value, Samples: o.samples, Defined: true}, base.Add(o.at))
				if st.Status != o.state || tr != o.trans {
					t.Fatalf("step %d (t=%s v=%v n=%d): state %s transition %d, want %s %d", i, o.at, o.value, o.samples, st.Status, tr, o.state, o.trans)
				}
			}
		})
	}
}

func TestAlertIDsAreStablePerTransition(t *testing.T) {
	r := Rule{Name: "acc", Metric: MetricAccuracy, Comparator: "<", Threshold: 0.8, RepeatInterval: time.Minute}
	start := time.Unix(1000, 5)
	st := ruleState{Status: RuleFiring, StartsAt: start}
	mv := metricValue{Value: 0.5, Samples: 10, Defined: true}
	fire := r.alertFor(transFire, st, mv, start)
	again := r.alertFor(transFire, st, mv, start.Add(time.Second)) // a retry
	rep1 := r.alertFor(transRepeat, st, mv, start.Add(time.Minute))
	rep2 := r.alertFor(transRepeat, st, mv, start.Add(2*time.Minute))
	res := r.alertFor(transResolve, st, mv, start.Add(3*time.Minute))
	if fire.ID != "acc-1000000000005-firing" || again.ID != fire.ID {
		t.Errorf("firing ids %q %q", fire.ID, again.ID)
	}
	ids := map[string]bool{fire.ID: true, rep1.ID: true, rep2.ID: true, res.ID: true}
	if len(ids) != 4 {
		t.Errorf("ids not unique per transition: %q %q %q %q", fire.ID, rep1.ID, rep2.ID, res.ID)
	}
	if res.Status != schemas.AlertResolved || res.EndsAt == nil || !strings.HasSuffix(res.ID, "-resolved") {
		t.Errorf("resolved alert %+v", res)
	}
}

func TestRestoreState(t *testing.T) {
	at := time.Unix(2000, 0)
	tests := []struct {
		name string
		last *schemas.Alert
		want RuleStatus
	}{
		{name: "no alert", want: RuleInactive},
		{name: "last fired", last: &schemas.Alert{Status: schemas.AlertFiring, StartsAt: at, At: at}, want: RuleFiring},
		{name: "last resolved", last: &schemas.Alert{Status: schemas.AlertResolved, StartsAt: at, At: at}, want: RuleInactive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := restoreState(tc.last, 7)
			if st.Status != tc.want || st.LastSeq != 7 {
				t.Fatalf("got %+v, want %s seq 7", st, tc.want)
			}
			if tc.want == RuleFiring && !st.StartsAt.Equal(at) {
				t.Fatalf("StartsAt %v, want %v", st.StartsAt, at)
			}
		})
	}
}
