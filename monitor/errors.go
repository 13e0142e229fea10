package monitor

import "errors"

var (
	// ErrInvalidConfig is wrapped by New when the configuration is invalid.
	ErrInvalidConfig = errors.New("invalid monitor configuration")
	// ErrNotReady is returned by Ready until the consumers and buckets exist
	// and the startup replay of the ledger is done.
	ErrNotReady = errors.New("monitor not ready")
	// ErrAlreadyRunning is returned by a second call to Run.
	ErrAlreadyRunning = errors.New("monitor already running")

	// errInvalidInput marks an input message that can never be processed;
	// it is terminated, not retried.
	errInvalidInput = errors.New("invalid input message")
	// errConflict is a lost compare-and-set on the pending bucket; the
	// operation is retried with the current value.
	errConflict = errors.New("pending entry changed concurrently")
	// errTooManyConflicts ends a CAS loop that keeps losing; the message is
	// redelivered later.
	errTooManyConflicts = errors.New("too many concurrent updates of one pending entry")
)
