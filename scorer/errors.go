package scorer

import "errors"

// Sentinel errors; match them with errors.Is.
var (
	// ErrConfig wraps every error from New about its arguments.
	ErrConfig = errors.New("scorer: invalid configuration")
	// ErrNotReady is returned by Ready while the consumer does not exist yet,
	// is being recreated, or the scorer has stopped.
	ErrNotReady = errors.New("scorer: not ready")
	// ErrAlreadyRunning is returned by Run when it is called a second time.
	ErrAlreadyRunning = errors.New("scorer: Run already called")
	// ErrShutdownTimeout is returned by Run when the drain did not finish
	// within ShutdownTimeout; unfinished records were NAKed (or are left to
	// AckWait) and will be redelivered, so none is lost.
	ErrShutdownTimeout = errors.New("scorer: shutdown timed out")
	// ErrConnectionClosed is returned by Run when the NATS connection was
	// closed underneath it.
	ErrConnectionClosed = errors.New("scorer: NATS connection closed")
)
