package webhook

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/ctxtime"
	"github.com/cardiostream/cardiostream/schemas"
)

// infoTimeout bounds each JetStream API call the notifier makes.
const infoTimeout = 5 * time.Second

// pullExpiry is how long one pull request waits before it is renewed.
const pullExpiry = 5 * time.Second

// consumerConfig is the delivery consumer: one alert in flight across every
// notifier sharing it, so alerts are delivered strictly in stream order;
// never given up by the server (the notifier decides when to give up).
func (n *Notifier) consumerConfig() jetstream.ConsumerConfig {
	deliver := jetstream.DeliverAllPolicy
	if n.cfg.StartFrom == StartNew {
		deliver = jetstream.DeliverNewPolicy
	}
	return jetstream.ConsumerConfig{
		Durable:       n.cfg.Consumer,
		Description:   "cardiostream alert webhook delivery (in order, one at a time)",
		FilterSubject: n.subjects.AllAlerts(),
		DeliverPolicy: deliver,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       n.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 1,
	}
}

// ensureConsumer creates or updates the durable consumer, retrying until it
// succeeds or ctx ends (then it returns ctx's error).
func (n *Notifier) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	var lastErr string
	for attempt := 1; ; attempt++ {
		cons, err := n.createConsumer(ctx)
		if err == nil {
			if lastErr != "" {
				n.log.Info("alert webhook consumer ready after errors", "attempts", attempt)
			}
			return cons, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		n.setReady(fmt.Errorf("%w: %w", ErrNotReady, err))
		if err.Error() != lastErr {
			n.log.Warn("cannot set up the alert webhook consumer; retrying", "err", err, "attempt", attempt)
			lastErr = err.Error()
		}
		if !ctxtime.Sleep(ctx, n.backoff(attempt, nil)) {
			return nil, ctx.Err()
		}
	}
}

func (n *Notifier) createConsumer(ctx context.Context) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	stream, err := n.js.Stream(ctx, schemas.StreamAlerts)
	if err != nil {
		return nil, fmt.Errorf("looking up stream %s: %w", schemas.StreamAlerts, err)
	}
	cc := n.consumerConfig()
	// Where a consumer starts cannot change after it is created, and must
	// not: an existing consumer keeps its position whatever StartFrom says.
	if existing, err := stream.Consumer(ctx, cc.Durable); err == nil {
		cc.DeliverPolicy = existing.CachedInfo().Config.DeliverPolicy
		cc.OptStartSeq = existing.CachedInfo().Config.OptStartSeq
		cc.OptStartTime = existing.CachedInfo().Config.OptStartTime
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("looking up consumer %s: %w", cc.Durable, err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s on %s: %w", cc.Durable, schemas.StreamAlerts, err)
	}
	return cons, nil
}

// consume reads alerts one at a time and delivers each before the next. It
// returns nil when ctx ends, or the error that stopped the iterator.
func (n *Notifier) consume(ctx context.Context, cons jetstream.Consumer) error {
	// One message per pull: the server hands out only one unacknowledged
	// alert anyway (MaxAckPending 1), and nothing sits in a local buffer.
	// A short pull expiry with heartbeats: a pull request that goes
	// unanswered (seen under load with MaxAckPending 1) is replaced within
	// seconds instead of after the 30 s default (see shared notes on
	// JetStream stalls).
	it, err := cons.Messages(jetstream.PullMaxMessages(1), jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullExpiry/4))
	if err != nil {
		return fmt.Errorf("starting to consume: %w", err)
	}
	n.setReady(nil)
	n.refreshPending(ctx, cons)
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				n.drain(it)
				return nil
			}
			it.Stop()
			return err
		}
		n.deliver(ctx, cons, msg)
	}
}

// drain stops the iterator and hands any alert already pulled back to the
// server, so it is redelivered at once rather than after AckWait.
func (n *Notifier) drain(it jetstream.MessagesContext) {
	it.Drain()
	for {
		msg, err := it.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			return
		}
		_ = msg.Nak()
	}
}

// refreshPending sets the pending gauge from the consumer's state: alerts not
// yet delivered plus the one in flight.
func (n *Notifier) refreshPending(ctx context.Context, cons jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	info, err := cons.Info(ctx)
	if err != nil {
		n.log.Debug("reading alert webhook consumer info", "err", err)
		return
	}
	n.m.pending.Set(float64(info.NumPending) + float64(info.NumAckPending))
}
