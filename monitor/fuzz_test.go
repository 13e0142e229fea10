package monitor

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// FuzzDecodeCheckpoint: a corrupt checkpoint is rejected or restores a state
// the fold can use.
func FuzzDecodeCheckpoint(f *testing.F) {
	a := newAggregator(DefaultConfig())
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.apply(event{Kind: kindPrediction, At: at, LatencyMS: 4, Pending: true})
	a.apply(event{Kind: kindJoin, At: at, Actual: 1, Predicted: 1, PredictionAt: at})
	j := newJoiner(DefaultConfig())
	j.fold(a, event{Kind: kindPrediction, Source: "s", RecordID: "open", At: at, Label: 1})
	j.fold(a, event{Kind: kindPrediction, Source: "s", RecordID: "x", At: at, Label: 1})
	j.fold(a, event{Kind: kindOutcome, Source: "s", RecordID: "x", At: at, Label: 0})
	j.prune(at.Add(48 * time.Hour))
	j.fold(a, event{Kind: kindShadow, Source: "s", RecordID: "y", At: at, Label: 1, Version: "2"})
	b, err := encodeCheckpoint("L", &a.st, j.state())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		st, js, err := decodeCheckpoint("L", data)
		if err != nil {
			return
		}
		a, j := newAggregator(DefaultConfig()), newJoiner(DefaultConfig())
		if err := j.restore(js); err != nil {
			return
		}
		a.restore(st)
		for _, k := range []string{kindPrediction, kindOutcome, kindDeadLetter, kindShadow} {
			j.fold(a, event{Kind: k, Source: "s", RecordID: "y", At: at, Label: 1, Version: "2"})
			j.fold(a, event{Kind: k, Source: "s", RecordID: "x", At: at, Label: 0, Version: "2"})
		}
		j.prune(at.Add(time.Hour))
		_ = a.window(at)
		_ = a.versions(at)
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

// TestCheckpointRoundTrip: a restored checkpoint continues exactly like the
// state it was taken from: the aggregates, the open joins, the resolved
// records remembered for late duplicates.
func TestCheckpointRoundTrip(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LabelDeadline = time.Hour
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at2 := at.Add(time.Hour)
	a, j := newAggregator(cfg), newJoiner(cfg)
	fold := func(a *aggregator, j *joiner, evs ...event) (late int) {
		for _, ev := range evs {
			if !j.fold(a, ev) {
				late++
			}
		}
		return late
	}
	fold(a, j,
		event{Kind: kindPrediction, Source: "s", RecordID: "joined", At: at, Ord: 1, Label: 1, LatencyMS: 4, Version: "1"},
		event{Kind: kindOutcome, Source: "s", RecordID: "joined", At: at, Ord: 2, Label: 1},
		event{Kind: kindPrediction, Source: "s", RecordID: "open", At: at2, Ord: 3, Label: 0, Version: "1"},
		event{Kind: kindShadow, Source: "s", RecordID: "open", At: at2, Ord: 4, Label: 1, Version: "2"},
		event{Kind: kindDeadLetter, Source: "s", RecordID: "dead", At: at2, Ord: 5, Stage: schemas.StageScore},
	)
	j.prune(at.Add(90 * time.Minute)) // "joined" expires into done; "open" and "dead" stay
	b, err := encodeCheckpoint("cardio", &a.st, j.state())
	if err != nil {
		t.Fatal(err)
	}
	ra, rj := restoreCheckpoint(t, cfg, b)
	open, done := rj.sizes()
	if !reflect.DeepEqual(rj.records(), j.records()) || done != 1 || open != 2 {
		t.Fatalf("restored joins open %d done %d, want 2 1:\n%+v\nwant\n%+v", open, done, rj.records(), j.records())
	}
	next := []event{
		{Kind: kindOutcome, Source: "s", RecordID: "open", At: at2.Add(time.Minute), Ord: 6, Label: 1},
		{Kind: kindOutcome, Source: "s", RecordID: "joined", At: at2.Add(time.Minute), Ord: 7, Label: 1}, // late duplicate
		{Kind: kindOutcome, Source: "s", RecordID: "dead", At: at2.Add(time.Minute), Ord: 8, Label: 0},
	}
	if l1, l2 := fold(a, j, next...), fold(ra, rj, next...); l1 != 1 || l2 != 1 {
		t.Fatalf("late duplicates %d (original) %d (restored), want 1 1", l1, l2)
	}
	if !reflect.DeepEqual(ra.st, a.st) {
		t.Fatalf("restored state diverged:\n%+v\nwant\n%+v", ra.st, a.st)
	}
	if a.st.Joined != 2 || a.st.Unscorable != 1 || len(a.st.ShadowJoins) != 1 {
		t.Fatalf("joined %d unscorable %d shadow joins %d, want 2 1 1", a.st.Joined, a.st.Unscorable, len(a.st.ShadowJoins))
	}
	if _, _, err := decodeCheckpoint("other", b); err == nil {
		t.Fatal("a checkpoint of another subject prefix was accepted")
	}
}

// TestWindowOrderIsDataOrder: the windows hold the latest samples by data
// time (Ord), whatever order the reads of the input streams interleaved in.
func TestWindowOrderIsDataOrder(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WindowSize = 3
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	orders := [][]int64{{1, 2, 3, 4, 5}, {5, 4, 3, 2, 1}, {3, 1, 5, 2, 4}}
	var want []joinSample
	for i, order := range orders {
		a := newAggregator(cfg)
		for _, o := range order {
			a.apply(event{Kind: kindJoin, At: at, Ord: o, Actual: int(o % 2), Predicted: 1})
		}
		if i == 0 {
			want = a.st.Joins
			if len(want) != 3 || want[0].O != 3 || want[2].O != 5 {
				t.Fatalf("window %+v, want samples 3, 4, 5", want)
			}
			continue
		}
		if !reflect.DeepEqual(a.st.Joins, want) {
			t.Errorf("order %v: window %+v, want %+v", order, a.st.Joins, want)
		}
	}
}

// TestCheckpointOfTheEarlierJoinLayout: a checkpoint written by the monitor
// before the records moved into one slab-backed map (main at 48d8faa,
// testdata/checkpoint-v2-pointer-maps.gob, the same format version) restores
// into exactly the state this build folds from the same inputs, and both go
// on alike: a restart across the upgrade counts each input once.
func TestCheckpointOfTheEarlierJoinLayout(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LabelDeadline = time.Hour
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at2 := at.Add(time.Hour)
	// The inputs the earlier build folded into the checkpoint.
	a, j := newAggregator(cfg), newJoiner(cfg)
	for _, ev := range []event{
		{Kind: kindPrediction, Source: "s", RecordID: "joined", At: at, Ord: 1, Label: 1, LatencyMS: 4, Version: "1"},
		{Kind: kindOutcome, Source: "s", RecordID: "joined", At: at, Ord: 2, Label: 1},
		{Kind: kindShadow, Source: "s", RecordID: "joined", At: at, Ord: 3, Label: 0, Version: "2"},
		{Kind: kindPrediction, Source: "s", RecordID: "open", At: at2, Ord: 3, Label: 0, Version: "1"},
		{Kind: kindShadow, Source: "s", RecordID: "open", At: at2, Ord: 4, Label: 1, Version: "2"},
		{Kind: kindDeadLetter, Source: "s", RecordID: "dead", At: at2, Ord: 5, Stage: schemas.StageScore},
		{Kind: kindOutcome, Source: "s", RecordID: "waiting", At: at2, Ord: 6, Label: 0},
		{Kind: kindPrediction, Source: "t", RecordID: "unscorable", At: at2, Ord: 7, Label: 1, Version: "1"},
		{Kind: kindDeadLetter, Source: "t", RecordID: "gone", At: at2, Ord: 8, Stage: schemas.StageDecode},
		{Kind: kindOutcome, Source: "t", RecordID: "gone", At: at2, Ord: 9, Label: 1},
	} {
		j.fold(a, ev)
	}
	b, err := os.ReadFile("testdata/checkpoint-v2-pointer-maps.gob")
	if err != nil {
		t.Fatal(err)
	}
	ra, rj := restoreCheckpoint(t, cfg, b)
	if open, done := rj.sizes(); !reflect.DeepEqual(rj.records(), j.records()) || open != 4 || done != 2 {
		t.Fatalf("restored %d open, %d resolved:\n%+v\nwant\n%+v", open, done, rj.records(), j.records())
	}
	next := []event{
		{Kind: kindOutcome, Source: "s", RecordID: "open", At: at2.Add(time.Minute), Ord: 10, Label: 1},
		{Kind: kindOutcome, Source: "s", RecordID: "joined", At: at2.Add(time.Minute), Ord: 11, Label: 1}, // late duplicate
		{Kind: kindShadow, Source: "s", RecordID: "joined", At: at2.Add(time.Minute), Ord: 12, Label: 1, Version: "3"},
		{Kind: kindOutcome, Source: "s", RecordID: "dead", At: at2.Add(time.Minute), Ord: 13, Label: 0},
		{Kind: kindPrediction, Source: "s", RecordID: "waiting", At: at2.Add(time.Minute), Ord: 14, Label: 0, Version: "1"},
		{Kind: kindDeadLetter, Source: "t", RecordID: "gone", At: at2.Add(time.Minute), Ord: 15}, // late duplicate
	}
	for _, ev := range next {
		if l1, l2 := j.fold(a, ev), rj.fold(ra, ev); l1 != l2 {
			t.Fatalf("%+v: folded %v here, %v after the restore", ev, l1, l2)
		}
	}
	if !reflect.DeepEqual(ra.st, a.st) || !reflect.DeepEqual(rj.records(), j.records()) {
		t.Fatalf("restored state diverged:\n%+v\nwant\n%+v", ra.st, a.st)
	}
	if a.st.Joined != 3 || a.st.Unscorable != 2 || len(a.st.ShadowJoins) != 3 {
		t.Fatalf("joined %d unscorable %d shadow joins %d, want 3 2 3", a.st.Joined, a.st.Unscorable, len(a.st.ShadowJoins))
	}
}
