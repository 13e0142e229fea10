package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

// pairwiseAUC is the AUC by its definition: over every (positive, negative)
// pair, 1 when the positive scores higher, 1/2 on a tie.
func pairwiseAUC(ys []int, ps []float64) float64 {
	var num, den float64
	for i := range ys {
		for j := range ys {
			if ys[i] != 1 || ys[j] != 0 {
				continue
			}
			den++
			switch {
			case ps[i] > ps[j]:
				num++
			case ps[i] == ps[j]:
				num += 0.5
			}
		}
	}
	if den == 0 {
		return 0
	}
	return num / den
}

func TestAUC(t *testing.T) {
	mk := func(ps ...float64) []scored {
		out := make([]scored, len(ps))
		for i, p := range ps {
			out[i] = scored{prob: p}
		}
		return out
	}
	tests := []struct {
		name string
		ys   []int
		ps   []scored
		want float64
	}{
		{name: "perfect", ys: []int{0, 0, 1, 1}, ps: mk(0.1, 0.2, 0.8, 0.9), want: 1},
		{name: "inverted", ys: []int{1, 1, 0, 0}, ps: mk(0.1, 0.2, 0.8, 0.9), want: 0},
		{name: "all tied", ys: []int{1, 0, 1, 0}, ps: mk(0.5, 0.5, 0.5, 0.5), want: 0.5},
		{name: "one class", ys: []int{1, 1}, ps: mk(0.3, 0.4), want: 0},
		{name: "mixed", ys: []int{0, 1, 0, 1, 1}, ps: mk(0.2, 0.3, 0.3, 0.9, 0.1), want: 3.5 / 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := auc(tt.ys, tt.ps); math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("auc = %v, want %v", got, tt.want)
			}
		})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		n := 1 + rng.IntN(60)
		ys, raw := make([]int, n), make([]float64, n)
		for i := range ys {
			ys[i], raw[i] = rng.IntN(2), float64(rng.IntN(8))/8 // many ties
		}
		if got, want := auc(ys, mk(raw...)), pairwiseAUC(ys, raw); math.Abs(got-want) > 1e-12 {
			t.Fatalf("auc(%v, %v) = %v, pairwise %v", ys, raw, got, want)
		}
	}
}

// TestModelCompare stores main predictions of version A, shadow predictions
// of version B (one record twice), outcomes for most records and
// predictions of an unrelated version, then runs `model compare A B` and
// checks every number against a computation by definition over the records
// that have both predictions and an outcome.
func TestModelCompare(t *testing.T) {
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns)
	sc := natstest.EnsureStreams(t, js, nil)
	subjects := sc.Subjects()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pub := func(subject, msgID string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		var opts []jetstream.PublishOpt
		if msgID != "" {
			opts = append(opts, jetstream.WithMsgID(msgID))
		}
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: b}, opts...); err != nil {
			t.Fatal(err)
		}
	}
	pred := func(subject, src, id, version string, p float64) {
		l := 0
		if p >= 0.5 {
			l = 1
		}
		pub(subject, "", schemas.Prediction{SchemaVersion: schemas.Version, RecordID: id, Source: src, Probability: p, Label: l,
			Threshold: 0.5, Model: schemas.ModelRef{Name: "heart-xgb", Version: version}})
	}
	rng := rand.New(rand.NewPCG(7, 7))
	var ys []int
	var pa, pb []float64
	agree := 0
	for i := range 300 {
		src, id := "clinic", fmt.Sprintf("r-%d", i)
		y := rng.IntN(2)
		a := math.Round(math.Min(1, math.Max(0, 0.3+0.4*float64(y)+0.3*rng.NormFloat64()))*100) / 100
		b := math.Min(1, math.Max(0, 0.5+0.1*float64(y)+0.3*rng.NormFloat64()))
		hasA, hasB, hasY := i%10 != 0, i%6 != 0, i%7 != 0
		if hasA {
			pred(subjects.Predictions(src), src, id, "1.0.0", a)
		}
		if hasB {
			pred(subjects.ShadowPrediction(src), src, id, "1.1.0", b)
			if i == 1 {
				pred(subjects.ShadowPrediction(src), src, id, "1.1.0", b) // stored twice
			}
		}
		pred(subjects.ShadowPrediction(src), src, id, "9.9.9", rng.Float64())
		if hasY {
			pub(subjects.Outcomes(src), "", schemas.Outcome{SchemaVersion: schemas.Version, RecordID: id, Label: y, ObservedAt: time.Now().UTC()})
		}
		if hasA && hasB && hasY {
			ys, pa, pb = append(ys, y), append(pa, a), append(pb, b)
			if (a >= 0.5) == (b >= 0.5) {
				agree++
			}
		}
	}
	// A forged prediction no scorer could have written (a probability of 5,
	// a label of 7) for r-10, which has the shadow's prediction and an
	// outcome but none of 1.0.0: not counted (FuzzDecodeComparedPrediction).
	pub(subjects.Predictions("clinic"), "", json.RawMessage(`{"record_id":"r-10","source":"clinic","probability":5,"label":7,"model":{"version":"1.0.0"}}`))
	url := ns.ClientURL()
	code, stdout, stderr := runCmd(t, testEnviron(), "model", "compare", "1.0.0", "1.1.0", "--nats-url", url, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		A, B      versionScore
		N         int
		Agreement float64
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if got.N != len(ys) || got.A.N != len(ys) || got.B.N != len(ys) {
		t.Fatalf("n = %d (%d, %d), want %d", got.N, got.A.N, got.B.N, len(ys))
	}
	if want := float64(agree) / float64(len(ys)); math.Abs(got.Agreement-want) > 1e-12 {
		t.Errorf("agreement %v, want %v", got.Agreement, want)
	}
	for _, c := range []struct {
		got versionScore
		ps  []float64
	}{{got.A, pa}, {got.B, pb}} {
		var tp, fp, tn, fn int
		var brier float64
		for i, y := range ys {
			l := c.ps[i] >= 0.5
			switch {
			case l && y == 1:
				tp++
			case l:
				fp++
			case y == 0:
				tn++
			default:
				fn++
			}
			brier += (c.ps[i] - float64(y)) * (c.ps[i] - float64(y))
		}
		want := map[string][2]float64{
			"accuracy":  {c.got.Accuracy, float64(tp+tn) / float64(len(ys))},
			"precision": {c.got.Precision, float64(tp) / float64(tp+fp)},
			"recall":    {c.got.Recall, float64(tp) / float64(tp+fn)},
			"brier":     {c.got.Brier, brier / float64(len(ys))},
			"auc":       {c.got.AUC, pairwiseAUC(ys, c.ps)},
		}
		for name, gw := range want {
			if math.Abs(gw[0]-gw[1]) > 1e-9 {
				t.Errorf("%s %s = %v, want %v", c.got.Version, name, gw[0], gw[1])
			}
		}
	}
	t.Logf("compare: n=%d agreement=%.4f A=%+v B=%+v", got.N, got.Agreement, got.A, got.B)

	code, stdout, _ = runCmd(t, testEnviron(), "model", "compare", "1.0.0", "1.1.0", "--nats-url", url)
	if code != 0 || !strings.Contains(stdout, "agreement") || !strings.Contains(stdout, "auc") || !strings.Contains(stdout, "1.1.0") {
		t.Errorf("table: exit %d\n%s", code, stdout)
	}
	code, _, stderr = runCmd(t, testEnviron(), "model", "compare", "1.0.0", "7.7.7", "--nats-url", url)
	if code != 1 || !strings.Contains(stderr, "no record has predictions from both") {
		t.Errorf("unknown version: exit %d, stderr %q", code, stderr)
	}
}

// wantComparison computes, by definition and from the streams as they are,
// what `model compare a b` must report: per record (source, id) the first
// stored prediction of each version and the first outcome; metrics from the
// predictions' own labels, AUC pair by pair.
func wantComparison(t testing.TB, js jetstream.JetStream, a, b string) comparison {
	t.Helper()
	subj := schemas.NewSubjects("")
	preds := map[string]map[recKey]schemas.Prediction{a: {}, b: {}}
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamPredictions) {
		var p schemas.Prediction
		if err := json.Unmarshal(m.Data(), &p); err != nil {
			t.Fatalf("prediction: %v", err)
		}
		k := recKey{p.Source, p.RecordID}
		if byRec, ok := preds[p.Model.Version]; ok {
			if _, dup := byRec[k]; !dup {
				byRec[k] = p
			}
		}
	}
	outcomes := map[recKey]int{}
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamOutcomes) {
		src, _ := subj.SourceOf("outcomes", m.Subject())
		o, err := schemas.DecodeOutcome(m.Data())
		if err != nil {
			t.Fatalf("outcome: %v", err)
		}
		if _, dup := outcomes[recKey{src, o.RecordID}]; !dup {
			outcomes[recKey{src, o.RecordID}] = o.Label
		}
	}
	var ys []int
	var pa, pb []schemas.Prediction
	agree := 0
	for k, p := range preds[a] {
		q, okB := preds[b][k]
		y, okY := outcomes[k]
		if !okB || !okY {
			continue
		}
		ys, pa, pb = append(ys, y), append(pa, p), append(pb, q)
		if p.Label == q.Label {
			agree++
		}
	}
	byDefinition := func(version string, ps []schemas.Prediction) versionScore {
		v := versionScore{Version: version, N: len(ys), Predictions: len(preds[version])}
		var tp, fp, tn, fn int
		var brier float64
		probs := make([]float64, len(ps))
		for i, y := range ys {
			switch l := ps[i].Label; {
			case l == 1 && y == 1:
				tp++
			case l == 1:
				fp++
			case y == 0:
				tn++
			default:
				fn++
			}
			brier += (ps[i].Probability - float64(y)) * (ps[i].Probability - float64(y))
			probs[i] = ps[i].Probability
		}
		if len(ys) == 0 {
			return v
		}
		v.Accuracy = float64(tp+tn) / float64(len(ys))
		v.Precision = float64(tp) / float64(max(tp+fp, 1))
		v.Recall = float64(tp) / float64(max(tp+fn, 1))
		v.F1 = float64(2*tp) / float64(max(2*tp+fp+fn, 1))
		v.Brier = brier / float64(len(ys))
		v.AUC = pairwiseAUC(ys, probs)
		return v
	}
	w := comparison{A: byDefinition(a, pa), B: byDefinition(b, pb), N: len(ys), Outcomes: len(outcomes)}
	if w.N > 0 {
		w.Agreement = float64(agree) / float64(w.N)
	}
	return w
}

// checkComparison fails the test where got differs from want (floats
// within 1e-9: the sums run in a different order).
func checkComparison(t testing.TB, got, want comparison) {
	t.Helper()
	near := func(x, y float64) bool { return math.Abs(x-y) <= 1e-9 }
	same := func(g, w versionScore) bool {
		return g.Version == w.Version && g.N == w.N && g.Predictions == w.Predictions && near(g.Accuracy, w.Accuracy) &&
			near(g.Precision, w.Precision) && near(g.Recall, w.Recall) && near(g.F1, w.F1) && near(g.AUC, w.AUC) && near(g.Brier, w.Brier)
	}
	if got.N != want.N || got.Outcomes != want.Outcomes || !near(got.Agreement, want.Agreement) || !same(got.A, want.A) || !same(got.B, want.B) {
		t.Errorf("compare:\n got %+v\nwant %+v", got, want)
	}
}

// TestModelCompareWaitsOutNoResponders: while JetStream does not answer (as
// while a cluster's stream has no leader, or a pull reaches the node of a
// just-created ordered consumer before it listens: seen in
// TestModelLifecycleOnCluster), compare's reads repeat instead of failing
// with "no responders available for request"; the result is the same as on
// an undisturbed server.
func TestModelCompareWaitsOutNoResponders(t *testing.T) {
	natstest.SkipJetStreamOutageUnderRace(t)
	dir := t.TempDir()
	ns := natstest.RunServerIn(t, dir)
	_, js := natstest.Connect(t, ns)
	sc := natstest.EnsureStreams(t, js, nil)
	publishComparisonFixture(t, js)
	want := wantComparison(t, js, "1.0.0", "1.1.0")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got comparison
	err := natstest.JetStreamOutage(t, ns, dir, 700*time.Millisecond, func() (err error) {
		got, err = compareVersions(ctx, js, sc.Subjects(), "1.0.0", "1.1.0")
		return err
	})
	if err != nil {
		t.Fatalf("compare while JetStream was unavailable: %v", err)
	}
	checkComparison(t, got, want)
}
