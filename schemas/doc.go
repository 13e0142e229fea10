// Package schemas owns cardiostream's wire contract: the subjects and streams,
// the JSON messages that cross them (record, outcome, prediction, dead letter,
// alert), their JSON Schema files (JSONSchemaFS), the feature table
// (FeatureSpecs) and the strict field-level decoding of the two messages that
// come from outside (DecodeRecord, DecodeOutcome).
//
// Files by role: messages.go (wire types), features.go (the feature table),
// scan.go (the strict JSON scanner), decode.go (decoders and validation
// rules), encode.go (encoders), errors.go (ValidationError), subjects.go,
// jsonschema.go (embedded schemas). README.md documents the contract for
// clinics and operators.
//
// Every other package speaks to the outside world through these types. This
// package must not import any other cardiostream package but the leaf helper
// internal/suggest.
package schemas
