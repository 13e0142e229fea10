package monitor

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// FuzzDecodeInputs: a message on PREDICTIONS, OUTCOMES or DEADLETTER is
// either refused as invalid input (terminated, counted) or becomes an event
// whose record id is a valid record id (or empty for a dead letter), whose
// ledger encoding folds back to the same event, and which the aggregator
// folds without panicking. which picks the input (0, 1, 2).
func FuzzDecodeInputs(f *testing.F) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p, _ := json.Marshal(schemas.Prediction{SchemaVersion: 1, RecordID: "r-1", Source: "s", Probability: 0.7, Label: 1, Threshold: 0.5,
		ReceivedAt: at, ScoredAt: at, LatencyMS: 3.5, Deliveries: 1})
	o := []byte(`{"schema_version":1,"record_id":"r-1","label":0,"observed_at":"2026-01-01T00:00:00Z"}`)
	d, _ := json.Marshal(schemas.DeadLetter{SchemaVersion: 1, Subject: "cardio.records.s", Source: "s", RecordID: "r-1", Stage: schemas.StageDecode,
		Reasons: []schemas.Problem{{Field: "id", Problem: "x"}}, Payload: []byte("{}"), PayloadSize: 2})
	for i, seed := range [][]byte{p, o, d} {
		f.Add(uint8(i), seed)
		f.Add(uint8(i), []byte(`{"record_id":"a b*>","label":1,"latency_ms":-1e308}`))
		f.Add(uint8(i), []byte(`{"record_id":"","stage":"nonsense","label":2}`))
		f.Add(uint8(i), []byte(`null`))
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		decode := []func(*Monitor, []byte, string, time.Time) (event, error){decodePrediction, decodeOutcome, decodeDeadLetter}[which%3]
		ev, err := decode(nil, data, "s", at)
		if err != nil {
			if !errors.Is(err, errInvalidInput) {
				t.Fatalf("error is not errInvalidInput: %v", err)
			}
			return
		}
		if !(schemas.ValidID(ev.RecordID) || ev.Kind == kindDeadLetter && ev.RecordID == "") {
			t.Fatalf("accepted record id %q", ev.RecordID)
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("ledger encoding: %v", err)
		}
		back, err := decodeEvent(b)
		if err != nil {
			t.Fatalf("the ledger cannot fold its own event %s: %v", b, err)
		}
		a := newAggregator(DefaultConfig())
		a.apply(1, back)
		_ = a.window(at)
		_ = a.pending(sidePrediction, at)
	})
}
