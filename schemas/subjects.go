package schemas

import (
	"fmt"
	"regexp"
)

// DefaultPrefix is the subject prefix used when none is configured.
const DefaultPrefix = "cardio"

// Stream names. Each message kind lives in its own stream.
const (
	StreamRecords     = "RECORDS"
	StreamPredictions = "PREDICTIONS"
	StreamOutcomes    = "OUTCOMES"
	StreamDeadLetter  = "DEADLETTER"
	StreamAlerts      = "ALERTS"
)

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidToken reports whether s can be used as a single subject token for a
// source or rule name: 1–64 characters of letters, digits, '_' or '-'.
func ValidToken(s string) bool { return tokenRE.MatchString(s) }

// Subjects builds the subjects of one deployment from its prefix.
type Subjects struct {
	Prefix string
}

// NewSubjects returns the subjects for prefix, or DefaultPrefix when prefix is empty.
func NewSubjects(prefix string) Subjects {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Subjects{Prefix: prefix}
}

// Validate checks that the prefix is a usable subject prefix.
func (s Subjects) Validate() error {
	if !ValidToken(s.Prefix) {
		return fmt.Errorf("subject prefix %q: must be 1-64 letters, digits, '_' or '-'", s.Prefix)
	}
	return nil
}

func (s Subjects) Records(source string) string     { return s.Prefix + ".records." + source }
func (s Subjects) Predictions(source string) string { return s.Prefix + ".predictions." + source }
func (s Subjects) Outcomes(source string) string    { return s.Prefix + ".outcomes." + source }
func (s Subjects) DeadLetter(source string) string  { return s.Prefix + ".deadletter." + source }
func (s Subjects) Alerts(rule string) string        { return s.Prefix + ".alerts." + rule }

// Wildcards covering every source (or rule) of a kind; used as stream subjects.
func (s Subjects) AllRecords() string     { return s.Prefix + ".records.>" }
func (s Subjects) AllPredictions() string { return s.Prefix + ".predictions.>" }
func (s Subjects) AllOutcomes() string    { return s.Prefix + ".outcomes.>" }
func (s Subjects) AllDeadLetter() string  { return s.Prefix + ".deadletter.>" }
func (s Subjects) AllAlerts() string      { return s.Prefix + ".alerts.>" }

// SourceOf returns the source token of a subject of the given kind
// ("records", "predictions", "outcomes", "deadletter"), i.e. everything after
// "<prefix>.<kind>.". ok is false when the subject does not have that shape or
// the remainder is not a single valid token.
func (s Subjects) SourceOf(kind, subject string) (source string, ok bool) {
	head := s.Prefix + "." + kind + "."
	if len(subject) <= len(head) || subject[:len(head)] != head {
		return "", false
	}
	source = subject[len(head):]
	return source, ValidToken(source)
}
