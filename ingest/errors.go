package ingest

import (
	"errors"
	"fmt"
)

// File-level errors: the file cannot be replayed at all.
var (
	ErrNoFiles          = errors.New("no input files")
	ErrUnknownFormat    = errors.New("unknown input format")
	ErrNoFeatureColumns = errors.New("CSV header names none of the 13 features")
	ErrDuplicateColumn  = errors.New("CSV header names a column twice")
)

// Row-level errors, wrapped in *ParseError: the row is reported, counted
// and skipped; the replay goes on.
var (
	ErrColumnCount    = errors.New("wrong number of columns")
	ErrNotNumber      = errors.New("not a number")
	ErrBadLabel       = errors.New("invalid label")
	ErrBadID          = errors.New("invalid record id")
	ErrDuplicateID    = errors.New("duplicate record id")
	ErrBadTimestamp   = errors.New("invalid observed_at timestamp")
	ErrBadJSON        = errors.New("invalid JSON record")
	ErrUnknownFeature = errors.New("unknown feature name")
	ErrLineTooLong    = errors.New("line too long")
	ErrBadQuoting     = errors.New("malformed CSV quoting")
)

// ErrPublishFailed is returned (wrapped) by Replay when a record or outcome
// could not be published after retries.
var ErrPublishFailed = errors.New("publish failed")

// ParseError is one row that could not be parsed. It never carries the
// offending values (they may be patient data), only where and why.
type ParseError struct {
	File string
	Line int // 1-based physical line where the row starts
	Err  error
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }

func (e *ParseError) Unwrap() error { return e.Err }
