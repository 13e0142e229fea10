package schemas

import (
	"encoding/json"
)

// MaxRecordBytes is the largest record payload accepted; larger ones are
// dead-lettered without being parsed.
const MaxRecordBytes = 16 << 10

// DecodeRecord parses and validates a record payload. On failure it returns a
// *ValidationError naming every problem; the returned Record still carries the
// id when it could be read, so a dead letter can name it.
//
// PLACEHOLDER: replaced by the full decoder.
func DecodeRecord(data []byte) (Record, error) {
	var raw struct {
		ID       string              `json:"id"`
		Features map[string]*float64 `json:"features"`
	}
	rec := Record{SchemaVersion: Version, Features: Missing()}
	if err := json.Unmarshal(data, &raw); err != nil {
		return rec, &ValidationError{Stage: StageDecode, Problems: []Problem{{Problem: err.Error()}}}
	}
	rec.ID = raw.ID
	for i, n := range FeatureNames {
		if v := raw.Features[n]; v != nil {
			rec.Features[i] = *v
		}
	}
	return rec, nil
}

// DecodeOutcome parses and validates an outcome payload.
//
// PLACEHOLDER: replaced by the full decoder.
func DecodeOutcome(data []byte) (Outcome, error) {
	var o Outcome
	if err := json.Unmarshal(data, &o); err != nil {
		return o, &ValidationError{Stage: StageDecode, Problems: []Problem{{Problem: err.Error()}}}
	}
	return o, nil
}
