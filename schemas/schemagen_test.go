package schemas

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files, the JSON Schema files and the README table")

// obj is a JSON object that keeps its keys in order, so that the generated
// schema files read well and diff cleanly.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(e.k)
		b.Write(k)
		b.WriteByte(':')
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(e.v); err != nil {
			return nil, err
		}
		b.Truncate(b.Len() - 1) // Encode's newline
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func header(kind, title, desc string) obj {
	return obj{
		{"$schema", "https://json-schema.org/draft/2020-12/schema"},
		{"$id", SchemaID(kind)},
		{"title", title},
		{"description", desc},
	}
}

var (
	versionSchema = obj{{"description", "schema version; optional in records and outcomes (defaults to 1)"}, {"const", Version}}
	idSchema      = obj{{"description", "record id: letters, digits, '.', '_', ':' or '-', starting with a letter or digit"},
		{"type", "string"}, {"pattern", IDPattern}}
	tokenSchema = obj{{"type", "string"}, {"pattern", `^[A-Za-z0-9_-]{1,64}$`}}
	timeSchema  = obj{{"type", "string"}, {"format", "date-time"}}
	sha256Hex   = obj{{"type", "string"}, {"pattern", "^[0-9a-f]{64}$"}}
	patientRef  = obj{{"description", "opaque reference to the patient in the clinic's system; optional"},
		{"type", "string"}, {"maxLength", MaxPatientRefLength}}
)

func described(desc string, s obj) obj { return append(obj{{"description", desc}}, s...) }

func featureSchema(s FeatureSpec) obj {
	if s.Kind == Categorical {
		var parts []string
		enum := []any{}
		for _, c := range s.Codes {
			parts = append(parts, strconv.Itoa(c.Value)+" = "+c.Meaning)
			enum = append(enum, c.Value)
		}
		enum = append(enum, nil)
		return obj{{"description", s.Description + ": " + strings.Join(parts, ", ") + "; null when unknown"},
			{"enum", enum}}
	}
	return obj{{"description", s.Description + " (" + s.Unit + "); null when unknown"},
		{"type", []string{"number", "null"}}, {"minimum", s.Min}, {"maximum", s.Max}}
}

func generatedSchemas() map[string]obj {
	feats := obj{}
	for _, s := range FeatureSpecs {
		feats = append(feats, kv{s.Name, featureSchema(s)})
	}
	record := append(header(KindRecord, "Patient record",
		"One patient record published by a clinic on <prefix>.records.<source>. Absent or null features are missing."),
		kv{"type", "object"},
		kv{"required", []string{"id", "features"}},
		kv{"additionalProperties", false},
		kv{"properties", obj{
			{"schema_version", versionSchema},
			{"id", idSchema},
			{"patient_ref", patientRef},
			{"observed_at", described("when the values were measured (RFC 3339)", timeSchema)},
			{"features", obj{
				{"description", "the 13 UCI heart-disease features; each may be absent or null when unknown"},
				{"type", "object"},
				{"additionalProperties", false},
				{"properties", feats},
			}},
		}})
	outcome := append(header(KindOutcome, "Outcome",
		"The diagnosed outcome of a record, published on <prefix>.outcomes.<source>."),
		kv{"type", "object"},
		kv{"required", []string{"record_id", "label", "observed_at"}},
		kv{"additionalProperties", false},
		kv{"properties", obj{
			{"schema_version", versionSchema},
			{"record_id", described("id of the record this outcome belongs to", idSchema[1:])},
			{"label", obj{{"description", "0 = no heart disease, 1 = heart disease"}, {"enum", []int{0, 1}}}},
			{"observed_at", described("when the outcome was established (RFC 3339)", timeSchema)},
		}})
	prediction := append(header(KindPrediction, "Prediction",
		"The model's risk score for one valid record, published on <prefix>.predictions.<source>."),
		kv{"type", "object"},
		kv{"required", []string{"schema_version", "record_id", "source", "probability", "label", "threshold",
			"model", "received_at", "scored_at", "latency_ms"}},
		kv{"additionalProperties", false},
		kv{"properties", obj{
			{"schema_version", versionSchema[1:]},
			{"record_id", idSchema[1:]},
			{"source", described("the source token of the record's subject", tokenSchema)},
			{"patient_ref", patientRef[1:]},
			{"probability", obj{{"description", "predicted probability of heart disease"},
				{"type", "number"}, {"minimum", 0}, {"maximum", 1}}},
			{"label", obj{{"description", "1 when probability >= threshold, else 0"}, {"enum", []int{0, 1}}}},
			{"threshold", obj{{"type", "number"}, {"minimum", 0}, {"maximum", 1}}},
			{"model", obj{
				{"type", "object"},
				{"required", []string{"name", "version", "sha256"}},
				{"additionalProperties", false},
				{"properties", obj{
					{"name", obj{{"type", "string"}, {"minLength", 1}}},
					{"version", obj{{"type", "string"}}},
					{"sha256", described("SHA-256 of the model file, lowercase hex", sha256Hex)},
				}},
			}},
			{"received_at", described("when the record was stored in RECORDS", timeSchema)},
			{"scored_at", timeSchema},
			{"latency_ms", obj{{"description", "scored_at - received_at in milliseconds"}, {"type", "number"}}},
			{"deliveries", obj{{"description", "delivery attempt of the record that produced this prediction"},
				{"type", "integer"}, {"minimum", 1}}},
		}})
	problem := obj{
		{"type", "object"},
		{"required", []string{"field", "problem"}},
		{"additionalProperties", false},
		{"properties", obj{
			{"field", obj{{"description", `JSON path such as "features.chol"; "" for the whole payload`}, {"type", "string"}}},
			{"problem", obj{{"type", "string"}, {"minLength", 1}}},
		}},
	}
	deadletter := append(header(KindDeadLetter, "Dead letter",
		"A record that cannot be scored, with the reasons and the original payload, published on <prefix>.deadletter.<source>."),
		kv{"type", "object"},
		kv{"required", []string{"schema_version", "subject", "source", "stage", "reasons", "payload", "payload_size",
			"payload_sha256", "payload_truncated", "stream_sequence", "deliveries", "received_at", "dead_lettered_at"}},
		kv{"additionalProperties", false},
		kv{"properties", obj{
			{"schema_version", versionSchema[1:]},
			{"subject", obj{{"type", "string"}, {"minLength", 1}}},
			{"source", tokenSchema},
			{"record_id", described("the record's id, when the payload had a valid one", idSchema[1:])},
			{"stage", obj{{"description", "decode: not a record-shaped JSON object; validate: a value is invalid; score: scoring kept failing"},
				{"enum", []Stage{StageDecode, StageValidate, StageScore}}}},
			{"reasons", obj{{"type", "array"}, {"minItems", 1}, {"items", problem}}},
			{"payload", obj{{"description", "the original payload, cut to " + strconv.Itoa(MaxDeadLetterPayload) + " bytes"},
				{"type", "string"}, {"contentEncoding", "base64"}}},
			{"payload_size", obj{{"type", "integer"}, {"minimum", 0}}},
			{"payload_sha256", sha256Hex},
			{"payload_truncated", obj{{"type", "boolean"}}},
			{"stream_sequence", obj{{"type", "integer"}, {"minimum", 0}}},
			{"deliveries", obj{{"type", "integer"}, {"minimum", 0}}},
			{"received_at", timeSchema},
			{"dead_lettered_at", timeSchema},
		}})
	alert := append(header(KindAlert, "Alert transition",
		"An alert moving into firing or resolved, published on <prefix>.alerts.<rule> and POSTed to webhooks."),
		kv{"type", "object"},
		kv{"required", []string{"schema_version", "id", "rule", "status", "metric", "comparator", "threshold", "value",
			"samples", "summary", "starts_at", "at"}},
		kv{"additionalProperties", false},
		kv{"properties", obj{
			{"schema_version", versionSchema[1:]},
			{"id", obj{{"description", "stable delivery id: the same transition always has the same id"},
				{"type", "string"}, {"minLength", 1}}},
			{"rule", tokenSchema},
			{"status", obj{{"enum", []AlertStatus{AlertFiring, AlertResolved}}}},
			{"severity", obj{{"type", "string"}}},
			{"metric", obj{{"type", "string"}, {"minLength", 1}}},
			{"comparator", obj{{"enum", []string{"<", ">"}}}},
			{"threshold", obj{{"type", "number"}}},
			{"value", obj{{"type", "number"}}},
			{"samples", obj{{"type", "integer"}, {"minimum", 0}}},
			{"summary", obj{{"type", "string"}}},
			{"starts_at", timeSchema},
			{"ends_at", timeSchema},
			{"at", timeSchema},
		}})
	return map[string]obj{
		KindRecord: record, KindOutcome: outcome, KindPrediction: prediction,
		KindDeadLetter: deadletter, KindAlert: alert,
	}
}

// TestJSONSchemaFiles checks that the embedded schema files are exactly what
// the generator derives from FeatureSpecs and the constants; -update rewrites them.
func TestJSONSchemaFiles(t *testing.T) {
	for kind, s := range generatedSchemas() {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		file := SchemaFile(kind)
		if *update {
			if err := os.WriteFile(file, want.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := JSONSchemaFS.ReadFile(file)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s is out of date with FeatureSpecs/constants; run go test ./schemas -run TestJSONSchemaFiles -update", file)
		}
	}
}

// TestREADMEFeatureTable keeps the README's feature table generated from FeatureSpecs.
func TestREADMEFeatureTable(t *testing.T) {
	const begin, end = "<!-- BEGIN FEATURE TABLE (generated from FeatureSpecs; go test -run TestREADMEFeatureTable -update) -->\n", "<!-- END FEATURE TABLE -->"
	var b strings.Builder
	b.WriteString("| # | key | meaning | accepted values | missing |\n|---|---|---|---|---|\n")
	for _, s := range FeatureSpecs {
		var accepted string
		if s.Kind == Categorical {
			var parts []string
			for _, c := range s.Codes {
				parts = append(parts, "`"+strconv.Itoa(c.Value)+"` "+c.Meaning)
			}
			accepted = "integer code: " + strings.Join(parts, ", ")
		} else {
			accepted = formatBound(s.Min) + " to " + formatBound(s.Max) + " " + s.Unit
		}
		if s.ZeroHint != "" {
			accepted += " (0 is rejected: " + strings.SplitN(s.ZeroHint, ";", 2)[0] + ")"
		}
		b.WriteString("| " + strconv.Itoa(s.Index) + " | `" + s.Name + "` | " + s.Description + " | " + accepted + " | absent or `null` → NaN |\n")
	}
	path := filepath.Join(".", "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i, j := bytes.Index(readme, []byte(begin)), bytes.Index(readme, []byte(end))
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the feature table markers")
	}
	cur := string(readme[i+len(begin) : j])
	if cur == b.String() {
		return
	}
	if !*update {
		t.Fatalf("README.md feature table is out of date; run go test ./schemas -run TestREADMEFeatureTable -update")
	}
	out := string(readme[:i+len(begin)]) + b.String() + string(readme[j:])
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
}
