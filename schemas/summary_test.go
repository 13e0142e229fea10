package schemas

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestDecodePredictionSummary(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	full, _ := json.Marshal(Prediction{SchemaVersion: Version, RecordID: "r-1", Source: "s", Probability: 0.7, Label: 1, Threshold: 0.5,
		Model: ModelRef{Name: "heart-xgb", Version: "1.1.0", SHA256: "ab"}, ReceivedAt: at, ScoredAt: at, LatencyMS: 2.5, Deliveries: 1})
	tests := []struct {
		name    string
		in      string
		want    PredictionSummary
		wantErr []string // fields with a problem
	}{
		{name: "scorer output", in: string(full), want: PredictionSummary{RecordID: "r-1", Label: 1, LatencyMS: 2.5, ModelVersion: "1.1.0"}},
		{name: "minimal", in: `{"record_id":"a","label":0}`, want: PredictionSummary{RecordID: "a"}},
		// Regression: the version was unescaped into the record id's buffer,
		// so an escaped version overwrote an escaped record id ("v.2").
		{name: "escaped id and version", in: `{"record_id":"r\u002d1","label":1,"model":{"version":"v\u002e2"}}`,
			want: PredictionSummary{RecordID: "r-1", Label: 1, ModelVersion: "v.2"}},
		{name: "escaped key and nested unknowns", in: `{"record\u005fid":"a","x":{"y":[1,{"z":null}]},"label":1,"model":{"v":[],"version":"2"}}`,
			want: PredictionSummary{RecordID: "a", Label: 1, ModelVersion: "2"}},
		{name: "missing", in: `{"latency_ms":1}`, wantErr: []string{"record_id", "label"}},
		{name: "bad values", in: `{"record_id":"a b","label":2,"latency_ms":-1,"model":{"version":7}}`,
			wantErr: []string{"record_id", "label", "latency_ms", "model.version"}},
		{name: "non-finite", in: `{"record_id":"a","label":1,"latency_ms":NaN}`, wantErr: []string{"latency_ms"}},
		{name: "duplicate", in: `{"record_id":"a","label":1,"label":0}`, wantErr: []string{"label"}},
		{name: "model not an object", in: `{"record_id":"a","label":1,"model":"x"}`, wantErr: []string{"model"}},
		{name: "long version", in: `{"record_id":"a","label":1,"model":{"version":"` + strings.Repeat("v", 200) + `"}}`, wantErr: []string{"model.version"}},
		{name: "syntax", in: `{"record_id":"a","label":1,`, wantErr: []string{""}},
		{name: "not an object", in: `[1]`, wantErr: []string{""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodePredictionSummary([]byte(tc.in))
			if len(tc.wantErr) == 0 {
				if err != nil || got != tc.want {
					t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			ve, ok := err.(*ValidationError)
			if !ok {
				t.Fatalf("error %v (%T), want a *ValidationError", err, err)
			}
			fields := map[string]bool{}
			for _, p := range ve.Problems {
				fields[p.Field] = true
			}
			for _, f := range tc.wantErr {
				if !fields[f] {
					t.Errorf("no problem for field %q in %v", f, ve.Problems)
				}
			}
		})
	}
}

// FuzzDecodePredictionSummary: never panics, and whatever it accepts
// encoding/json reads the same way into a Prediction.
func FuzzDecodePredictionSummary(f *testing.F) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	full, _ := json.Marshal(Prediction{SchemaVersion: Version, RecordID: "r-1", Source: "s", Label: 1, Model: ModelRef{Version: "1"}, ReceivedAt: at, LatencyMS: 2.5})
	f.Add(full)
	f.Add([]byte(`{"record_id":"a","label":0,"model":{"version":"\u0032"}}`))
	f.Add([]byte(`{"record_id":"a","label":1.0,"latency_ms":1e3}`))
	var reused SummaryDecoder
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodePredictionSummary(data)
		// A decoder reused after other payloads reads each one the same.
		_, _ = reused.Outcome(data)
		v, rerr := reused.Prediction(data)
		if fmt.Sprint(err) != fmt.Sprint(rerr) || err == nil && (string(v.RecordID) != got.RecordID || v.Label != got.Label ||
			v.LatencyMS != got.LatencyMS && !(math.IsNaN(v.LatencyMS) && math.IsNaN(got.LatencyMS)) || string(v.ModelVersion) != got.ModelVersion) {
			t.Fatalf("%q: reused decoder %+v, %v; DecodePredictionSummary %+v, %v", data, v, rerr, got, err)
		}
		if err != nil {
			return
		}
		var p struct {
			RecordID  string   `json:"record_id"`
			Label     float64  `json:"label"`
			LatencyMS float64  `json:"latency_ms"`
			Model     ModelRef `json:"model"`
		}
		if jerr := json.Unmarshal(data, &p); jerr != nil {
			// encoding/json takes the last of duplicate keys and is
			// case-insensitive; it must at least not find a syntax error.
			if _, syntax := jerr.(*json.SyntaxError); syntax {
				t.Fatalf("accepted %q, which encoding/json calls invalid: %v", data, jerr)
			}
			return
		}
		if !ValidID(got.RecordID) || got.Label != 0 && got.Label != 1 {
			t.Fatalf("accepted %+v", got)
		}
		if !strings.Contains(strings.ToLower(string(data)), `"record_id"`) {
			return // an escaped or differently cased key: encoding/json matches keys case-insensitively
		}
		if p.RecordID == got.RecordID && float64(got.Label) == p.Label && p.LatencyMS == got.LatencyMS && p.Model.Version == got.ModelVersion {
			return
		}
		if strings.Count(strings.ToLower(string(data)), `"record_id"`) == 1 && strings.Count(strings.ToLower(string(data)), `"label"`) == 1 &&
			strings.Count(strings.ToLower(string(data)), `"latency_ms"`) <= 1 && strings.Count(strings.ToLower(string(data)), `"model"`) <= 1 &&
			strings.Count(strings.ToLower(string(data)), `"version"`) <= 1 && !strings.Contains(string(data), `\`) {
			t.Fatalf("%q: got %+v, encoding/json reads %+v", data, got, p)
		}
	})
}

// TestSummaryDecoderAllocations: the monitor's decoders allocate nothing for
// a valid payload, whatever it had escaped.
func TestSummaryDecoderAllocations(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pred, _ := json.Marshal(Prediction{SchemaVersion: Version, RecordID: "r-1", Source: "s", Probability: 0.7, Label: 1, Threshold: 0.5,
		Model: ModelRef{Name: "heart-xgb", Version: "1.1.0"}, ReceivedAt: at, ScoredAt: at, LatencyMS: 2.5, Deliveries: 1})
	escaped := []byte(`{"record_id":"r\u002d1","label":1,"model":{"version":"v\u002e2"}}`)
	out := []byte(`{"schema_version":1,"record_id":"r\u002d1","label":0,"observed_at":"2026-01-01T00:00:00Z"}`)
	var sd SummaryDecoder
	for name, decode := range map[string]func() error{
		"prediction":         func() error { _, err := sd.Prediction(pred); return err },
		"escaped prediction": func() error { _, err := sd.Prediction(escaped); return err },
		"outcome":            func() error { _, err := sd.Outcome(out); return err },
	} {
		if n := testing.AllocsPerRun(100, func() {
			if err := decode(); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations, want 0", name, n)
		}
	}
	o, err := sd.Outcome(out)
	if err != nil || string(o.RecordID) != "r-1" || o.Label != 0 || !o.ObservedAt.Equal(at) {
		t.Fatalf("outcome %+v, %v", o, err)
	}
}
