package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/schemas"
)

// ackTimeout bounds the acknowledgement of a delivered alert.
const ackTimeout = 5 * time.Second

// maxDeliveryID bounds the alert id, which travels as a header value.
const maxDeliveryID = 256

// deliver sends one alert until the receiver accepts it, refuses it for good,
// MaxAttempts is reached, or ctx ends. The ack decision follows from the
// outcome: accepted → Ack; refused or given up → Term (so later alerts are
// not blocked forever; the alert stays in ALERTS); ctx ended → Nak (it will
// be delivered after a restart).
func (n *Notifier) deliver(ctx context.Context, cons jetstream.Consumer, msg jetstream.Msg) {
	var remaining float64 // alerts behind this one
	var seq uint64
	if meta, err := msg.Metadata(); err == nil {
		remaining, seq = float64(meta.NumPending), meta.Sequence.Stream
	}
	n.m.pending.Set(remaining + 1)
	body := msg.Data()

	alert, err := parseAlert(body)
	log := n.log.With("alert_id", alert.ID, "rule", alert.Rule, "alert_status", string(alert.Status), "stream_seq", seq)
	if err != nil {
		n.m.failed.Inc()
		log.Error("alert in ALERTS is not a valid alert; terminated without delivery", "subject", msg.Subject(), "err", err)
		n.term(msg, log, "invalid alert")
		n.m.pending.Set(remaining)
		return
	}

	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			n.release(msg, log, attempt-1)
			return
		}
		// Renew AckWait: an attempt lasts at most Timeout ≤ AckWait/2.
		_ = msg.InProgress()
		start := time.Now()
		// Shutdown does not cut an attempt short: a request the receiver
		// may already have processed is worth finishing and acknowledging.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.Timeout)
		retry, err := n.notify(actx, alert.ID, body)
		cancel()
		n.m.duration.Observe(time.Since(start).Seconds())

		if err == nil {
			n.m.success.Inc()
			n.m.attempts.Observe(float64(attempt))
			n.m.lastSuccess.Set(float64(n.now().UnixNano()) / 1e9)
			if n.lastErrKind != "" {
				log.Info("alert webhook delivering again", "attempts", attempt)
				n.lastErrKind = ""
			}
			log.Debug("alert delivered", "attempts", attempt)
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
			if err := msg.DoubleAck(actx); err != nil {
				log.Warn("alert delivered but its ack failed: it will be sent again (receivers drop it by delivery id)", "err", err)
			}
			cancel()
			n.m.pending.Set(remaining)
			return
		}

		giveUp := ""
		switch {
		case !retry:
			giveUp = "refused by the receiver"
		case n.cfg.MaxAttempts > 0 && attempt >= n.cfg.MaxAttempts:
			giveUp = fmt.Sprintf("no success after %d attempts (webhook.max_attempts)", attempt)
		}
		if giveUp != "" {
			n.m.failed.Inc()
			n.m.attempts.Observe(float64(attempt))
			log.Error("alert webhook gave up on an alert; terminated, it stays in the ALERTS stream", "reason", giveUp, "attempts", attempt, "url", n.target, "err", err)
			n.term(msg, log, giveUp)
			n.m.pending.Set(remaining)
			return
		}

		n.m.retry.Inc()
		wait := n.backoff(attempt, err)
		if kind := errorKind(err); kind != n.lastErrKind {
			log.Warn("alert webhook attempt failed; retrying", "kind", kind, "err", err, "attempt", attempt, "retry_in", wait, "url", n.target)
			n.lastErrKind = kind
		}
		if !n.wait(ctx, cons, msg, wait) {
			n.release(msg, log, attempt)
			return
		}
	}
}

// wait waits d between attempts, keeping the alert in progress so the server
// does not redeliver it, and the pending gauge fresh. It reports false when
// ctx ends first.
func (n *Notifier) wait(ctx context.Context, cons jetstream.Consumer, msg jetstream.Msg, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	tick := time.NewTicker(n.cfg.AckWait / 3)
	defer tick.Stop()
	for {
		select {
		case <-timer.C:
			return true
		case <-tick.C:
			_ = msg.InProgress()
			n.refreshPending(ctx, cons)
		case <-ctx.Done():
			return false
		}
	}
}

// backoff is the wait after the attempt-th failure: exponential from
// InitialBackoff, capped at MaxBackoff, with jitter in [d/2, d) so notifiers
// restarted together do not retry in lockstep. A Retry-After from the
// receiver is honoured as a minimum, within MaxBackoff.
func (n *Notifier) backoff(attempt int, err error) time.Duration {
	d := n.cfg.MaxBackoff
	if attempt < 32 {
		if e := n.cfg.InitialBackoff << (attempt - 1); e > 0 && e < d {
			d = e
		}
	}
	d = d/2 + rand.N(d/2+1)
	var serr *StatusError
	if errors.As(err, &serr) && serr.RetryAfter > d {
		d = min(serr.RetryAfter, n.cfg.MaxBackoff)
	}
	return d
}

// release hands an undelivered alert back to the server at shutdown: it is
// redelivered at once to another notifier, or after the restart.
func (n *Notifier) release(msg jetstream.Msg, log *slog.Logger, attempts int) {
	if err := msg.Nak(); err != nil {
		log.Warn("handing back the undelivered alert failed; the server redelivers it after webhook.ack_wait", "err", err)
	}
	log.Info("alert webhook stopping with an alert undelivered; it is delivered after the restart", "attempts", attempts)
}

func (n *Notifier) term(msg jetstream.Msg, log *slog.Logger, reason string) {
	if err := msg.TermWithReason(reason); err != nil {
		log.Warn("terminating the alert failed; the server redelivers it after webhook.ack_wait", "err", err)
	}
}

// parseAlert reads the fields the notifier needs. The body itself is sent
// exactly as stored; this only checks that it is an alert with a usable id.
func parseAlert(body []byte) (schemas.Alert, error) {
	var a schemas.Alert
	if err := json.Unmarshal(body, &a); err != nil {
		return schemas.Alert{}, fmt.Errorf("decoding alert JSON: %w", err)
	}
	if a.ID == "" {
		return a, errors.New("alert has no id")
	}
	if len(a.ID) > maxDeliveryID {
		return schemas.Alert{Rule: a.Rule, Status: a.Status}, fmt.Errorf("alert id is %d bytes, more than %d", len(a.ID), maxDeliveryID)
	}
	for i := 0; i < len(a.ID); i++ {
		if c := a.ID[i]; c <= ' ' || c > '~' {
			return schemas.Alert{Rule: a.Rule, Status: a.Status}, fmt.Errorf("alert id has byte 0x%02x: only visible ASCII can travel as %s", c, HeaderDelivery)
		}
	}
	return a, nil
}
