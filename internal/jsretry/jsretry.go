package jsretry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/ctxtime"
)

// The backoff between attempts.
const (
	BackoffMin = 100 * time.Millisecond
	BackoffMax = 2 * time.Second
)

// ErrNoAnswer ends an operation whose requests the cluster never answered
// before its context ended; callers add what the user can do about it.
var ErrNoAnswer = errors.New("the NATS cluster did not answer in time (a stream may be without a leader)")

// Unanswered reports whether err says the request reached no one who could
// act on it: nothing was done, so it can be sent again whatever it was.
func Unanswered(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		// "JetStream system temporarily unavailable" (no meta leader).
		(errors.As(err, &apiErr) && apiErr.Code == http.StatusServiceUnavailable)
}

// Transient reports whether err is Unanswered or an attempt's own timeout
// (the parent context still running): the request may or may not have been
// acted on, so only idempotent requests are sent again on it.
func Transient(parent context.Context, err error) bool {
	if err == nil || parent.Err() != nil {
		return false
	}
	return Unanswered(err) || timedOut(err)
}

// UnansweredOnly is Transient for a request that must not be sent twice:
// only unanswered attempts are repeated.
func UnansweredOnly(_ context.Context, err error) bool { return Unanswered(err) }

func timedOut(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// Backoff sleeps d (or until ctx ends) and returns the next delay; false
// when ctx ended first.
func Backoff(ctx context.Context, d time.Duration) (time.Duration, bool) {
	if !ctxtime.Sleep(ctx, d) {
		return d, false
	}
	return min(2*d, BackoffMax), true
}

// Do runs fn, each attempt bounded by attempt, again while again(ctx, err)
// says so, backing off from BackoffMin to BackoffMax, until ctx ends.
// onRetry (nil for none) is told each failed attempt whose error differs
// from the one before. An error the cluster left unanswered until ctx ended
// also wraps ErrNoAnswer.
func Do(ctx context.Context, attempt time.Duration, again func(context.Context, error) bool, onRetry func(error), fn func(ctx context.Context) error) error {
	delay := BackoffMin
	last := ""
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		err := fn(actx)
		cancel()
		if err == nil {
			return nil
		}
		if !again(ctx, err) {
			if ctx.Err() != nil && (Unanswered(err) || timedOut(err)) {
				return fmt.Errorf("%w; %w", err, ErrNoAnswer)
			}
			return err
		}
		if msg := err.Error(); msg != last && onRetry != nil {
			onRetry(err)
			last = msg
		}
		var ok bool
		if delay, ok = Backoff(ctx, delay); !ok {
			return fmt.Errorf("%w; %w", err, ErrNoAnswer)
		}
	}
}
