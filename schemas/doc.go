// Package schemas owns cardiostream's wire contract: the subjects and streams,
// the JSON messages that cross them (record, outcome, prediction, dead letter,
// alert), their JSON Schema files, and the field-level validation of records
// and outcomes.
//
// Every other package speaks to the outside world through these types. This
// package must not import any other cardiostream package.
package schemas
