package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"
)

const fullRecord = `{"schema_version":1,"id":"cleveland-0001","patient_ref":"p-998","observed_at":"2025-01-31T15:05:00.5+01:00",` +
	`"features":{"age":63,"sex":1,"cp":1,"trestbps":145,"chol":233,"fbs":1,"restecg":2,"thalach":150,"exang":0,"oldpeak":2.3,"slope":3,"ca":0,"thal":6}}`

func TestDecodeRecordValues(t *testing.T) {
	rec, err := DecodeRecord([]byte(fullRecord))
	if err != nil {
		t.Fatal(err)
	}
	want := Record{
		SchemaVersion: 1, ID: "cleveland-0001", PatientRef: "p-998",
		ObservedAt: time.Date(2025, 1, 31, 14, 5, 0, 500_000_000, time.UTC),
		Features:   Features{63, 1, 1, 145, 233, 1, 2, 150, 0, 2.3, 3, 0, 6},
	}
	if !rec.ObservedAt.Equal(want.ObservedAt) || rec.ObservedAt.Location() != time.UTC {
		t.Errorf("ObservedAt = %v, want %v in UTC", rec.ObservedAt, want.ObservedAt)
	}
	rec.ObservedAt = want.ObservedAt
	if rec != want {
		t.Errorf("got  %+v\nwant %+v", rec, want)
	}
}

func TestDecodeRecordMissingIsNaN(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		present map[int]float64
	}{
		{"empty features", `{"id":"a","features":{}}`, nil},
		{"nulls", `{"id":"a","features":{"age":null,"sex":null,"chol":null}}`, nil},
		{"zero codes are values", `{"id":"a","features":{"sex":0,"fbs":0,"restecg":0,"exang":0,"ca":0}}`,
			map[int]float64{Sex: 0, FBS: 0, RestECG: 0, Exang: 0, CA: 0}},
		{"negative zero is zero", `{"id":"a","features":{"sex":-0,"oldpeak":-0.0}}`, map[int]float64{Sex: 0, Oldpeak: 0}},
		{"escaped key", `{"id":"a","features":{"\u0063hol":200}}`, map[int]float64{Chol: 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := DecodeRecord([]byte(tt.payload))
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range rec.Features {
				want, ok := tt.present[i]
				switch {
				case !ok && !math.IsNaN(v):
					t.Errorf("%s = %v, want missing (NaN)", FeatureNames[i], v)
				case ok && (v != want || math.Signbit(v)):
					t.Errorf("%s = %v, want %v", FeatureNames[i], v, want)
				}
			}
		})
	}
}

func TestDecodeRecordErrors(t *testing.T) {
	tests := []struct {
		name       string
		payload    string
		wantStage  Stage
		wantFields []string // Problem.Field of every problem, in order
		wantID     string   // Record.ID returned with the error
		wantText   string   // a substring of one Problem
	}{
		{"value out of range", `{"id":"r1","features":{"chol":1200}}`, StageValidate,
			[]string{"features.chol"}, "r1", "must be between 50 and 700 mg/dl, got 1200"},
		{"chol zero hint", `{"id":"r1","features":{"chol":0}}`, StageValidate,
			[]string{"features.chol"}, "r1", "0 is not a valid cholesterol; send null when unknown"},
		{"number as string", `{"id":"r1","features":{"age":"63"}}`, StageDecode,
			[]string{"features.age"}, "r1", "must be a number (or null when unknown), got string"},
		{"non-integral code", `{"id":"r1","features":{"cp":1.5}}`, StageValidate,
			[]string{"features.cp"}, "r1", "got 1.5"},
		{"huge number", `{"id":"r1","features":{"age":1e400}}`, StageValidate,
			[]string{"features.age"}, "r1", "must be between 1 and 120 years, got 1e400"},
		{"typo suggests", `{"id":"r1","features":{"cholesterol":200}}`, StageDecode,
			[]string{"features.cholesterol"}, "r1", `unknown field; did you mean "chol"?`},
		{"unknown top-level lists allowed", `{"id":"r1","features":{},"xyzzy":1}`, StageDecode,
			[]string{"xyzzy"}, "r1", `allowed: "schema_version", "id"`},
		{"duplicate feature", `{"id":"r1","features":{"age":60,"age":61}}`, StageDecode,
			[]string{"features.age"}, "r1", "duplicate key"},
		{"duplicate id keeps first", `{"id":"r1","id":"r2","features":{}}`, StageDecode,
			[]string{"id"}, "r1", "duplicate key"},
		{"NaN literal, then more problems", `{"id":"r1","features":{"age":NaN,"sex":5}}`, StageDecode,
			[]string{"features.age", "features.sex"}, "r1", "NaN is not valid JSON; send null when the value is unknown"},
		{"collects every problem", `{"id":"bad id","schema_version":2,"features":{"age":0,"sex":2,"thal":5}}`, StageValidate,
			[]string{"id", "schema_version", "features.age", "features.sex", "features.thal"}, "", "got 2"},
		{"missing required", `{}`, StageDecode, []string{"id", "features"}, "", "is required"},
		{"id kept when features broken", `{"id":"r9","features":[1,2]}`, StageDecode,
			[]string{"features"}, "r9", "must be an object, got array"},
		{"syntax error stops", `{"id":"r1","features":{"age":63,}}`, StageDecode,
			[]string{""}, "r1", "invalid JSON at byte 32: unexpected '}'; expected a string key"},
		{"not an object", `[{"id":"r1"}]`, StageDecode, []string{""}, "", "payload must be a JSON object, got array"},
		{"a literal, not an object", `true`, StageDecode, []string{""}, "", "payload must be a JSON object, got boolean"},
		// Text whose first byte looks like a JSON value is a syntax error,
		// not a value of that type.
		{"text starting like true", `this is not JSON`, StageDecode, []string{""}, "", "invalid JSON at byte 0: unexpected 't'; expected a JSON object"},
		{"text starting like null", `nope`, StageDecode, []string{""}, "", "invalid JSON at byte 0: unexpected 'n'; expected a JSON object"},
		{"text starting like a number", `-x`, StageDecode, []string{""}, "", "invalid JSON at byte 1: unexpected 'x'; expected a digit"},
		{"unterminated string", `"abc`, StageDecode, []string{""}, "", "invalid JSON at byte 4: unterminated string"},
		{"a number, not an object", `63`, StageDecode, []string{""}, "", "payload must be a JSON object, got number"},
		// A number token runs to a delimiter: no range problem for the "0"
		// of "0x3F", only the syntax error.
		{"hex number", `{"id":"r1","features":{"age":0x3F}}`, StageDecode, []string{""}, "r1",
			"invalid JSON at byte 30: unexpected 'x'; expected ',', '}', ']' or whitespace after a number"},
		{"letters after a number", `{"id":"r1","features":{"chol":2mg}}`, StageDecode, []string{""}, "r1",
			"invalid JSON at byte 31: unexpected 'm'; expected ',', '}', ']' or whitespace after a number"},
		{"two decimal points", `{"id":"r1","features":{"oldpeak":1.5.3}}`, StageDecode, []string{""}, "r1", "unexpected '.'"},
		{"invalid utf-8", "{\"id\":\"r1\",\"patient_ref\":\"\xff\",\"features\":{}}", StageDecode,
			[]string{""}, "", "not valid UTF-8 (first invalid byte at 26)"},
		{"trailing data", `{"id":"r1","features":{}} x`, StageDecode, []string{""}, "r1", "unexpected data after the JSON object at byte 26"},
		{"deep nesting", `{"id":"r1","features":{},"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, StageDecode,
			[]string{"x", ""}, "r1", "nested deeper than 64 levels"},
		{"bad time", `{"id":"r1","observed_at":"2025-02-30T00:00:00Z","features":{}}`, StageValidate,
			[]string{"observed_at"}, "r1", `must be an RFC 3339 date-time such as 2025-01-31T14:05:00Z`},
		{"patient_ref too long", `{"id":"r1","patient_ref":"` + strings.Repeat("x", 129) + `","features":{}}`, StageValidate,
			[]string{"patient_ref"}, "r1", "must be at most 128 characters, got 129 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := DecodeRecord([]byte(tt.payload))
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want a *ValidationError matching ErrInvalid", err)
			}
			if ve.Stage != tt.wantStage {
				t.Errorf("Stage = %s, want %s (%v)", ve.Stage, tt.wantStage, ve.Problems)
			}
			var fields []string
			found := false
			for _, p := range ve.Problems {
				fields = append(fields, p.Field)
				found = found || strings.Contains(p.Problem, tt.wantText)
			}
			if strings.Join(fields, "|") != strings.Join(tt.wantFields, "|") {
				t.Errorf("fields = %q, want %q (%v)", fields, tt.wantFields, ve.Problems)
			}
			if !found {
				t.Errorf("no problem contains %q: %v", tt.wantText, ve.Problems)
			}
			if rec.ID != tt.wantID {
				t.Errorf("ID = %q, want %q", rec.ID, tt.wantID)
			}
			for i, v := range rec.Features {
				if !math.IsNaN(v) {
					t.Errorf("on error, feature %s = %v, want NaN", FeatureNames[i], v)
				}
			}
		})
	}
}

func TestDecodeRecordSizeLimit(t *testing.T) {
	ok := []byte(`{"id":"a","features":{}}` + strings.Repeat(" ", MaxRecordBytes-24))
	if len(ok) != MaxRecordBytes {
		t.Fatalf("setup: %d bytes", len(ok))
	}
	if _, err := DecodeRecord(ok); err != nil {
		t.Errorf("payload of exactly MaxRecordBytes: %v", err)
	}
	_, err := DecodeRecord(append(ok, ' '))
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Stage != StageDecode || len(ve.Problems) != 1 ||
		ve.Problems[0].Problem != "payload is 16385 bytes; the limit is 16384 bytes" {
		t.Errorf("over the limit: %#v", err)
	}
	if _, err := DecodeOutcome(append(ok, ' ')); !errors.Is(err, ErrInvalid) {
		t.Errorf("outcome over the limit: %v", err)
	}
}

func TestDecodeOutcome(t *testing.T) {
	o, err := DecodeOutcome([]byte(`{"schema_version":1,"record_id":"r-7","label":1,"observed_at":"2025-02-01T10:00:00+01:00"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Outcome{SchemaVersion: 1, RecordID: "r-7", Label: 1, ObservedAt: time.Date(2025, 2, 1, 9, 0, 0, 0, time.UTC)}
	if o != want {
		t.Errorf("got %+v, want %+v", o, want)
	}

	tests := []struct {
		name, payload string
		stage         Stage
		fields        string
		id            string
	}{
		{"label 2", `{"record_id":"r","label":2,"observed_at":"2025-02-01T09:00:00Z"}`, StageValidate, "label", "r"},
		{"label string", `{"record_id":"r","label":"1","observed_at":"2025-02-01T09:00:00Z"}`, StageDecode, "label", "r"},
		{"label fraction", `{"record_id":"r","label":0.5,"observed_at":"2025-02-01T09:00:00Z"}`, StageValidate, "label", "r"},
		{"all missing", `{}`, StageDecode, "record_id|label|observed_at", ""},
		{"duplicate label", `{"record_id":"r","label":0,"label":1,"observed_at":"2025-02-01T09:00:00Z"}`, StageDecode, "label", "r"},
		{"unknown", `{"record_id":"r","label":0,"observed_at":"2025-02-01T09:00:00Z","lable":1}`, StageDecode, "lable", "r"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := DecodeOutcome([]byte(tt.payload))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v", err)
			}
			var fields []string
			for _, p := range ve.Problems {
				fields = append(fields, p.Field)
			}
			if ve.Stage != tt.stage || strings.Join(fields, "|") != tt.fields || o.RecordID != tt.id {
				t.Errorf("stage %s fields %q id %q; want %s %q %q (%v)", ve.Stage, fields, o.RecordID, tt.stage, tt.fields, tt.id, ve.Problems)
			}
		})
	}
}

// The error text is what gets logged: it must name fields and rules but
// never carry the offending values.
func TestValidationErrorRedactsValues(t *testing.T) {
	_, err := DecodeRecord([]byte(`{"id":"Jane Doe 1962","patient_ref":"` + strings.Repeat("é", 130) + `","features":{"chol":1234.5,"age":"63","sex":7}}`))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatal(err)
	}
	msg := err.Error()
	for _, secret := range []string{"Jane", "1962", "1234.5", "63", "130"} {
		if strings.Contains(msg, secret) {
			t.Errorf("Error() contains %q: %s", secret, msg)
		}
	}
	if !strings.Contains(msg, "features.chol: must be between 50 and 700 mg/dl") {
		t.Errorf("Error() lacks the rule: %s", msg)
	}
	if d := ve.Detail(); !strings.Contains(d, "got 1234.5") || !strings.Contains(d, `got "Jane Doe 1962"`) {
		t.Errorf("Detail() lacks the values: %s", d)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("dead-lettered", "err", err)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	logged, _ := line["err"].(map[string]any)
	if logged["stage"] != "decode" || logged["fields"] != "id,patient_ref,features.chol,features.age,features.sex" {
		t.Errorf("logged %s", buf.String())
	}
	if strings.Contains(buf.String(), "1234.5") || strings.Contains(buf.String(), "Jane") {
		t.Errorf("log line carries values: %s", buf.String())
	}
}

func TestRecordRoundTrip(t *testing.T) {
	recs := []Record{
		{SchemaVersion: 1, ID: "a", Features: Missing()},
		{SchemaVersion: 1, ID: "b.c:d_e-f", PatientRef: `<ref> & "quote" é`, ObservedAt: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC),
			Features: Features{63.5, 1, 4, 145, 233, 0, 2, 150, 1, -2.3, 1, 3, 7}},
		{SchemaVersion: 1, ID: "tiny", Features: Features{1, 0, 1, 50, 50, 0, 0, 40, 0, 1e-7, 1, 0, 3}},
	}
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeRecord(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !sameRecord(got, r) {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", b, got, r)
		}
	}
}

func sameRecord(a, b Record) bool {
	if a.SchemaVersion != b.SchemaVersion || a.ID != b.ID || a.PatientRef != b.PatientRef || !a.ObservedAt.Equal(b.ObservedAt) {
		return false
	}
	for i := range a.Features {
		x, y := a.Features[i], b.Features[i]
		if x != y && !(math.IsNaN(x) && math.IsNaN(y)) {
			return false
		}
	}
	return true
}

// A valid record costs one allocation (id and patient_ref share it); one
// without a patient_ref as well. Counting allocations is deterministic, unlike
// timing, so it is asserted.
func TestDecodeAllocations(t *testing.T) {
	payload := []byte(fullRecord)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := DecodeRecord(payload); err != nil {
			t.Fatal(err)
		}
	}); n > 1 {
		t.Errorf("DecodeRecord: %v allocations per record, want <= 1", n)
	}
	outcome := []byte(`{"record_id":"r-7","label":1,"observed_at":"2025-02-01T10:00:00+01:00"}`)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := DecodeOutcome(outcome); err != nil {
			t.Fatal(err)
		}
	}); n > 1 {
		t.Errorf("DecodeOutcome: %v allocations, want <= 1", n)
	}
}

func TestParseRFC3339MatchesTimePackage(t *testing.T) {
	for _, s := range []string{
		"2025-01-31T14:05:00Z", "2025-01-31T14:05:00.123456789Z", "2025-01-31T14:05:00.1234567891234Z",
		"2024-02-29T00:00:00+14:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999+23:59",
		"2000-03-01T12:00:00.5+05:30", "1970-01-01T00:00:00Z",
	} {
		got, ok := parseRFC3339([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if !ok || err != nil || !got.Equal(want) {
			t.Errorf("%s: got %v %v, time.Parse %v %v", s, got, ok, want, err)
		}
	}
	for _, s := range []string{
		"2025-01-31T14:05:00", "2025-01-31T14:05:60Z", "2025-00-10T00:00:00Z", "2025-01-32T00:00:00Z",
		"2025-01-31T14:05:00+24:00", "2025-01-31T14:05:00+01:60", "2025-01-31T14:05:00+01", "2025-1-31T14:05:00Z",
		"2025-01-31T14:05:00.Z", "2025-01-31T14:05:00ZZ", "+025-01-31T14:05:00Z", "2025-01-31X14:05:00Z",
	} {
		if _, ok := parseRFC3339([]byte(s)); ok {
			t.Errorf("%s: accepted", s)
		}
	}
}

func TestSuggest(t *testing.T) {
	for key, want := range map[string]string{
		"cholesterol": "chol", "Age": "age", "thalac": "thalach", "oldpeek": "oldpeak", "restecgs": "restecg",
		"zzzzzz": "", "x": "", strings.Repeat("a", 100): "",
	} {
		if got := closestKey(key, FeatureNames[:]); got != want {
			t.Errorf("closestKey(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestFeatureSpecsTable(t *testing.T) {
	for i, s := range FeatureSpecs {
		if s.Index != i || s.Name != FeatureNames[i] || featureIndex([]byte(s.Name)) != i {
			t.Errorf("FeatureSpecs[%d] = %s/%d, out of step with FeatureNames", i, s.Name, s.Index)
		}
		if s.Min > s.Max {
			t.Errorf("%s: Min > Max", s.Name)
		}
		if s.Kind == Categorical {
			if len(s.Codes) == 0 || float64(s.Codes[0].Value) != s.Min || float64(s.Codes[len(s.Codes)-1].Value) != s.Max {
				t.Errorf("%s: codes %v do not span Min..Max", s.Name, s.Codes)
			}
		}
		if !s.Accepts(math.NaN()) || s.Accepts(math.Inf(1)) || s.Accepts(s.Max+1) || s.Accepts(s.Min-1) {
			t.Errorf("%s: Accepts is wrong at the edges", s.Name)
		}
	}
}
