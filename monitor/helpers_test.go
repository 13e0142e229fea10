package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

// testWriter sends log lines to the test log.
type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// fakeClock is a settable clock for WithClock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type harness struct {
	tb       testing.TB
	ns       *server.Server
	js       jetstream.JetStream
	subjects schemas.Subjects
}

func newHarness(tb testing.TB) *harness {
	tb.Helper()
	ns := natstest.RunServer(tb)
	_, js := natstest.Connect(tb, ns)
	natstest.EnsureStreams(tb, js, nil)
	return &harness{tb: tb, ns: ns, js: js, subjects: streams.DefaultConfig().Subjects()}
}

// testConfig is DefaultConfig with fast intervals, small batches and no rules.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.EvaluationInterval = 20 * time.Millisecond
	cfg.CheckpointInterval = 200 * time.Millisecond
	cfg.Rules = nil
	cfg.Consumer.BatchSize = 100
	cfg.Consumer.MaxAckPending = 1000
	cfg.Consumer.RetryDelay = 50 * time.Millisecond
	return cfg
}

type running struct {
	m    *Monitor
	reg  *prometheus.Registry
	stop func()
}

// start runs a monitor until the test ends (or stop is called) and waits
// until it is ready.
func (h *harness) start(cfg Config, clock *fakeClock) *running {
	h.tb.Helper()
	r := h.startNoWait(cfg, clock)
	natstest.Eventually(h.tb, 10*time.Second, r.m.Ready)
	return r
}

// startNoWait runs a monitor until the test ends (or stop is called).
func (h *harness) startNoWait(cfg Config, clock *fakeClock) *running {
	h.tb.Helper()
	reg := prometheus.NewRegistry()
	var opts []Option
	if clock != nil {
		opts = append(opts, WithClock(clock.Now))
	}
	log := slog.New(slog.NewTextHandler(testWriter{h.tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m, err := New(cfg, h.js, h.subjects, reg, log, opts...)
	if err != nil {
		h.tb.Fatalf("New: %v", err)
	}
	stop := natstest.RunInBackground(h.tb, m.Run, 20*time.Second)
	return &running{m: m, reg: reg, stop: stop}
}

func (h *harness) publish(subject, msgID string, v any) {
	h.tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		h.tb.Fatal(err)
	}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: b}, opts...); err != nil {
		h.tb.Fatalf("publishing to %s: %v", subject, err)
	}
}

// publishAll publishes each of vs to subject asynchronously, in order, and
// waits for every publish ack.
func (h *harness) publishAll(subject string, vs []any) {
	h.tb.Helper()
	for _, v := range vs {
		b, err := json.Marshal(v)
		if err != nil {
			h.tb.Fatal(err)
		}
		if _, err := h.js.PublishAsync(subject, b); err != nil {
			h.tb.Fatalf("publishing to %s: %v", subject, err)
		}
	}
	select {
	case <-h.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		h.tb.Fatalf("%d publishes to %s not acknowledged within 30s", h.js.PublishAsyncPending(), subject)
	}
}

func (h *harness) prediction(source, id string, label int, latencyMS float64, msgID string) {
	h.tb.Helper()
	now := time.Now().UTC()
	h.publish(h.subjects.Predictions(source), msgID, schemas.Prediction{
		SchemaVersion: schemas.Version, RecordID: id, Source: source, Probability: float64(label),
		Label: label, Threshold: 0.5, Model: schemas.ModelRef{Name: "test", Version: "1"},
		ReceivedAt: now, ScoredAt: now, LatencyMS: latencyMS,
	})
}

func (h *harness) outcome(source, id string, label int, msgID string) {
	h.tb.Helper()
	h.publish(h.subjects.Outcomes(source), msgID, schemas.Outcome{SchemaVersion: schemas.Version, RecordID: id, Label: label, ObservedAt: time.Now().UTC()})
}

func (h *harness) deadLetter(source, id string, stage schemas.Stage) {
	h.tb.Helper()
	h.publish(h.subjects.DeadLetter(source), "", schemas.DeadLetter{
		SchemaVersion: schemas.Version, Subject: h.subjects.Records(source), Source: source, RecordID: id,
		Stage: stage, Reasons: []schemas.Problem{{Field: "features.chol", Problem: "out of range"}},
	})
}

// settle waits until the monitor has folded every input message published
// so far.
func (h *harness) settle(r *running) {
	h.tb.Helper()
	h.settleWithin(r, 20*time.Second)
}

// settleWithin is settle with a given timeout, for large batches.
func (h *harness) settleWithin(r *running, timeout time.Duration) {
	h.tb.Helper()
	// The server updates a consumer's pending count asynchronously after a
	// publish, so "nothing pending" right after publishing can be stale:
	// the condition must hold on several polls in a row.
	stable := 0
	natstest.Eventually(h.tb, timeout, func() error {
		if err := h.settledOnce(r); err != nil {
			stable = 0
			return err
		}
		if stable++; stable < 5 {
			return fmt.Errorf("settled on %d polls in a row, want 5", stable)
		}
		return nil
	})
}

// settledOnce reports whether, right now, each reader's position is the
// last message on its stream that matches its filters, and the audit
// consumer has nothing pending or unacked.
func (h *harness) settledOnce(r *running) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	in := r.m.auditInput()
	c, err := h.js.Consumer(ctx, in.stream, in.consumer)
	if err != nil {
		return err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	if info.NumPending != 0 || info.NumAckPending != 0 {
		return fmt.Errorf("%s: %d pending, %d unacked", in.consumer, info.NumPending, info.NumAckPending)
	}
	pos := r.m.Snapshot().Positions
	for _, rd := range r.m.readers() {
		s, err := h.js.Stream(ctx, rd.stream)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		// The reader reads the whole stream: it has folded up to its last
		// message.
		last := info.State.LastSeq
		if pos[rd.name] != last {
			return fmt.Errorf("%s: folded up to sequence %d of %d", rd.name, pos[rd.name], last)
		}
	}
	return nil
}

// waitEvaluations waits until the monitor has evaluated its rules n more times.
func waitEvaluations(tb testing.TB, m *Monitor, n int64) {
	tb.Helper()
	target := m.evaluations.Load() + n
	natstest.Eventually(tb, 10*time.Second, func() error {
		if got := m.evaluations.Load(); got < target {
			return fmt.Errorf("%d evaluations, want %d", got, target)
		}
		return nil
	})
}

func (h *harness) alerts() []schemas.Alert {
	h.tb.Helper()
	var out []schemas.Alert
	for _, msg := range natstest.StreamMessages(h.tb, h.js, schemas.StreamAlerts) {
		a, err := decodeAlert(msg.Data())
		if err != nil {
			h.tb.Fatalf("alert: %v", err)
		}
		out = append(out, a)
	}
	return out
}
