package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"unicode/utf8"
)

// hostileSeeds are generated rather than stored: some are large.
func hostileSeeds() [][]byte {
	mb := 1 << 20
	return [][]byte{
		nil,
		[]byte("\xff\xfe{}"),
		[]byte(`{"id":"a","features":{"age":63}}` + "\x00"),
		[]byte(strings.Repeat("[", 10_000)),
		[]byte(`{"id":"a","features":{},"x":` + strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000) + "}"),
		[]byte(`{"id":"a","features":{},"x":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + "}"),
		[]byte(`{"id":"a","id":"a","features":{"age":1,"age":1},"features":{}}`),
		[]byte(`{"id":"a","features":{"age":"63","sex":"1","chol":"0"}}`),
		[]byte(`{"id":"a","features":{"age":NaN,"chol":Infinity,"oldpeak":-Infinity,"ca":Nan}}`),
		[]byte(`{"id":"a","features":{"age":1e400,"chol":-1e400,"oldpeak":1e-400,"thal":` + strings.Repeat("9", 400) + `}}`),
		[]byte(`{"id":"a","features":{"oldpeak":-5.` + strings.Repeat("0", 300) + `1}}`),
		[]byte(`{"id":"a","features":{"age":120.` + strings.Repeat("0", 300) + `}}`),
		[]byte(`{"id":"a","features":{}}` + strings.Repeat(" ", mb)),
		[]byte(`{"id":"` + strings.Repeat("a", mb) + `","features":{}}`),
		bytes.Repeat([]byte("["), mb),
		[]byte(`{"id":"a\ud800","patient_ref":"\udc00\ud83d\ude00\u0000","features":{}}`),
		[]byte(`{"\u0069\u0064":"x","features":{"\u0061ge":40}}`),
		[]byte(`{"id":"a","observed_at":"2024-02-29T23:59:59.999999999999+23:59","features":{}}`),
	}
}

func addSeeds(f *testing.F, kind string) {
	for _, ex := range loadExamples(f) {
		if ex.kind == kind {
			f.Add(ex.payload)
		}
	}
	for _, s := range hostileSeeds() {
		f.Add(s)
	}
}

// checkRejection checks the shape of any decode error.
func checkRejection(t *testing.T, err error) {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	if len(ve.Problems) == 0 || (ve.Stage != StageDecode && ve.Stage != StageValidate) {
		t.Fatalf("malformed error %#v", ve)
	}
	for _, p := range ve.Problems {
		if p.Problem == "" || !utf8.ValidString(p.Problem) || !utf8.ValidString(p.Field) {
			t.Fatalf("malformed problem %#v", p)
		}
	}
	_ = ve.Error()
}

func FuzzDecodeRecord(f *testing.F) {
	addSeeds(f, KindRecord)
	schemas := compileSchemas(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := DecodeRecord(data)
		if err != nil {
			checkRejection(t, err)
			if rec.ID != "" && !ValidID(rec.ID) {
				t.Fatalf("invalid id %q returned with an error", rec.ID)
			}
			for i, v := range rec.Features {
				if !math.IsNaN(v) {
					t.Fatalf("feature %d = %v returned with an error", i, v)
				}
			}
			return
		}
		// Accepted: strict JSON, within every rule.
		if len(data) > MaxRecordBytes || !utf8.Valid(data) || !json.Valid(data) {
			t.Fatalf("accepted a payload that is oversized, not UTF-8 or not JSON: %q", data)
		}
		if rec.SchemaVersion != Version || !ValidID(rec.ID) || utf8.RuneCountInString(rec.PatientRef) > MaxPatientRefLength {
			t.Fatalf("accepted bad header fields: %+v", rec)
		}
		for i, v := range rec.Features {
			if !FeatureSpecs[i].Accepts(v) {
				t.Fatalf("accepted %s = %v", FeatureNames[i], v)
			}
		}
		// encoding/json reads the same values.
		var raw struct {
			Features map[string]*float64 `json:"features"`
		}
		if err := json.Unmarshal(data, &raw); err != nil {
			t.Fatalf("encoding/json cannot read an accepted record: %v", err)
		}
		for i, n := range FeatureNames {
			p := raw.Features[n]
			if (p == nil) != math.IsNaN(rec.Features[i]) || (p != nil && *p != rec.Features[i]) {
				t.Fatalf("%s: decoded %v, encoding/json reads %v", n, rec.Features[i], p)
			}
		}
		// The published schema accepts whatever Go accepts.
		if err := schemaCheck(schemas[KindRecord], data); err != nil {
			t.Fatalf("JSON Schema rejects an accepted record: %v", err)
		}
		// decode(marshal(rec)) == rec
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeRecord(b)
		if err != nil || !sameRecord(again, rec) {
			t.Fatalf("round trip: %s -> %+v, %v", b, again, err)
		}
	})
}

func FuzzDecodeOutcome(f *testing.F) {
	addSeeds(f, KindOutcome)
	schemas := compileSchemas(f)
	var reused SummaryDecoder
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := DecodeOutcome(data)
		// A decoder reused after other payloads reads each one the same.
		_, _ = reused.Prediction(data)
		if v, rerr := reused.Outcome(data); fmt.Sprint(err) != fmt.Sprint(rerr) || string(v.RecordID) != o.RecordID ||
			err == nil && (v.Label != o.Label || !v.ObservedAt.Equal(o.ObservedAt)) {
			t.Fatalf("%q: reused decoder %+v, %v; DecodeOutcome %+v, %v", data, v, rerr, o, err)
		}
		if err != nil {
			checkRejection(t, err)
			if o.RecordID != "" && !ValidID(o.RecordID) {
				t.Fatalf("invalid record_id %q returned with an error", o.RecordID)
			}
			return
		}
		if len(data) > MaxRecordBytes || !utf8.Valid(data) || !json.Valid(data) {
			t.Fatalf("accepted a payload that is oversized, not UTF-8 or not JSON: %q", data)
		}
		if o.SchemaVersion != Version || !ValidID(o.RecordID) || (o.Label != 0 && o.Label != 1) || o.ObservedAt.IsZero() && !bytes.Contains(data, []byte("0001-01-01")) {
			t.Fatalf("accepted bad outcome %+v", o)
		}
		if err := schemaCheck(schemas[KindOutcome], data); err != nil {
			t.Fatalf("JSON Schema rejects an accepted outcome: %v", err)
		}
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeOutcome(b)
		if err != nil || again != o {
			t.Fatalf("round trip: %s -> %+v, %v", b, again, err)
		}
	})
}
