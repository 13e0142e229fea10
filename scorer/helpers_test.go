package scorer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

// fakeModel is a deterministic function of the features.
type fakeModel struct {
	fail  func(f *[schemas.NumFeatures]float64) bool // return NaN
	panic func(f *[schemas.NumFeatures]float64) bool
}

func fakeProb(f *[schemas.NumFeatures]float64) float64 {
	x := (f[schemas.Age]-55)/10 + f[schemas.Sex] + 0.3*f[schemas.CP] - 0.01*(f[schemas.Thalach]-150)
	if math.IsNaN(x) {
		x = 0
	}
	return 1 / (1 + math.Exp(-x))
}

func (m fakeModel) Predict(f *[schemas.NumFeatures]float64) float64 {
	if m.panic != nil && m.panic(f) {
		panic("fake model exploded")
	}
	if m.fail != nil && m.fail(f) {
		return math.NaN()
	}
	return fakeProb(f)
}

func (fakeModel) Ref() schemas.ModelRef {
	return schemas.ModelRef{Name: "fake", Version: "1.0.0", SHA256: "0123abcd"}
}
func (fakeModel) Threshold() float64 { return 0.5 }

// batchFake also implements BatchModel.
type batchFake struct{ fakeModel }

func (m batchFake) PredictBatch(rows [][schemas.NumFeatures]float64, out []float64) error {
	for i := range rows {
		out[i] = m.Predict(&rows[i])
	}
	return nil
}

func testConfig() Config {
	c := DefaultConfig()
	c.BatchSize = 50
	c.MaxAckPending = 2000
	c.AckWait = 2 * time.Second
	c.MaxDeliver = 3
	c.NakDelay = 50 * time.Millisecond
	c.PullExpiry = 2 * time.Second
	c.PublishTimeout = time.Second
	c.ShutdownTimeout = 5 * time.Second
	return c
}

func testLogger(tb testing.TB) *slog.Logger {
	if os.Getenv("SCORER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", tb.Name())
	}
	return slog.New(slog.DiscardHandler)
}

type env struct {
	ns       *server.Server
	js       jetstream.JetStream
	subjects schemas.Subjects
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	ns := natstest.RunServer(tb)
	_, js := natstest.Connect(tb, ns)
	c := natstest.EnsureStreams(tb, js, nil)
	return &env{ns: ns, js: js, subjects: c.Subjects()}
}

// running is a scorer started by start.
type running struct {
	s      *Scorer
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error

	once sync.Once
	err  error
}

// stop cancels the scorer and returns Run's error.
func (r *running) stop(tb testing.TB) error {
	tb.Helper()
	r.cancel()
	r.once.Do(func() {
		select {
		case r.err = <-r.done:
		case <-time.After(30 * time.Second):
			r.err = errors.New("scorer did not stop within 30s")
			tb.Error(r.err)
		}
	})
	return r.err
}

// start runs a scorer on its own connection to e.ns.
func (e *env) start(tb testing.TB, cfg Config, m Model, opts ...Option) *running {
	tb.Helper()
	_, js := natstest.Connect(tb, e.ns)
	reg := prometheus.NewRegistry()
	s, err := New(cfg, js, e.subjects, m, reg, testLogger(tb), opts...)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{s: s, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	tb.Cleanup(func() { _ = r.stop(tb) })
	natstest.Eventually(tb, 10*time.Second, s.Ready)
	return r
}

type rec struct {
	ID         string             `json:"id"`
	PatientRef string             `json:"patient_ref,omitempty"`
	Features   map[string]float64 `json:"features"`
}

func recordJSON(id string, i int) []byte {
	f := map[string]float64{
		"age": float64(30 + i%50), "sex": float64(i % 2), "cp": float64(1 + i%4), "trestbps": 120,
		"chol": 200 + float64(i%90), "fbs": 0, "restecg": 0, "thalach": 120 + float64(i%60),
		"exang": 0, "oldpeak": 1.5, "slope": 2, "ca": 0, "thal": 3,
	}
	b, _ := json.Marshal(rec{ID: id, PatientRef: "p-" + id, Features: f})
	return b
}

// publish publishes payload on subj and returns its RECORDS sequence.
func (e *env) publish(tb testing.TB, subj string, payload []byte) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := e.js.Publish(ctx, subj, payload)
	if err != nil {
		tb.Fatalf("publishing to %s: %v", subj, err)
	}
	return ack.Sequence
}

// publishRecords publishes n valid records on source, ids prefix-0..n-1.
func (e *env) publishRecords(tb testing.TB, source, prefix string, n int) {
	tb.Helper()
	futs := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		// A bounded window: past the client's default of 4000 outstanding
		// async publishes, PublishAsync fails (ErrTooManyStalledMsgs) on a
		// loaded machine instead of waiting.
		if e.js.PublishAsyncPending() >= 1000 {
			select {
			case <-e.js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				tb.Fatal("publish acks not complete after 30s")
			}
		}
		f, err := e.js.PublishAsync(e.subjects.Records(source), recordJSON(fmt.Sprintf("%s-%d", prefix, i), i))
		if err != nil {
			tb.Fatalf("publish: %v", err)
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			tb.Fatalf("publish ack: %v", err)
		case <-time.After(10 * time.Second):
			tb.Fatal("publish ack timeout")
		}
	}
}

func (e *env) streamCount(tb testing.TB, stream string) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		tb.Fatalf("stream %s: %v", stream, err)
	}
	return s.CachedInfo().State.Msgs
}

func (e *env) predictions(tb testing.TB) []schemas.Prediction {
	tb.Helper()
	var out []schemas.Prediction
	for _, m := range natstest.StreamMessages(tb, e.js, schemas.StreamPredictions) {
		var p schemas.Prediction
		if err := json.Unmarshal(m.Data(), &p); err != nil {
			tb.Fatalf("prediction %q: %v", m.Data(), err)
		}
		out = append(out, p)
	}
	return out
}

func (e *env) deadLetters(tb testing.TB) map[uint64]dlMsg {
	tb.Helper()
	out := map[uint64]dlMsg{}
	for _, m := range natstest.StreamMessages(tb, e.js, schemas.StreamDeadLetter) {
		var d schemas.DeadLetter
		if err := json.Unmarshal(m.Data(), &d); err != nil {
			tb.Fatalf("dead letter: %v", err)
		}
		if _, dup := out[d.StreamSequence]; dup {
			tb.Errorf("two dead letters for record seq %d", d.StreamSequence)
		}
		out[d.StreamSequence] = dlMsg{DeadLetter: d, subject: m.Subject()}
	}
	return out
}

type dlMsg struct {
	schemas.DeadLetter
	subject string
}

// settled waits until the consumer has nothing pending or unacked.
func (e *env) settled(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	natstest.Eventually(tb, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := e.js.Consumer(ctx, schemas.StreamRecords, streams.ConsumerScorer)
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
			return fmt.Errorf("consumer: %d pending, %d unacked, %d redelivering", info.NumPending, info.NumAckPending, info.NumRedelivered)
		}
		return nil
	})
}

func uniqueIDs(tb testing.TB, ps []schemas.Prediction) map[string]schemas.Prediction {
	tb.Helper()
	out := make(map[string]schemas.Prediction, len(ps))
	for _, p := range ps {
		k := p.Source + "/" + p.RecordID
		if _, dup := out[k]; dup {
			tb.Errorf("duplicate prediction for %s", k)
		}
		out[k] = p
	}
	return out
}

var errNotYet = errors.New("not yet")
