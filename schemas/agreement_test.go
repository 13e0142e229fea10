package schemas

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// goOnlyChecks are the rules the Go decoders enforce that JSON Schema cannot
// express. Examples under testdata/examples/goonly/ exercise them: Go must
// reject those, and the schema verdict is not compared. Keep this list in step
// with README.md.
var goOnlyChecks = []string{
	"payload size limit (MaxRecordBytes)",
	"valid UTF-8 (a JSON Schema validator sees text already decoded, usually with U+FFFD)",
	"duplicate keys (JSON parsers keep one of them)",
	"leap seconds (:60) in date-times (RFC 3339 allows them; time.Time cannot hold them)",
	"strict two-digit fields in date-times (the validator's parser accepts a sign: T+1:00:00)",
	"date-times whose UTC instant is outside years 0000-9999 (0000-01-01T00:00:00+01:00)",
}

// compileSchemas compiles every embedded schema with format and content
// assertions on, as a strict consumer would.
func compileSchemas(tb testing.TB) map[string]*jsonschema.Schema {
	tb.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.AssertContent()
	for _, kind := range MessageKinds {
		f, err := JSONSchemaFS.Open(SchemaFile(kind))
		if err != nil {
			tb.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			tb.Fatalf("%s: %v", kind, err)
		}
		if err := c.AddResource(SchemaID(kind), doc); err != nil {
			tb.Fatalf("%s: %v", kind, err)
		}
	}
	out := map[string]*jsonschema.Schema{}
	for _, kind := range MessageKinds {
		s, err := c.Compile(SchemaID(kind))
		if err != nil {
			tb.Fatalf("compiling %s: %v", kind, err)
		}
		out[kind] = s
	}
	return out
}

// schemaCheck validates payload against a compiled schema; a payload that is
// not JSON fails too.
func schemaCheck(s *jsonschema.Schema, payload []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

type example struct {
	kind, verdict, name string
	payload             []byte
}

// loadExamples reads testdata/examples/<verdict>/<kind>/*.json.
func loadExamples(tb testing.TB) []example {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "examples", "*", "*", "*.json"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no examples: %v", err)
	}
	sort.Strings(paths)
	var out []example
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		parts := strings.Split(filepath.ToSlash(p), "/")
		out = append(out, example{kind: parts[3], verdict: parts[2], name: strings.TrimSuffix(parts[4], ".json"), payload: b})
	}
	return out
}

func decodeKind(kind string, payload []byte) error {
	switch kind {
	case KindRecord:
		_, err := DecodeRecord(payload)
		return err
	case KindOutcome:
		_, err := DecodeOutcome(payload)
		return err
	}
	panic("no decoder for " + kind)
}

// TestGoAndJSONSchemaAgree runs every example through the Go decoder and the
// JSON Schema and requires the same verdict, except for the Go-only checks.
func TestGoAndJSONSchemaAgree(t *testing.T) {
	schemas := compileSchemas(t)
	counts := map[string]int{}
	for _, ex := range loadExamples(t) {
		t.Run(ex.verdict+"/"+ex.kind+"/"+ex.name, func(t *testing.T) {
			counts[ex.verdict]++
			goErr := decodeKind(ex.kind, ex.payload)
			schemaErr := schemaCheck(schemas[ex.kind], ex.payload)
			switch ex.verdict {
			case "valid":
				if goErr != nil {
					t.Errorf("Go rejects: %v", goErr.(*ValidationError).Detail())
				}
				if schemaErr != nil {
					t.Errorf("JSON Schema rejects: %v", schemaErr)
				}
			case "invalid":
				if goErr == nil {
					t.Errorf("Go accepts")
				}
				if schemaErr == nil {
					t.Errorf("JSON Schema accepts")
				}
			case "goonly":
				if goErr == nil {
					t.Errorf("Go accepts a payload only Go can reject")
				}
				t.Logf("Go: %v; JSON Schema (not compared): %v", goErr, schemaErr)
			default:
				t.Fatalf("unknown verdict directory %q", ex.verdict)
			}
		})
	}
	if counts["valid"] < 20 || counts["invalid"] < 80 || counts["goonly"] < 5 {
		t.Errorf("example corpus shrank: %v", counts)
	}
	t.Logf("examples: %v; Go-only checks: %s", counts, strings.Join(goOnlyChecks, "; "))
}

// TestGoOnlyOversizedPayload is the size-limit case of the Go-only list,
// generated rather than stored: the schema accepts it, Go must not.
func TestGoOnlyOversizedPayload(t *testing.T) {
	schemas := compileSchemas(t)
	big := []byte(`{"id":"big","patient_ref":"","features":{}` + strings.Repeat(" ", MaxRecordBytes) + `}`)
	if err := schemaCheck(schemas[KindRecord], big); err != nil {
		t.Fatalf("setup: the schema should accept it: %v", err)
	}
	if _, err := DecodeRecord(big); err == nil {
		t.Errorf("Go accepts a %d-byte record", len(big))
	}
}

// Messages the services produce must conform to their published schemas.
func TestMarshalledMessagesConform(t *testing.T) {
	schemas := compileSchemas(t)
	at := time.Date(2025, 3, 4, 5, 6, 7, 890_000_000, time.UTC)
	end := at.Add(time.Minute)
	sha := strings.Repeat("ab", 32)
	msgs := []struct {
		kind string
		v    any
	}{
		{KindPrediction, Prediction{SchemaVersion: Version, RecordID: "r-1", Source: "cleveland", PatientRef: "p<1>",
			Probability: 0.8731, Label: 1, Threshold: 0.5, Model: ModelRef{Name: "xgb-heart", Version: "2025.03.1", SHA256: sha},
			ReceivedAt: at, ScoredAt: at.Add(1500 * time.Microsecond), LatencyMS: 1.5, Deliveries: 2}},
		{KindPrediction, &Prediction{RecordID: "r-2", Source: "va", Probability: 0, Label: 0, Threshold: 1,
			Model: ModelRef{Name: "m", SHA256: sha}, ReceivedAt: at, ScoredAt: at}},
		{KindDeadLetter, DeadLetter{Subject: "cardio.records.cleveland", Source: "cleveland", RecordID: "r-3", Stage: StageValidate,
			Reasons: []Problem{{Field: "features.chol", Problem: "must be between 50 and 700 mg/dl, got 1200"}},
			Payload: []byte(`{"id":"r-3"}`), PayloadSize: 12, PayloadSHA256: sha, StreamSequence: 42, Deliveries: 1,
			ReceivedAt: at, DeadLetteredAt: at}},
		{KindDeadLetter, DeadLetter{Subject: "cardio.records.x", Source: "x", Stage: StageDecode,
			Reasons: []Problem{{Problem: "payload is empty; expected a JSON object"}}, PayloadSHA256: sha}},
		{KindAlert, Alert{ID: "accuracy-low-1", Rule: "accuracy_low", Status: AlertFiring, Severity: "page",
			Metric: "accuracy", Comparator: "<", Threshold: 0.8, Value: 0.71, Samples: 500,
			Summary: "accuracy 0.71 < 0.8 over 500 outcomes", StartsAt: at, At: at}},
		{KindAlert, Alert{ID: "a-2", Rule: "latency-high", Status: AlertResolved, Metric: "latency_p99_seconds",
			Comparator: ">", Threshold: 1, Value: 0.2, StartsAt: at, EndsAt: &end, At: end}},
		{KindOutcome, Outcome{RecordID: "r-1", Label: 1, ObservedAt: at}},
		{KindRecord, Record{ID: "r-1", PatientRef: "p", ObservedAt: at, Features: Features{63, 1, 1, 145, 233, 1, 2, 150, 0, 2.3, 3, 0, 6}}},
		{KindRecord, Record{ID: "r-2", Features: Missing()}},
	}
	for _, m := range msgs {
		b, err := json.Marshal(m.v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"schema_version":1`)) {
			t.Errorf("%s lacks schema_version: %s", m.kind, b)
		}
		if err := schemaCheck(schemas[m.kind], b); err != nil {
			t.Errorf("%s does not conform: %v\n%s", m.kind, err, b)
		}
	}
}
