package monitor

import "errors"

var (
	// ErrInvalidConfig is wrapped by New when the configuration is invalid.
	ErrInvalidConfig = errors.New("invalid monitor configuration")
	// ErrNotReady is returned by Ready until the state bucket and the audit
	// consumer exist and the inputs are folded up to their start-up end.
	ErrNotReady = errors.New("monitor not ready")
	// ErrAlreadyRunning is returned by a second call to Run.
	ErrAlreadyRunning = errors.New("monitor already running")

	// errInvalidInput marks an input message that can never be processed:
	// counted as invalid (an audit entry is terminated), never retried.
	errInvalidInput = errors.New("invalid input message")
	// errNotInput marks a message on an input stream whose subject is not
	// one the monitor reads (neither <prefix>.<kind>.<source> nor a shadow
	// prediction's): skipped, not counted.
	errNotInput = errors.New("not an input subject")
)
