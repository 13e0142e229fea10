package schemas

import "embed"

// JSONSchemaFS holds the JSON Schema (draft 2020-12) of every message kind:
// record.schema.json, outcome.schema.json, prediction.schema.json,
// deadletter.schema.json and alert.schema.json. They are generated from
// FeatureSpecs and this package's constants (go test ./schemas -run
// TestJSONSchemaFiles -update) and tested to agree with the Go validators.
//
// A schema cannot express every rule the decoders enforce: the size limit,
// valid UTF-8, duplicate keys, leap seconds and date-times outside years
// 0000-9999 in UTC are checked only in Go (see README.md).
//
//go:embed *.schema.json
var JSONSchemaFS embed.FS

// Message kinds, as used in schema file names and ids.
const (
	KindRecord     = "record"
	KindOutcome    = "outcome"
	KindPrediction = "prediction"
	KindDeadLetter = "deadletter"
	KindAlert      = "alert"
)

// MessageKinds lists every message kind with a JSON Schema.
var MessageKinds = []string{KindRecord, KindOutcome, KindPrediction, KindDeadLetter, KindAlert}

// SchemaBaseURL prefixes every schema's $id: <base>/<kind>/v<Version>.
const SchemaBaseURL = "https://cardiostream.dev/schemas"

// SchemaID returns the $id of a kind's schema, e.g.
// https://cardiostream.dev/schemas/record/v1.
func SchemaID(kind string) string { return SchemaBaseURL + "/" + kind + "/v1" }

// SchemaFile returns the file name of a kind's schema in JSONSchemaFS.
func SchemaFile(kind string) string { return kind + ".schema.json" }
