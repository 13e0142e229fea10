package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cardiostream/cardiostream/internal/jsretry"
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
)

// noAnswerAdvice is what to do when the cluster never answered within the
// operation's time (errNoAnswerInTime).
const noAnswerAdvice = "run the command again, or give it more time with registry.timeout"

var errNoAnswerInTime = fmt.Errorf("%w; "+noAnswerAdvice, jsretry.ErrNoAnswer)

// retry runs the idempotent request fn (a read, or a write that repeats
// safely, like a publish with a message id) until it succeeds, fails with
// an error that is not transient, or ctx ends; what names it in the log,
// which gets a line when the error changes.
func (r *Registry) retry(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	return r.retryIf(ctx, what, attemptTimeout, jsretry.Transient, fn)
}

// retryUnanswered is retry for a request that must not be sent twice: only
// unanswered attempts are repeated.
func (r *Registry) retryUnanswered(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	return r.retryIf(ctx, what, attemptTimeout, jsretry.UnansweredOnly, fn)
}

// retryIf runs fn, each attempt bounded by attempt, again while again(ctx,
// err) says so, backing off between attempts (jsretry.Do), and logs each
// new error.
func (r *Registry) retryIf(ctx context.Context, what string, attempt time.Duration, again func(context.Context, error) bool, fn func(ctx context.Context) error) error {
	err := jsretry.Do(ctx, attempt, again, func(err error) {
		r.log.Warn(what+": the cluster did not answer; retrying", "err", err)
	}, fn)
	if errors.Is(err, jsretry.ErrNoAnswer) {
		return fmt.Errorf("%w; "+noAnswerAdvice, err)
	}
	return err
}
