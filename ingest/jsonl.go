package ingest

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// jsonLine is a record as on the wire, plus the optional label fields.
type jsonLine struct {
	SchemaVersion *int                `json:"schema_version"`
	ID            string              `json:"id"`
	PatientRef    string              `json:"patient_ref"`
	ObservedAt    *time.Time          `json:"observed_at"`
	Features      map[string]*float64 `json:"features"`
	Label         *float64            `json:"label"`
	Num           *float64            `json:"num"`
}

// parseJSONLine parses one JSON Lines record. The record is re-marshalled
// from the parsed fields when published (never forwarded as-is), so that
// ids can be assigned and rewritten per repetition and what is published
// always has the wire shape; other top-level fields are therefore dropped.
//
// Strict where re-marshalling would silently change meaning: a feature name
// that is not one of the 13 (e.g. "Chol"), a non-numeric feature value, a
// schema_version other than 1, or a missing "features" object is a parse
// error. null features are missing. "label" must be 0 or 1; "num" follows
// the UCI rule (num > 0 → 1); if both are given they must agree.
func parseJSONLine(line []byte) (Row, error) {
	var row Row
	var in jsonLine
	if err := json.Unmarshal(line, &in); err != nil {
		return row, fmt.Errorf("%w: %v", ErrBadJSON, err)
	}
	if in.SchemaVersion != nil && *in.SchemaVersion != schemas.Version {
		return row, fmt.Errorf("%w: schema_version %d, want %d", ErrBadJSON, *in.SchemaVersion, schemas.Version)
	}
	if in.Features == nil {
		return row, fmt.Errorf("%w: no \"features\" object", ErrBadJSON)
	}
	var unknown []string
	for name := range in.Features {
		if !isFeatureName(name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return row, fmt.Errorf("%w: features.%s (want one of %s)", ErrUnknownFeature, strings.Join(unknown, ", features."), strings.Join(schemas.FeatureNames[:], ", "))
	}
	for i, name := range schemas.FeatureNames {
		row.Features[i] = math.NaN()
		if v := in.Features[name]; v != nil {
			row.Features[i] = *v
		}
	}
	if in.ID != "" {
		if err := checkID(in.ID); err != nil {
			return row, fmt.Errorf("id: %w", err)
		}
	}
	if in.PatientRef != "" {
		if err := checkID(in.PatientRef); err != nil {
			return row, fmt.Errorf("patient_ref: %w", err)
		}
	}
	row.ID, row.PatientRef = in.ID, in.PatientRef
	if in.ObservedAt != nil {
		row.ObservedAt = in.ObservedAt.UTC()
	}
	if in.Label != nil {
		if *in.Label != 0 && *in.Label != 1 {
			return row, fmt.Errorf("label: %w: must be 0 or 1", ErrBadLabel)
		}
		l := int(*in.Label)
		row.Label = &l
	}
	if in.Num != nil {
		l, err := labelOf(*in.Num)
		if err != nil {
			return row, fmt.Errorf("num: %w", err)
		}
		if row.Label != nil && *row.Label != *l {
			return row, fmt.Errorf("%w: label %d disagrees with num", ErrBadLabel, *row.Label)
		}
		row.Label = l
	}
	return row, nil
}
