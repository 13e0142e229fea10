package monitor

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

func (h *harness) versionedPrediction(subject, source, id, version string, label int, msgID string) {
	h.tb.Helper()
	now := time.Now().UTC()
	h.publish(subject, msgID, schemas.Prediction{
		SchemaVersion: schemas.Version, RecordID: id, Source: source, Probability: float64(label),
		Label: label, Threshold: 0.5, Model: schemas.ModelRef{Name: "heart-xgb", Version: version},
		ReceivedAt: now, ScoredAt: now, LatencyMS: 1,
	})
}

// directVersions computes the per-version metrics straight from the
// PREDICTIONS, OUTCOMES and DEADLETTER streams, deduplicating by record
// (and version for shadows) as a reader of the streams must.
func directVersions(tb testing.TB, h *harness) (vs []VersionMetrics, active, shadow map[string]int64) {
	tb.Helper()
	type key struct{ source, id string }
	type pred struct {
		version string
		label   int
	}
	main := map[key]pred{}
	shadows := map[key]map[string]int{}
	for _, m := range natstest.StreamMessages(tb, h.js, schemas.StreamPredictions) {
		var p schemas.Prediction
		if err := json.Unmarshal(m.Data(), &p); err != nil {
			tb.Fatal(err)
		}
		k := key{p.Source, p.RecordID}
		if strings.HasPrefix(m.Subject(), h.subjects.Prefix+".predictions.shadow.") {
			if shadows[k] == nil {
				shadows[k] = map[string]int{}
			}
			shadows[k][p.Model.Version] = p.Label
		} else {
			main[k] = pred{p.Model.Version, p.Label}
		}
	}
	outcome := map[key]int{}
	for _, m := range natstest.StreamMessages(tb, h.js, schemas.StreamOutcomes) {
		o, err := schemas.DecodeOutcome(m.Data())
		if err != nil {
			tb.Fatal(err)
		}
		src, _ := h.subjects.SourceOf("outcomes", m.Subject())
		outcome[key{src, o.RecordID}] = o.Label
	}
	dead := map[key]bool{}
	for _, m := range natstest.StreamMessages(tb, h.js, schemas.StreamDeadLetter) {
		var d schemas.DeadLetter
		if err := json.Unmarshal(m.Data(), &d); err != nil {
			tb.Fatal(err)
		}
		dead[key{d.Source, d.RecordID}] = true
	}
	type acc struct {
		cm          [2][2]int64
		agree, with int64
	}
	accs := map[[2]string]*acc{}
	get := func(role, v string) *acc {
		k := [2]string{role, v}
		if accs[k] == nil {
			accs[k] = &acc{}
		}
		return accs[k]
	}
	active, shadow = map[string]int64{}, map[string]int64{}
	for k, p := range main {
		active[p.version]++
		if y, ok := outcome[k]; ok {
			get(RoleActive, p.version).cm[y][p.label]++
		}
	}
	for k, byV := range shadows {
		for v, l := range byV {
			shadow[v]++
			y, ok := outcome[k]
			p, hasMain := main[k]
			if !ok || (!hasMain && !dead[k]) {
				continue
			}
			a := get(RoleShadow, v)
			a.cm[y][l]++
			if hasMain {
				a.with++
				if p.label == l {
					a.agree++
				}
			}
		}
	}
	for _, role := range []string{RoleActive, RoleShadow} {
		var versions []string
		for k := range accs {
			if k[0] == role {
				versions = append(versions, k[1])
			}
		}
		for _, v := range sortedStrings(versions) {
			a := accs[[2]string{role, v}]
			vs = append(vs, VersionMetrics{Version: v, Role: role,
				Classification:   classify(a.cm[1][1], a.cm[0][1], a.cm[0][0], a.cm[1][0]),
				AgreementSamples: a.with, Agreement: ratio(a.agree, a.with)})
		}
	}
	return vs, active, shadow
}

func sortedStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

// TestPerVersionMetricsMatchStreams publishes, in a random order, main
// predictions of two active versions (a swap midway), shadow predictions of
// a third version (some published twice without a message id, so the
// stream stores both), outcomes for most records and dead letters for a few,
// and checks the monitor's per-version window metrics and counts, in
// Snapshot and on /metrics, against a direct computation from the streams.
func TestPerVersionMetricsMatchStreams(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig()
	cfg.WindowSize = MaxWindowSize
	cfg.WindowDuration = 24 * time.Hour
	r := h.start(cfg, newFakeClock())

	rng := rand.New(rand.NewPCG(4, 2))
	var ops []func()
	const n = 400
	for i := range n {
		src := []string{"clinic-a", "clinic-b"}[i%2]
		id := fmt.Sprintf("rec-%04d", i)
		y := rng.IntN(2)
		active := "1.0.0"
		if i >= n/2 {
			active = "1.1.0"
		}
		flip := func(p float64) int { // a label right with probability p
			if rng.Float64() < p {
				return y
			}
			return 1 - y
		}
		if i%23 == 0 {
			ops = append(ops, func() { h.deadLetter(src, id, schemas.StageValidate) })
		} else {
			l := flip(0.85)
			ops = append(ops, func() { h.versionedPrediction(h.subjects.Predictions(src), src, id, active, l, src+"/"+id) })
		}
		if i%5 != 0 {
			l := flip(0.7)
			subj := h.subjects.ShadowPrediction(src)
			ops = append(ops, func() { h.versionedPrediction(subj, src, id, "2.0.0-rc1", l, "shadow/2.0.0-rc1/"+src+"/"+id) })
			if i%11 == 0 { // a duplicate the stream cannot drop
				ops = append(ops, func() { h.versionedPrediction(subj, src, id, "2.0.0-rc1", l, "") })
			}
		}
		if i%7 != 0 {
			ops = append(ops, func() { h.outcome(src, id, y, "") })
		}
	}
	rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	for _, op := range ops {
		op()
	}
	h.settle(r)

	want, wantActive, wantShadow := directVersions(t, h)
	s := r.m.Snapshot()
	if len(want) != 3 {
		t.Fatalf("direct computation found %d version/role pairs, want 3: %+v", len(want), want)
	}
	if !reflect.DeepEqual(s.Versions, want) {
		t.Errorf("per-version window metrics:\n got %+v\nwant %+v", s.Versions, want)
	}
	if !reflect.DeepEqual(s.PredictionsByVersion, wantActive) || !reflect.DeepEqual(s.ShadowPredictionsByVersion, wantShadow) {
		t.Errorf("predictions by version: got %v / shadow %v, want %v / %v", s.PredictionsByVersion, s.ShadowPredictionsByVersion, wantActive, wantShadow)
	}
	// Shadow predictions are not predictions of the main path.
	if s.Predictions != wantActive["1.0.0"]+wantActive["1.1.0"] {
		t.Errorf("predictions_total %d includes shadow predictions (active: %v)", s.Predictions, wantActive)
	}

	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		labels := map[string]string{"model_version": w.Version, "role": w.Role}
		checkGauge(t, mfs, "cardiostream_monitor_model_window_accuracy", labels, w.Accuracy)
		checkGauge(t, mfs, "cardiostream_monitor_model_window_recall", labels, w.Recall)
		checkGauge(t, mfs, "cardiostream_monitor_model_window_samples", labels, float64(w.Samples))
		if w.Role == RoleShadow {
			checkGauge(t, mfs, "cardiostream_monitor_model_window_agreement", map[string]string{"model_version": w.Version}, w.Agreement)
		}
		t.Logf("%s %s: n=%d accuracy=%.4f precision=%.4f recall=%.4f agreement=%.4f (n=%d)", w.Role, w.Version, w.Samples, w.Accuracy, w.Precision, w.Recall, w.Agreement, w.AgreementSamples)
	}
}

func checkGauge(tb testing.TB, mfs []*dto.MetricFamily, name string, labels map[string]string, want float64) {
	tb.Helper()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			v := m.GetGauge().GetValue()
			if math.Abs(v-want) > 1e-12 {
				tb.Errorf("%s%v = %v, want %v", name, labels, v, want)
			}
			return
		}
	}
	tb.Errorf("%s%v not exported", name, labels)
}
