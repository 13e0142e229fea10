package monitor

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// FuzzDecodeInputs: a message on PREDICTIONS, OUTCOMES or DEADLETTER is
// either refused as invalid input (counted, not folded) or becomes an event
// whose record id is a valid record id (or empty for a dead letter), and
// which the join and the aggregator fold without panicking. which picks the
// input (0, 1, 2, 3: shadow).
func FuzzDecodeInputs(f *testing.F) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p, _ := json.Marshal(schemas.Prediction{SchemaVersion: 1, RecordID: "r-1", Source: "s", Probability: 0.7, Label: 1, Threshold: 0.5,
		ReceivedAt: at, ScoredAt: at, LatencyMS: 3.5, Deliveries: 1})
	o := []byte(`{"schema_version":1,"record_id":"r-1","label":0,"observed_at":"2026-01-01T00:00:00Z"}`)
	d, _ := json.Marshal(schemas.DeadLetter{SchemaVersion: 1, Subject: "cardio.records.s", Source: "s", RecordID: "r-1", Stage: schemas.StageDecode,
		Reasons: []schemas.Problem{{Field: "id", Problem: "x"}}, Payload: []byte("{}"), PayloadSize: 2})
	for i, seed := range [][]byte{p, o, d, p} {
		f.Add(uint8(i), seed)
		f.Add(uint8(i), []byte(`{"record_id":"a b*>","label":1,"latency_ms":-1e308}`))
		f.Add(uint8(i), []byte(`{"record_id":"","stage":"nonsense","label":2}`))
		f.Add(uint8(i), []byte(`null`))
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		decode := []func([]byte, string) (event, error){decodePrediction, decodeOutcome, decodeDeadLetter, decodeShadow}[which%4]
		ev, err := decode(data, "s")
		if err != nil {
			if !errors.Is(err, errInvalidInput) {
				t.Fatalf("error is not errInvalidInput: %v", err)
			}
			return
		}
		// The record id of a prediction or an outcome is only in its key:
		// the string decoders must accept the payload too, with a valid id
		// of that key.
		id := ev.RecordID
		switch ev.Kind {
		case kindPrediction, kindShadow:
			p, perr := schemas.DecodePredictionSummary(data)
			if perr != nil || ev.Label != p.Label || ev.LatencyMS != p.LatencyMS && ev.Kind == kindPrediction || ev.Version != p.ModelVersion {
				t.Fatalf("accepted as %+v; DecodePredictionSummary: %+v, %v", ev, p, perr)
			}
			id = p.RecordID
		case kindOutcome:
			o, oerr := schemas.DecodeOutcome(data)
			if oerr != nil || ev.Label != o.Label {
				t.Fatalf("accepted as %+v; DecodeOutcome: %+v, %v", ev, o, oerr)
			}
			id = o.RecordID
		}
		if ev.Kind != kindDeadLetter && (!ev.keyed || ev.key != keyOf("s", id)) {
			t.Fatalf("event %+v: not keyed by record id %q", ev, id)
		}
		if !(schemas.ValidID(id) || ev.Kind == kindDeadLetter && id == "") {
			t.Fatalf("accepted record id %q", id)
		}
		ev.At = at
		a, j := newAggregator(DefaultConfig()), newJoiner(DefaultConfig())
		j.fold(a, ev)
		j.fold(a, event{Kind: kindOutcome, Source: "s", RecordID: id, At: at, Label: 1})
		_ = a.window(at)
		_ = a.pending(sidePrediction, at)
	})
}
