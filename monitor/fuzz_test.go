package monitor

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// FuzzDecodeEvent: a ledger message never panics the fold, and an accepted
// event folds without panicking.
func FuzzDecodeEvent(f *testing.F) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, ev := range []event{
		{V: 1, Kind: kindPrediction, Source: "s", RecordID: "r", At: at, Label: 1, LatencyMS: 3, Pending: true},
		{V: 1, Kind: kindJoin, Source: "s", RecordID: "r", At: at, Predicted: 1, Actual: 0, PredictionAt: &at, OutcomeAt: &at},
		{V: 1, Kind: kindUnscorable, Source: "s", RecordID: "r", At: at, DeadLetterAt: &at, OutcomeAt: &at},
		{V: 1, Kind: kindDeadLetter, Source: "s", At: at, Stage: schemas.StageDecode},
	} {
		b, _ := json.Marshal(ev)
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"kind":"join","actual":7}`))
	f.Add([]byte(`{"v":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := decodeEvent(data)
		if err != nil {
			return
		}
		a := newAggregator(DefaultConfig())
		a.apply(1, ev)
		_ = a.window(at)
		_ = a.pending(sidePrediction, at)
	})
}

// FuzzDecodeCheckpoint: a corrupt checkpoint is rejected or restores a state
// the fold can use.
func FuzzDecodeCheckpoint(f *testing.F) {
	a := newAggregator(DefaultConfig())
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.apply(1, event{V: 1, Kind: kindPrediction, At: at, LatencyMS: 4, Pending: true})
	a.apply(2, event{V: 1, Kind: kindJoin, At: at, Actual: 1, Predicted: 1, PredictionAt: &at})
	b, err := encodeCheckpoint("L", &a.st)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decodeCheckpoint("L", data)
		if err != nil {
			return
		}
		a := newAggregator(DefaultConfig())
		a.restore(st)
		a.apply(st.Seq+1, event{V: 1, Kind: kindJoin, At: at, Actual: 1, Predicted: 0, OutcomeAt: &at})
		_ = a.window(at)
	})
}

func FuzzDecodeAlert(f *testing.F) {
	b, _ := json.Marshal(schemas.Alert{SchemaVersion: 1, ID: "a-1-firing", Rule: "a", Status: schemas.AlertFiring})
	f.Add(b)
	f.Add([]byte(`{"status":"maybe"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := decodeAlert(data)
		if err != nil {
			return
		}
		_ = restoreState(&a, 1)
	})
}

func TestCheckpointRoundTrip(t *testing.T) {
	cfg := DefaultConfig()
	a := newAggregator(cfg)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.apply(1, event{V: 1, Kind: kindPrediction, At: at, LatencyMS: 4, Pending: true})
	a.apply(2, event{V: 1, Kind: kindDeadLetter, At: at, Stage: schemas.StageScore})
	a.apply(3, event{V: 1, Kind: kindJoin, At: at, Actual: 1, Predicted: 1, PredictionAt: &at})
	b, err := encodeCheckpoint("L", &a.st)
	if err != nil {
		t.Fatal(err)
	}
	st, err := decodeCheckpoint("L", b)
	if err != nil {
		t.Fatal(err)
	}
	r := newAggregator(cfg)
	r.restore(st)
	if got, want := r.window(at), a.window(at); got != want {
		t.Fatalf("restored window %+v, want %+v", got, want)
	}
	if r.st.Seq != 3 || r.st.Predictions != 1 || r.st.DeadByStage[schemas.StageScore] != 1 || r.st.Confusion[1][1] != 1 {
		t.Fatalf("restored state %+v", r.st)
	}
	if _, err := decodeCheckpoint("OTHER", b); err == nil {
		t.Fatal("a checkpoint of another ledger was accepted")
	}
}

// A full checkpoint must fit in one NATS message (1 MiB by default).
func TestCheckpointAtMaxWindowFitsOneMessage(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WindowSize = MaxWindowSize
	a := newAggregator(cfg)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 * MaxWindowSize {
		at = at.Add(time.Duration(i%997) * time.Millisecond)
		switch i % 3 {
		case 0:
			a.apply(uint64(i+1), event{V: 1, Kind: kindPrediction, At: at, LatencyMS: float64(i%1000) / 7, Pending: true})
		case 1:
			a.apply(uint64(i+1), event{V: 1, Kind: kindDeadLetter, At: at})
		default:
			a.apply(uint64(i+1), event{V: 1, Kind: kindJoin, At: at, Actual: i % 2, Predicted: (i / 2) % 2, PredictionAt: &at})
		}
	}
	b, err := encodeCheckpoint("L", &a.st)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 1<<20 {
		t.Fatalf("checkpoint is %d bytes, over 1 MiB", len(b))
	}
	t.Logf("checkpoint at window_size %d: %d bytes", MaxWindowSize, len(b))
}
