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
)
