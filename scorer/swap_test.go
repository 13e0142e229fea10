package scorer

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

// versioned is a fake model whose probability depends on its version, so a
// prediction's probability shows which model really produced it. It can
// hold its caller once, mid-batch, after its first gateAt predictions.
type versioned struct {
	version string
	k       float64 // the version's transform: p = fakeProb^k
	batch   bool    // implement BatchModel

	gateAt  int64 // 0: never hold
	calls   atomic.Int64
	reached chan struct{} // closed when the gate is reached
	release chan struct{} // the held call returns once closed

	fail func(f *[schemas.NumFeatures]float64) bool // NaN
	bomb func(f *[schemas.NumFeatures]float64) bool // panic
}

func newVersioned(version string, k float64, gateAt int64) *versioned {
	return &versioned{version: version, k: k, gateAt: gateAt, reached: make(chan struct{}), release: make(chan struct{})}
}

func (m *versioned) prob(f *[schemas.NumFeatures]float64) float64 { return math.Pow(fakeProb(f), m.k) }

func (m *versioned) Predict(f *[schemas.NumFeatures]float64) float64 {
	if n := m.calls.Add(1); m.gateAt > 0 && n == m.gateAt {
		close(m.reached)
		<-m.release
	}
	if m.bomb != nil && m.bomb(f) {
		panic("shadow exploded")
	}
	if m.fail != nil && m.fail(f) {
		return math.NaN()
	}
	return m.prob(f)
}

func (m *versioned) Ref() schemas.ModelRef {
	return schemas.ModelRef{Name: "fake", Version: m.version, SHA256: "sha-" + m.version}
}
func (m *versioned) Threshold() float64 { return 0.5 }

// batchVersioned is a versioned model that also scores whole batches.
type batchVersioned struct{ *versioned }

func (m batchVersioned) PredictBatch(rows [][schemas.NumFeatures]float64, out []float64) error {
	for i := range rows {
		out[i] = m.Predict(&rows[i])
	}
	return nil
}

func (m *versioned) model() Model {
	if m.batch {
		return batchVersioned{m}
	}
	return m
}

// features rebuilds what recordJSON(_, i) encodes, in FeatureNames order.
func features(tb testing.TB, i int) *[schemas.NumFeatures]float64 {
	tb.Helper()
	r, err := schemas.DecodeRecord(recordJSON("x", i))
	if err != nil {
		tb.Fatal(err)
	}
	f := [schemas.NumFeatures]float64(r.Features)
	return &f
}

// storedPrediction is a prediction read back from PREDICTIONS.
type storedPrediction struct {
	schemas.Prediction
	subject string
	msgID   string
	index   int // i of the record id "<prefix>-<i>"
}

func readPredictions(tb testing.TB, e *env) (main, shadow []storedPrediction) {
	tb.Helper()
	for _, m := range natstest.StreamMessages(tb, e.js, schemas.StreamPredictions) {
		var p storedPrediction
		if err := json.Unmarshal(m.Data(), &p.Prediction); err != nil {
			tb.Fatalf("prediction %q: %v", m.Data(), err)
		}
		p.subject, p.msgID = m.Subject(), m.Headers().Get(jetstream.MsgIDHeader)
		i := strings.LastIndexByte(p.RecordID, '-')
		n, err := strconv.Atoi(p.RecordID[i+1:])
		if err != nil {
			tb.Fatalf("record id %q", p.RecordID)
		}
		p.index = n
		if strings.HasPrefix(m.Subject(), e.subjects.Prefix+".predictions."+schemas.ShadowToken+".") {
			shadow = append(shadow, p)
		} else {
			main = append(main, p)
		}
	}
	return main, shadow
}

// checkNamed fails unless every prediction's probability is what the model
// it names computes for its record.
func checkNamed(tb testing.TB, ps []storedPrediction, models map[string]*versioned) {
	tb.Helper()
	for _, p := range ps {
		m, ok := models[p.Model.Version]
		if !ok {
			tb.Errorf("%s: unknown model version %q", p.RecordID, p.Model.Version)
			continue
		}
		if want := m.prob(features(tb, p.index)); math.Abs(p.Probability-want) > 1e-12 || p.Model != m.Ref() {
			tb.Errorf("%s: probability %v named %+v, but that model gives %v", p.RecordID, p.Probability, p.Model, want)
		}
		if wantLabel := p.Probability >= m.Threshold(); wantLabel != (p.Label == 1) {
			tb.Errorf("%s: label %d for probability %v", p.RecordID, p.Label, p.Probability)
		}
	}
}

// TestSetModelsSwapUnderLoad swaps the model twice while records flow. Each
// swap happens while a batch is held mid-scoring by the old model: that
// batch must finish with the old model, every later one use the new model.
// Read back from PREDICTIONS: exactly one prediction per record, each named
// after the model that computed it, and (one worker: batches in delivery
// order) versions in swap order along the records, with no record of an
// older version after one of a newer.
func TestSetModelsSwapUnderLoad(t *testing.T) {
	for _, tt := range []struct {
		name    string
		workers int
		batch   bool
	}{
		{name: "one worker", workers: 1},
		{name: "one worker, batch models", workers: 1, batch: true},
		{name: "three workers", workers: 3, batch: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := testConfig()
			cfg.Workers = tt.workers
			cfg.AckWait = 10 * time.Second // a held batch must not be redelivered meanwhile
			cfg.PublishTimeout = 5 * time.Second
			const n = 3000
			v1, v2, v3 := newVersioned("1.0.0", 1, 700), newVersioned("2.0.0", 2, 700), newVersioned("3.0.0", 3, 0)
			for _, m := range []*versioned{v1, v2, v3} {
				m.batch = tt.batch
			}
			r := e.start(t, cfg, v1.model())

			var pub sync.WaitGroup
			pub.Go(func() { e.publishRecords(t, "swap", "r", n) })

			swap := func(from, to *versioned) {
				select {
				case <-from.reached: // a batch of from is held mid-scoring
				case <-time.After(30 * time.Second):
					t.Fatalf("model %s never reached its gate", from.version)
				}
				if err := r.s.SetModels(to.model(), nil); err != nil {
					t.Fatal(err)
				}
				if a, _ := r.s.Models(); a != to.Ref() {
					t.Errorf("Models() = %+v after SetModels(%s)", a, to.version)
				}
				close(from.release)
			}
			swap(v1, v2)
			swap(v2, v3)
			pub.Wait()
			// At least n: a record redelivered (its ack wait expired on a
			// slow machine, e.g. under -race) is scored again and counted
			// again; exactly one prediction per record is checked on the
			// stream below.
			natstest.Eventually(t, 60*time.Second, func() error {
				if got := r.s.Stats().Scored; got < n {
					return fmt.Errorf("scored %d of %d", got, n)
				}
				return nil
			})
			e.settled(t, 30*time.Second)

			main, shadow := readPredictions(t, e)
			if len(shadow) != 0 {
				t.Errorf("%d shadow predictions without a shadow model", len(shadow))
			}
			byIndex := map[int]storedPrediction{}
			for _, p := range main {
				if _, dup := byIndex[p.index]; dup {
					t.Errorf("two predictions for %s", p.RecordID)
				}
				byIndex[p.index] = p
			}
			if len(byIndex) != n || len(main) != n {
				t.Fatalf("%d predictions for %d records, want exactly one for each of %d", len(main), len(byIndex), n)
			}
			checkNamed(t, main, map[string]*versioned{"1.0.0": v1, "2.0.0": v2, "3.0.0": v3})
			count := map[string]int{}
			for _, p := range main {
				count[p.Model.Version]++
			}
			// Each model reached its gate, so each scored records (a record
			// whose publish timed out is rescored by a later model, so the
			// counts can be below the gates).
			if count["1.0.0"] == 0 || count["2.0.0"] == 0 || count["3.0.0"] == 0 {
				t.Errorf("predictions per version %v: want some of each", count)
			}
			if tt.workers == 1 {
				// First deliveries are scored in stream order; a redelivered
				// record is scored later, by the model of that time.
				order := map[string]int{"1.0.0": 1, "2.0.0": 2, "3.0.0": 3}
				last, redelivered := 0, 0
				for i := range n {
					if byIndex[i].Deliveries > 1 {
						redelivered++
						continue
					}
					o := order[byIndex[i].Model.Version]
					if o < last {
						t.Fatalf("record %d scored by %s after a record scored by a newer model", i, byIndex[i].Model.Version)
					}
					last = o
				}
				t.Logf("%d records redelivered (left out of the order check)", redelivered)
			}
			if got := testutil.ToFloat64(r.s.m.swaps); got != 2 {
				t.Errorf("model_swaps_total = %v, want 2", got)
			}
			t.Logf("predictions per version: %v", count)
		})
	}
}

// TestSetModelsConcurrentWithScoring swaps models from several goroutines
// while records are scored (run with -race): every record still gets exactly
// one prediction, named after the model that computed it.
func TestSetModelsConcurrentWithScoring(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.Workers = 2
	models := map[string]*versioned{}
	for i := range 4 {
		m := newVersioned(fmt.Sprintf("%d.0.0", i+1), float64(i+1), 0)
		m.batch = i%2 == 0
		models[m.version] = m
	}
	r := e.start(t, cfg, models["1.0.0"].model())
	const n = 2000
	ctx, cancel := context.WithCancel(context.Background())
	var swappers sync.WaitGroup
	for g := range 2 {
		swappers.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				a := models[fmt.Sprintf("%d.0.0", 1+(i+g)%4)]
				var sh Model
				if i%3 == 0 {
					sh = models[fmt.Sprintf("%d.0.0", 1+(i+g+1)%4)].model()
				}
				if err := r.s.SetModels(a.model(), sh); err != nil {
					t.Error(err)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	e.publishRecords(t, "conc", "c", n)
	natstest.Eventually(t, 60*time.Second, func() error {
		if got := r.s.Stats().Scored; got != n {
			return fmt.Errorf("scored %d of %d", got, n)
		}
		return nil
	})
	cancel()
	swappers.Wait()
	e.settled(t, 10*time.Second)
	main, shadow := readPredictions(t, e)
	seen := map[int]bool{}
	for _, p := range main {
		if seen[p.index] {
			t.Errorf("two predictions for %s", p.RecordID)
		}
		seen[p.index] = true
	}
	if len(seen) != n {
		t.Fatalf("%d records predicted, want %d", len(seen), n)
	}
	checkNamed(t, main, models)
	checkNamed(t, shadow, models)
	for _, p := range shadow {
		if !seen[p.index] {
			t.Errorf("shadow prediction for %s, which has no main prediction", p.RecordID)
		}
	}
}

func TestSetModelsRefusesInvalidModels(t *testing.T) {
	e := newEnv(t)
	v1 := newVersioned("1.0.0", 1, 0)
	r := e.start(t, testConfig(), v1)
	bad := badThreshold{v1}
	for _, tt := range []struct {
		name           string
		active, shadow Model
	}{
		{name: "no active model", active: nil},
		{name: "active threshold out of range", active: bad},
		{name: "shadow threshold out of range", active: v1, shadow: bad},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := r.s.SetModels(tt.active, tt.shadow); err == nil {
				t.Fatal("SetModels accepted it")
			}
			if a, sh := r.s.Models(); a != v1.Ref() || sh != (schemas.ModelRef{}) {
				t.Errorf("models changed to %+v, %+v", a, sh)
			}
		})
	}
}

type badThreshold struct{ *versioned }

func (badThreshold) Threshold() float64 { return 1.5 }

// TestShadowPredictions runs a shadow model beside the active one. Read back
// from PREDICTIONS: every valid record has exactly one main prediction (the
// active model's, on <prefix>.predictions.<source>) and one shadow
// prediction (the shadow model's, on <prefix>.predictions.shadow.<source>,
// message id shadow/<version>/<source>/<id>); a subscriber to
// <prefix>.predictions.* sees no shadow; records the shadow model fails on
// (NaN, panic) still get their main prediction and no dead letter.
func TestShadowPredictions(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.AckWait, cfg.PublishTimeout = 10*time.Second, 5*time.Second // no shadow publish may time out on a loaded machine
	active := newVersioned("1.0.0", 1, 0)
	sh := newVersioned("1.1.0", 2, 0)
	sh.batch = true
	sh.fail = func(f *[schemas.NumFeatures]float64) bool { return f[schemas.Age] == 31 }
	sh.bomb = func(f *[schemas.NumFeatures]float64) bool { return f[schemas.Age] == 32 }
	r := e.start(t, cfg, active)
	if err := r.s.SetModels(active, sh.model()); err != nil {
		t.Fatal(err)
	}

	// What a downstream consumer of the documented subject sees.
	nc, _ := natstest.Connect(t, e.ns)
	var downstream atomic.Int64
	var leaked atomic.Int64
	sub, err := nc.Subscribe(e.subjects.Prefix+".predictions.*", func(m *nats.Msg) {
		downstream.Add(1)
		var p schemas.Prediction
		if json.Unmarshal(m.Data, &p) == nil && p.Model.Version != active.version {
			leaked.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	const n = 1000
	e.publishRecords(t, "clinic-a", "s", n)
	e.publish(t, e.subjects.Records(schemas.ShadowToken), recordJSON("reserved-1", 1))
	natstest.Eventually(t, 30*time.Second, func() error {
		if st := r.s.Stats(); st.Scored != n || st.DeadLettered != 1 {
			return fmt.Errorf("scored %d of %d, dead-lettered %d of 1", st.Scored, n, st.DeadLettered)
		}
		return nil
	})
	e.settled(t, 10*time.Second)

	main, shadow := readPredictions(t, e)
	if len(main) != n {
		t.Fatalf("%d main predictions, want %d", len(main), n)
	}
	checkNamed(t, main, map[string]*versioned{"1.0.0": active})
	checkNamed(t, shadow, map[string]*versioned{"1.1.0": sh})
	failing := 0
	shadowOf := map[int]storedPrediction{}
	for _, p := range shadow {
		if _, dup := shadowOf[p.index]; dup {
			t.Errorf("two shadow predictions for %s", p.RecordID)
		}
		shadowOf[p.index] = p
		if want := e.subjects.ShadowPrediction("clinic-a"); p.subject != want {
			t.Errorf("shadow prediction on %s, want %s", p.subject, want)
		}
		if want := "shadow/1.1.0/clinic-a/" + p.RecordID; p.msgID != want {
			t.Errorf("shadow msg id %q, want %q", p.msgID, want)
		}
	}
	for _, p := range main {
		if want := e.subjects.Predictions("clinic-a"); p.subject != want {
			t.Errorf("main prediction on %s, want %s", p.subject, want)
		}
		age := features(t, p.index)[schemas.Age]
		_, has := shadowOf[p.index]
		if age == 31 || age == 32 {
			failing++
			if has {
				t.Errorf("%s: shadow prediction although the shadow model failed on it", p.RecordID)
			}
		} else if !has {
			t.Errorf("%s: no shadow prediction", p.RecordID)
		}
	}
	if len(shadow) != n-failing {
		t.Errorf("%d shadow predictions, want %d", len(shadow), n-failing)
	}
	if got := testutil.ToFloat64(r.s.m.shadowFailures[shadowFailScore]); got < float64(failing) {
		t.Errorf("shadow_failures_total{reason=score} = %v, want at least %d", got, failing)
	}
	dls := e.deadLetters(t)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1 (the reserved source)", len(dls))
	}
	for _, d := range dls {
		if d.Reasons[0].Field != "subject" || !strings.Contains(d.Reasons[0].Problem, "reserved") {
			t.Errorf("reserved source dead letter reasons %+v", d.Reasons)
		}
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if got := downstream.Load(); got != n {
			return fmt.Errorf("downstream got %d predictions, want %d", got, n)
		}
		return nil
	})
	if leaked.Load() != 0 {
		t.Errorf("%d shadow predictions reached a subscriber of predictions.*", leaked.Load())
	}
}

// TestShadowPublishFailureNeverBlocksMain stores predictions in a stream that
// does not capture the shadow subject, so every shadow publish is refused:
// each record must still get its main prediction, promptly and without a
// retry or dead letter, and the failures are counted.
func TestShadowPublishFailureNeverBlocksMain(t *testing.T) {
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns)
	sc := streams.DefaultConfig()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range sc.StreamConfigs() {
		if c.Name == schemas.StreamPredictions {
			c.Subjects = []string{sc.Subjects().Prefix + ".predictions.*"}
		}
		if _, err := js.CreateStream(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{ns: ns, js: js, subjects: sc.Subjects()}
	active, sh := newVersioned("1.0.0", 1, 0), newVersioned("1.1.0", 2, 0)
	cfg := testConfig()
	cfg.AckWait, cfg.PublishTimeout = 10*time.Second, 5*time.Second // a main publish must not time out on a loaded machine
	r := e.start(t, cfg, active)
	if err := r.s.SetModels(active, sh); err != nil {
		t.Fatal(err)
	}
	const n = 500
	e.publishRecords(t, "clinic-b", "f", n)
	natstest.Eventually(t, 30*time.Second, func() error {
		if st := r.s.Stats(); st.Scored != n {
			return fmt.Errorf("scored %d of %d", st.Scored, n)
		}
		return nil
	})
	e.settled(t, 10*time.Second)
	main, shadow := readPredictions(t, e)
	if len(main) != n || len(shadow) != 0 {
		t.Fatalf("%d main and %d shadow predictions, want %d and 0", len(main), len(shadow), n)
	}
	if st := r.s.Stats(); st.Retried != 0 || st.DeadLettered != 0 {
		t.Errorf("stats %+v: a shadow failure retried or dead-lettered a record", st)
	}
	if got := testutil.ToFloat64(r.s.m.shadowFailures[shadowFailPublish]); got < n {
		t.Errorf("shadow_failures_total{reason=publish} = %v, want at least %d", got, n)
	}
}
