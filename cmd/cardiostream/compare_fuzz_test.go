package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// FuzzDecodeComparedPrediction: whatever a PREDICTIONS message holds, `model
// compare` either skips it or counts a prediction a scorer could have
// written: a valid source and record id, a non-empty version, a label of 0
// or 1 and a probability in [0, 1]. Seeds: predictions as the scorer
// encodes them (Prediction.AppendJSON), a shadow one, and hostile edits.
func FuzzDecodeComparedPrediction(f *testing.F) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, p := range []schemas.Prediction{
		{RecordID: "r-1", Source: "clinic", PatientRef: "p-9", Probability: 0.73, Label: 1, Threshold: 0.5,
			Model: schemas.ModelRef{Name: "heart-xgb", Version: "1.0.0"}, ReceivedAt: at, ScoredAt: at.Add(time.Millisecond), LatencyMS: 1, Deliveries: 2},
		{RecordID: "r-2", Source: "clinic", Probability: 0, Label: 0, Model: schemas.ModelRef{Version: "1.1.0"}, ReceivedAt: at, ScoredAt: at},
	} {
		b, err := p.AppendJSON(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		s := string(b)
		for _, edit := range [][2]string{
			{`"label":1`, `"label":7`}, {`"label":1`, `"label":"1"`}, {`"label":1`, `"label":1,"label":0`},
			{`"probability":0.73`, `"probability":1e300`}, {`"probability":0.73`, `"probability":-0.1`},
			{`"probability":0.73`, `"probability":NaN`}, {`"probability":0.73`, `"probability":"0.73"`},
			{`"record_id":"r-1"`, `"record_id":""`}, {`"record_id":"r-1"`, `"record_id":"r 1\u0000"`},
			{`"record_id":"r-1"`, `"record_id":"` + strings.Repeat("r", 70000) + `"`},
			{`"source":"clinic"`, `"source":"shadow"`}, {`"source":"clinic"`, `"source":"a.b"`}, {`"source":"clinic"`, `"source":"\xff"`},
			{`"version":"1.0.0"`, `"version":""`}, {`"model":{`, `"model":[{`},
			{`"scored_at":"`, `"scored_at":"x`},
		} {
			f.Add([]byte(strings.Replace(s, edit[0], edit[1], 1)))
		}
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		version, k, s, ok := decodeComparedPrediction(data)
		if !ok {
			if version != "" || k != (recKey{}) || s != (scored{}) {
				t.Fatalf("skipped, yet returned %q %+v %+v", version, k, s)
			}
			return
		}
		if version == "" || !schemas.ValidID(k.id) || !schemas.ValidSource(k.source) {
			t.Fatalf("counted version %q source %q id %q", version, k.source, k.id)
		}
		if (s.label != 0 && s.label != 1) || math.IsNaN(s.prob) || s.prob < 0 || s.prob > 1 {
			t.Fatalf("counted label %d probability %v", s.label, s.prob)
		}
	})
}
