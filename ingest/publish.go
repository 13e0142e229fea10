package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/ctxtime"
)

// errUnconfirmed marks a publish whose ack was still outstanding when the
// replay was cancelled: it may or may not be stored.
var errUnconfirmed = errors.New("publish unconfirmed: replay cancelled before its ack")

// errAckTimeout is a publish ack that did not arrive within PublishTimeout.
var errAckTimeout = errors.New("publish ack timed out")

// jsErrCodeExpectedStreamMismatch is the server's "expected stream does not
// match" (NATS_JS_STREAM_NOT_MATCH); nats.go has no constant for it.
const jsErrCodeExpectedStreamMismatch jetstream.ErrorCode = 10060

// msgTag identifies a published message for counting and reporting.
type msgTag struct {
	run   *fileRun
	line  int
	id    string
	label *int // records: the outcome to schedule
}

// inflight is one publish awaiting its ack.
type inflight struct {
	msg  *nats.Msg
	fut  jetstream.PubAckFuture
	err  error // PublishMsgAsync failed before sending
	sent time.Time
	tag  msgTag
}

// publisher publishes asynchronously with at most MaxInFlight unacked
// messages. One collector goroutine (run) awaits the acks in publish order,
// retries failures and reports each message exactly once to done. Acks are
// therefore reported in order, which keeps the outcome queue a FIFO.
type publisher struct {
	js    jetstream.JetStream
	kind  string // "record" or "outcome", for logs
	cfg   Config
	log   *slog.Logger
	sem   chan struct{}
	queue chan inflight
	done  func(msgTag, *jetstream.PubAck, error)
	// abort stops the whole replay: a publish kept failing after retries,
	// which means the system (not this message) is at fault.
	abort    func(error)
	finished chan struct{}
	// sleep waits d or until ctx ends (reporting whether d passed); tests
	// replace it to see the backoffs taken.
	sleep func(ctx context.Context, d time.Duration) bool

	lastLogged string // the last retry error logged; log when it changes
	// healthy is true after a retry succeeded and until one fails: the
	// outage is over, so the next failed message (most likely sent before
	// the recovery) is first retried at once, not after a backoff. Without
	// this, the up to MaxInFlight messages lost in one outage (a broker
	// node loss) would each wait RetryBackoff in turn.
	healthy bool
}

func newPublisher(js jetstream.JetStream, kind string, cfg Config, log *slog.Logger, done func(msgTag, *jetstream.PubAck, error), abort func(error)) *publisher {
	return &publisher{
		js:       js,
		kind:     kind,
		cfg:      cfg,
		log:      log,
		sem:      make(chan struct{}, cfg.MaxInFlight),
		queue:    make(chan inflight, cfg.MaxInFlight),
		done:     done,
		abort:    abort,
		finished: make(chan struct{}),
		sleep:    ctxtime.Sleep,
	}
}

// publish sends msg, waiting for a free slot in the in-flight window. It
// returns an error only when ctx ends first (msg was then not sent).
func (p *publisher) publish(ctx context.Context, msg *nats.Msg, tag msgTag) error {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	fut, err := p.js.PublishMsgAsync(msg)
	p.queue <- inflight{msg: msg, fut: fut, err: err, sent: time.Now(), tag: tag}
	return nil
}

// close stops intake and waits until every queued publish has been
// resolved and reported.
func (p *publisher) close() {
	close(p.queue)
	<-p.finished
}

// run is the collector. It returns when close was called and the queue is
// drained; after ctx ends it drains without waiting, reporting
// errUnconfirmed.
func (p *publisher) run(ctx context.Context) {
	defer close(p.finished)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for it := range p.queue {
		ack, err := p.await(ctx, it, timer)
		if err != nil && !errors.Is(err, errUnconfirmed) {
			ack, err = p.retry(ctx, it, err)
		}
		<-p.sem
		p.done(it.tag, ack, err)
	}
}

func (p *publisher) await(ctx context.Context, it inflight, timer *time.Timer) (*jetstream.PubAck, error) {
	if it.err != nil {
		return nil, it.err
	}
	if ctx.Err() != nil {
		return nil, errUnconfirmed
	}
	// An ack that already arrived wins over a deadline that already
	// passed: when the collector runs behind (after retries), both are
	// ready, and select would pick at random, retrying stored messages.
	select {
	case ack := <-it.fut.Ok():
		return ack, nil
	case err := <-it.fut.Err():
		return nil, err
	default:
	}
	timer.Reset(time.Until(it.sent.Add(p.cfg.PublishTimeout)))
	defer timer.Stop()
	select {
	case ack := <-it.fut.Ok():
		return ack, nil
	case err := <-it.fut.Err():
		return nil, err
	case <-timer.C:
		return nil, errAckTimeout
	case <-ctx.Done():
		return nil, errUnconfirmed
	}
}

// retry republishes synchronously with exponential backoff. The message id
// makes this safe even when the first attempt was in fact stored.
func (p *publisher) retry(ctx context.Context, it inflight, err error) (*jetstream.PubAck, error) {
	if p.healthy && classify(err) == errorRetry {
		// The last retry succeeded: this message most likely failed in the
		// same, finished outage. Try once at once, outside the budget.
		ack, rerr := p.republish(ctx, it)
		if rerr == nil {
			return ack, nil
		}
		if ctx.Err() != nil {
			return nil, errUnconfirmed
		}
		err = rerr
	}
	backoff := p.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		switch classify(err) {
		case errorDrop:
			return nil, err
		case errorAbort:
			err = fmt.Errorf("%w: %s %s: %w", ErrPublishFailed, p.kind, it.tag.id, err)
			p.abort(err)
			return nil, err
		}
		if attempt > p.cfg.PublishRetries {
			err = fmt.Errorf("%w: %s %s after %d retries: %w", ErrPublishFailed, p.kind, it.tag.id, p.cfg.PublishRetries, err)
			p.abort(err)
			return nil, err
		}
		if msg := err.Error(); msg != p.lastLogged {
			p.log.Warn("publish failed, retrying", "kind", p.kind, "record_id", it.tag.id, "attempt", attempt, "backoff", backoff, "err", err)
			p.lastLogged = msg
		}
		if !p.sleep(ctx, backoff) {
			return nil, errUnconfirmed
		}
		backoff = min(2*backoff, MaxRetryBackoff)
		var ack *jetstream.PubAck
		ack, err = p.republish(ctx, it)
		if err == nil {
			if p.lastLogged != "" {
				p.log.Info("publish recovered", "kind", p.kind, "record_id", it.tag.id, "attempt", attempt)
				p.lastLogged = ""
			}
			return ack, nil
		}
		if ctx.Err() != nil {
			return nil, errUnconfirmed
		}
	}
}

// republish publishes it.msg again synchronously, under the same message id.
func (p *publisher) republish(ctx context.Context, it inflight) (*jetstream.PubAck, error) {
	actx, cancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
	defer cancel()
	ack, err := p.js.PublishMsg(actx, it.msg)
	p.healthy = err == nil
	return ack, err
}

type errorClass int

const (
	errorRetry errorClass = iota // transient: retry with backoff
	errorDrop                    // this message can never be stored: count it, go on
	errorAbort                   // nothing can be published: stop the replay
)

func classify(err error) errorClass {
	switch {
	case errors.Is(err, nats.ErrMaxPayload),
		errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum):
		return errorDrop
	case errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return errorAbort
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeExpectedStreamMismatch {
		return errorAbort // the subject is captured by another stream: a deployment error
	}
	return errorRetry
}
