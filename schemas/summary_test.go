package schemas

import (
	"encoding/json"
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
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodePredictionSummary(data)
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
