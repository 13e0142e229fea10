package schemas

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Run with: go test ./schemas -run '^$' -bench . -benchmem

const benchRecord = `{"schema_version":1,"id":"cleveland-000123","patient_ref":"p-998","observed_at":"2025-01-31T14:05:00Z",` +
	`"features":{"age":63,"sex":1,"cp":1,"trestbps":145,"chol":233,"fbs":1,"restecg":2,"thalach":150,"exang":0,"oldpeak":2.3,"slope":3,"ca":0,"thal":6}}`

func BenchmarkDecodeRecord(b *testing.B) {
	payload := []byte(benchRecord)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := DecodeRecord(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRecordInvalid(b *testing.B) {
	payload := []byte(strings.Replace(benchRecord, `"chol":233`, `"chol":1200`, 1))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRecord(payload); err == nil {
			b.Fatal("accepted")
		}
	}
}

// BenchmarkDecodeRecordEncodingJSON is the baseline: encoding/json into a
// struct, with no validation at all.
func BenchmarkDecodeRecordEncodingJSON(b *testing.B) {
	payload := []byte(benchRecord)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		var raw struct {
			SchemaVersion int                 `json:"schema_version"`
			ID            string              `json:"id"`
			PatientRef    string              `json:"patient_ref"`
			ObservedAt    time.Time           `json:"observed_at"`
			Features      map[string]*float64 `json:"features"`
		}
		if err := json.Unmarshal(payload, &raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeOutcome(b *testing.B) {
	payload := []byte(`{"schema_version":1,"record_id":"cleveland-000123","label":1,"observed_at":"2025-02-01T09:00:00Z"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeOutcome(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func benchPrediction() Prediction {
	now := time.Now()
	return Prediction{SchemaVersion: 1, RecordID: "cleveland-000123", Source: "cleveland", PatientRef: "p-998",
		Probability: 0.8731234, Label: 1, Threshold: 0.5,
		Model:      ModelRef{Name: "xgb-heart", Version: "2025.03.1", SHA256: strings.Repeat("0f", 32)},
		ReceivedAt: now, ScoredAt: now.Add(1234 * time.Microsecond), LatencyMS: 1.234, Deliveries: 1}
}

func BenchmarkPredictionAppendJSON(b *testing.B) {
	p := benchPrediction()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = p.AppendJSON(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkPredictionEncodingJSON(b *testing.B) {
	p := plainPrediction(benchPrediction())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSummaryDecoderPrediction is the monitor's decode of one
// prediction (as the scorer writes it), with a reused decoder.
func BenchmarkSummaryDecoderPrediction(b *testing.B) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	payload, err := json.Marshal(Prediction{SchemaVersion: Version, RecordID: "cleveland-000123", Source: "clinic-a", Probability: 0.734, Label: 1,
		Threshold: 0.5, Model: ModelRef{Name: "heart-xgb", Version: "1.0.0", SHA256: strings.Repeat("ab", 32)}, ReceivedAt: at, ScoredAt: at, LatencyMS: 1.25, Deliveries: 1})
	if err != nil {
		b.Fatal(err)
	}
	var sd SummaryDecoder
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := sd.Prediction(payload); err != nil {
			b.Fatal(err)
		}
	}
}
