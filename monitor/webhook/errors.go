package webhook

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned by Verify. Match them with errors.Is.
var (
	// ErrSecretEmpty: Verify was called without a secret; an empty HMAC key
	// would accept anyone's signature.
	ErrSecretEmpty = errors.New("webhook: verification secret is empty")
	// ErrSignatureMissing: no X-Cardiostream-Signature header, or none of its
	// entries uses a scheme this version knows (v1).
	ErrSignatureMissing = errors.New("webhook: signature header missing")
	// ErrTimestampMissing: no X-Cardiostream-Timestamp header.
	ErrTimestampMissing = errors.New("webhook: timestamp header missing")
	// ErrTimestampInvalid: the timestamp header is not an integer of unix seconds.
	ErrTimestampInvalid = errors.New("webhook: timestamp header is not unix seconds")
	// ErrSignatureMismatch: no signature matches the body, timestamp and secret.
	ErrSignatureMismatch = errors.New("webhook: signature does not match")
	// ErrTimestampOutOfTolerance: the signature is valid but was made too long
	// ago (or too far in the future): a replayed or badly delayed request.
	ErrTimestampOutOfTolerance = errors.New("webhook: timestamp outside tolerance")
)

// ErrNotReady is returned by Ready until the delivery consumer exists.
var ErrNotReady = errors.New("webhook: notifier not ready")

// StatusError is a non-2xx answer from the receiver.
type StatusError struct {
	// Code is the HTTP status code.
	Code int
	// RetryAfter is the receiver's Retry-After on 429 and 503, 0 otherwise.
	RetryAfter time.Duration
	// Body is the start of the response body, for the log; the receiver's
	// reason for a 4xx is usually there.
	Body string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("receiver answered %d", e.Code)
	}
	return fmt.Sprintf("receiver answered %d: %s", e.Code, e.Body)
}
