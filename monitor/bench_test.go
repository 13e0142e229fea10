package monitor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

// BenchmarkMonitorJoins folds a backlog of b.N predictions and b.N outcomes
// (real embedded server, real streams) and reports joins per second.
func BenchmarkMonitorJoins(b *testing.B) {
	h := newHarness(b)
	now := time.Now().UTC()
	preds, outs := make([]any, b.N), make([]any, b.N)
	for i := range b.N {
		id := fmt.Sprintf("r-%08d", i)
		preds[i] = schemas.Prediction{SchemaVersion: schemas.Version, RecordID: id, Source: "s", Probability: 0.7, Label: i % 2,
			Threshold: 0.5, Model: schemas.ModelRef{Name: "heart-xgb", Version: "1.0.0"}, ReceivedAt: now, ScoredAt: now, LatencyMS: 1.5, Deliveries: 1}
		outs[i] = schemas.Outcome{SchemaVersion: schemas.Version, RecordID: id, Label: (i / 3) % 2, ObservedAt: now}
	}
	for i := 0; i < b.N; i += 2000 {
		h.publishAll(h.subjects.Predictions("s"), preds[i:min(i+2000, b.N)])
		h.publishAll(h.subjects.Outcomes("s"), outs[i:min(i+2000, b.N)])
	}
	cfg := testConfig()
	cfg.CheckpointInterval = DefaultConfig().CheckpointInterval
	b.ResetTimer()
	start := time.Now()
	r := h.startNoWait(cfg, nil)
	natstest.Eventually(b, 5*time.Minute, func() error {
		if j := r.m.Snapshot().Joined; j < int64(b.N) {
			return fmt.Errorf("joined %d of %d", j, b.N)
		}
		return nil
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "joins/s")
	r.stop()
}

// BenchmarkFoldJoin is the in-memory part of one join, without NATS:
// decoding a prediction and an outcome and folding both (join, aggregates,
// windows). One op is one join.
func BenchmarkFoldJoin(b *testing.B) {
	cfg := DefaultConfig()
	a, j := newAggregator(cfg), newJoiner(cfg)
	now := time.Now().UTC()
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("r-%08d", i)
	}
	pred, err := json.Marshal(schemas.Prediction{SchemaVersion: schemas.Version, RecordID: "r-00000000", Source: "s", Probability: 0.7, Label: 1,
		Threshold: 0.5, Model: schemas.ModelRef{Name: "heart-xgb", Version: "1.0.0"}, ReceivedAt: now, ScoredAt: now, LatencyMS: 1.5, Deliveries: 1})
	if err != nil {
		b.Fatal(err)
	}
	out := []byte(`{"schema_version":1,"record_id":"r-00000000","label":0,"observed_at":"2026-01-01T00:00:00Z"}`)
	// One decoder for all, as each reader has.
	dec := newInputDecoder()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// Same-length ids: patch the id in place.
		copy(pred[bytes.Index(pred, []byte("r-")):], ids[i])
		copy(out[bytes.Index(out, []byte("r-")):], ids[i])
		p, err := dec.prediction(pred, "s")
		if err != nil {
			b.Fatal(err)
		}
		o, err := dec.outcome(out, "s")
		if err != nil {
			b.Fatal(err)
		}
		p.At, p.Ord = now, int64(2*i)
		o.At, o.Ord = now, int64(2*i+1)
		j.fold(a, p)
		j.fold(a, o)
	}
	b.StopTimer()
	if a.st.Joined != int64(b.N) {
		b.Fatalf("joined %d of %d", a.st.Joined, b.N)
	}
}
