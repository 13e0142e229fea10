package schemas

import (
	"math"
	"time"
)

// Version is the schema version every message carries in "schema_version".
// Records and outcomes may omit it (it then defaults to Version); any other
// value is rejected.
const Version = 1

// NumFeatures is the number of model features in a record.
const NumFeatures = 13

// FeatureNames are the 13 UCI features, in the model's column order.
var FeatureNames = [NumFeatures]string{
	"age", "sex", "cp", "trestbps", "chol", "fbs", "restecg",
	"thalach", "exang", "oldpeak", "slope", "ca", "thal",
}

// Feature indexes into Features, in FeatureNames order.
const (
	Age = iota
	Sex
	CP
	Trestbps
	Chol
	FBS
	RestECG
	Thalach
	Exang
	Oldpeak
	Slope
	CA
	Thal
)

// Features holds the 13 feature values in FeatureNames order. A missing value
// is NaN: never 0, which is a valid code for several features.
type Features [NumFeatures]float64

// Missing returns a Features with every value missing.
func Missing() Features {
	var f Features
	for i := range f {
		f[i] = math.NaN()
	}
	return f
}

// MarshalJSON writes an object keyed by feature name; missing values are null.
func (f Features) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 200)
	b = append(b, '{')
	for i, name := range FeatureNames {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
		b = appendFloatOrNull(b, f[i])
	}
	return append(b, '}'), nil
}

// Record is one patient record as published by a clinic on
// <prefix>.records.<source>.
type Record struct {
	SchemaVersion int    `json:"schema_version"`
	ID            string `json:"id"`
	PatientRef    string `json:"patient_ref,omitempty"`
	// ObservedAt is when the values were measured; zero when not given.
	// DecodeRecord returns it in UTC. (A value, not a pointer: decoding a
	// record must not allocate for it.)
	ObservedAt time.Time `json:"observed_at,omitzero"`
	Features   Features  `json:"features"`
}

// Outcome is the labelled result for a record, published later on
// <prefix>.outcomes.<source>.
type Outcome struct {
	SchemaVersion int       `json:"schema_version"`
	RecordID      string    `json:"record_id"`
	Label         int       `json:"label"`
	ObservedAt    time.Time `json:"observed_at"`
}

// ModelRef names the model that produced a prediction.
type ModelRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
}

// ScorerHeader is the NATS header naming the scorer process that published
// a prediction, shadow prediction or dead letter (e.g.
// "cardiostream-scorer@host pid 42"): which of several scorers sharing the
// consumer made an output. It is not part of the JSON message.
const ScorerHeader = "Cardiostream-Scorer"

// Prediction is published on <prefix>.predictions.<source> for every valid record.
type Prediction struct {
	SchemaVersion int       `json:"schema_version"`
	RecordID      string    `json:"record_id"`
	Source        string    `json:"source"`
	PatientRef    string    `json:"patient_ref,omitempty"`
	Probability   float64   `json:"probability"`
	Label         int       `json:"label"`
	Threshold     float64   `json:"threshold"`
	Model         ModelRef  `json:"model"`
	ReceivedAt    time.Time `json:"received_at"` // when the record was stored in RECORDS
	ScoredAt      time.Time `json:"scored_at"`
	// LatencyMS is ScoredAt - ReceivedAt in milliseconds: the time from the
	// record's arrival to its prediction.
	LatencyMS float64 `json:"latency_ms"`
	// Deliveries is the delivery attempt of the record that produced this prediction.
	Deliveries uint64 `json:"deliveries,omitempty"`
}

// Stage says where a dead-lettered record failed.
type Stage string

const (
	StageDecode   Stage = "decode"   // not a JSON object of the record shape
	StageValidate Stage = "validate" // well-formed but a field is invalid
	StageScore    Stage = "score"    // valid, but scoring kept failing
)

// Problem is one field-level reason a message was rejected.
type Problem struct {
	// Field is a JSON path such as "features.chol", "id" or "" for the whole payload.
	Field   string `json:"field"`
	Problem string `json:"problem"`
}

// DeadLetter is published on <prefix>.deadletter.<source> for every record that
// cannot be scored, with the reasons and the original payload.
type DeadLetter struct {
	SchemaVersion int       `json:"schema_version"`
	Subject       string    `json:"subject"`
	Source        string    `json:"source"`
	RecordID      string    `json:"record_id,omitempty"` // when it could be read from the payload
	Stage         Stage     `json:"stage"`
	Reasons       []Problem `json:"reasons"`
	// Payload is the original payload (base64 in JSON), cut to MaxDeadLetterPayload
	// bytes; PayloadTruncated says whether it was cut, PayloadSize and
	// PayloadSHA256 describe the original.
	Payload          []byte    `json:"payload"`
	PayloadSize      int       `json:"payload_size"`
	PayloadSHA256    string    `json:"payload_sha256"`
	PayloadTruncated bool      `json:"payload_truncated"`
	StreamSequence   uint64    `json:"stream_sequence"` // the record's sequence in RECORDS
	Deliveries       uint64    `json:"deliveries"`
	ReceivedAt       time.Time `json:"received_at"`
	DeadLetteredAt   time.Time `json:"dead_lettered_at"`
}

// MaxDeadLetterPayload bounds the copy of the original payload kept in a
// dead letter; the whole payload stays in RECORDS at StreamSequence.
const MaxDeadLetterPayload = 64 << 10

// AlertStatus is the state an alert transition moves into.
type AlertStatus string

const (
	AlertFiring   AlertStatus = "firing"
	AlertResolved AlertStatus = "resolved"
)

// Alert is one alert transition, published on <prefix>.alerts.<rule> and
// POSTed to the webhook.
type Alert struct {
	SchemaVersion int         `json:"schema_version"`
	ID            string      `json:"id"` // stable delivery id: the same transition always has the same id
	Rule          string      `json:"rule"`
	Status        AlertStatus `json:"status"`
	Severity      string      `json:"severity,omitempty"`
	Metric        string      `json:"metric"`
	Comparator    string      `json:"comparator"` // "<" or ">"
	Threshold     float64     `json:"threshold"`
	Value         float64     `json:"value"`
	Samples       int64       `json:"samples"`
	Summary       string      `json:"summary"`
	StartsAt      time.Time   `json:"starts_at"`
	EndsAt        *time.Time  `json:"ends_at,omitempty"`
	At            time.Time   `json:"at"`
}

func appendFloatOrNull(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	return appendFloat(b, v)
}
