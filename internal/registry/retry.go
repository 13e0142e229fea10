package registry

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

// Retries of requests a JetStream cluster cannot answer for a moment: when
// the node leading a bucket's stream is lost, the survivors take seconds to
// notice and elect a new leader (about 10 s after a SIGKILL, measured in
// TestRegistryChangesWhileKVLeaderKilled), and meanwhile a request finds no
// responder or no answer. Each attempt is bounded by attemptTimeout, the
// whole operation by the caller's context (registry.timeout).
const (
	attemptTimeout = 5 * time.Second
	// readAttemptTimeout bounds one attempt at reading an object or the
	// audit trail through a consumer: while the stream has no leader, such
	// a read waits for its context rather than failing.
	readAttemptTimeout = 10 * time.Second

	retryBackoffMin = 100 * time.Millisecond
	retryBackoffMax = 2 * time.Second
)

// unanswered reports whether err says the request reached no one who could
// act on it: nothing was done, so it can be sent again whatever it was.
func unanswered(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		// "JetStream system temporarily unavailable" (no meta leader).
		(errors.As(err, &apiErr) && apiErr.Code == http.StatusServiceUnavailable)
}

// transient reports whether err is unanswered or an attempt's own timeout
// (the parent context still running): the request may or may not have been
// acted on, so only idempotent requests are sent again on it.
func transient(parent context.Context, err error) bool {
	if err == nil || parent.Err() != nil {
		return false
	}
	return unanswered(err) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// errNoAnswerInTime ends an operation whose requests the cluster never
// answered within the operation's time.
var errNoAnswerInTime = errors.New("the NATS cluster did not answer in time (a stream may be without a leader); run the command again, or give it more time with registry.timeout")

// backoff sleeps before the next attempt and returns the delay after that;
// false when ctx ended first.
func backoff(ctx context.Context, d time.Duration) (time.Duration, bool) {
	if !ctxtime.Sleep(ctx, d) {
		return d, false
	}
	return min(2*d, retryBackoffMax), true
}

// retry runs the idempotent request fn (a read, or a write that repeats
// safely, like a publish with a message id) until it succeeds, fails with
// an error that is not transient, or ctx ends; what names it in the log,
// which gets a line when the error changes.
func (r *Registry) retry(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	return r.retryIf(ctx, what, attemptTimeout, transient, fn)
}

// retryUnanswered is retry for a request that must not be sent twice: only
// unanswered attempts are repeated.
func (r *Registry) retryUnanswered(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	return r.retryIf(ctx, what, attemptTimeout, func(_ context.Context, err error) bool { return unanswered(err) }, fn)
}

// retryIf runs fn, each attempt bounded by attempt, again while again(ctx,
// err) says so, backing off between attempts.
func (r *Registry) retryIf(ctx context.Context, what string, attempt time.Duration, again func(context.Context, error) bool, fn func(ctx context.Context) error) error {
	delay := retryBackoffMin
	last := ""
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		err := fn(actx)
		cancel()
		if err == nil {
			return nil
		}
		if !again(ctx, err) {
			if ctx.Err() != nil && (unanswered(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)) {
				return fmt.Errorf("%w; %w", err, errNoAnswerInTime)
			}
			return err
		}
		if msg := err.Error(); msg != last {
			r.log.Warn(what+": the cluster did not answer; retrying", "err", err)
			last = msg
		}
		var ok bool
		if delay, ok = backoff(ctx, delay); !ok {
			return fmt.Errorf("%w; %w", err, errNoAnswerInTime)
		}
	}
}
