package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RelayConfig configures the bare relay. Use the scorer's values for the
// consumer settings so the comparison is like for like.
type RelayConfig struct {
	Stream        string // input stream (RECORDS)
	Consumer      string // durable consumer name
	FilterSubject string // input filter (<prefix>.records.>)
	OutSubject    string // output subject, in the PREDICTIONS stream
	OutSize       int    // output payload size in bytes (a prediction's)
	BatchSize     int    // PullMaxMessages
	MaxAckPending int
	AckWait       time.Duration
	PullExpiry    time.Duration
	PubTimeout    time.Duration
}

// Validate checks the configuration.
func (c RelayConfig) Validate() error {
	var errs []error
	if c.Stream == "" || c.Consumer == "" || c.FilterSubject == "" || c.OutSubject == "" {
		errs = append(errs, errors.New("relay: stream, consumer, filter and output subject are required"))
	}
	if c.OutSize < 1 || c.BatchSize < 1 || c.MaxAckPending < c.BatchSize {
		errs = append(errs, fmt.Errorf("relay: out size %d, batch size %d, max ack pending %d: want positive sizes and max ack pending >= batch size",
			c.OutSize, c.BatchSize, c.MaxAckPending))
	}
	if c.AckWait <= 0 || c.PullExpiry <= 0 || c.PubTimeout <= 0 {
		errs = append(errs, errors.New("relay: ack wait, pull expiry and publish timeout must be positive"))
	}
	return errors.Join(errs...)
}

// Relay relays records until ctx ends, then drains: intake stops, every
// publish already made is awaited and its record acked (or NAKed when the
// publish failed). It returns the number of records acked.
func Relay(ctx context.Context, js jetstream.JetStream, cfg RelayConfig) (uint64, error) {
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	pub, err := jetstream.New(js.Conn(),
		jetstream.WithPublishAsyncMaxPending(cfg.MaxAckPending+cfg.BatchSize),
		jetstream.WithPublishAsyncTimeout(cfg.PubTimeout))
	if err != nil {
		return 0, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := js.CreateOrUpdateConsumer(cctx, cfg.Stream, jetstream.ConsumerConfig{
		Durable:       cfg.Consumer,
		FilterSubject: cfg.FilterSubject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: cfg.MaxAckPending,
	})
	cancel()
	if err != nil {
		return 0, fmt.Errorf("creating the relay consumer: %w", err)
	}

	// The same shape as the scorer: the consume callback hands records to a
	// worker, which takes one and then whatever is buffered (up to
	// BatchSize), publishes an output for each and passes the batch to an
	// acker that acks each record after its output's publish ack.
	type pending struct {
		msg jetstream.Msg
		fut jetstream.PubAckFuture
	}
	in := make(chan jetstream.Msg, cfg.BatchSize)
	// As deep as the scorer's: publishing never waits for earlier publish
	// acks (at most MaxAckPending records, so batches, are unsettled).
	ackq := make(chan []pending, cfg.MaxAckPending)
	var acked atomic.Uint64
	var worker, acker sync.WaitGroup
	acker.Go(func() {
		for batch := range ackq {
			for _, p := range batch {
				if p.fut == nil {
					_ = p.msg.Nak()
					continue
				}
				select {
				case <-p.fut.Ok():
					if p.msg.Ack() == nil {
						acked.Add(1)
					}
				case <-p.fut.Err():
					_ = p.msg.Nak()
				}
			}
		}
	})
	publish := func(m jetstream.Msg) pending {
		md, err := m.Metadata()
		if err != nil {
			return pending{msg: m}
		}
		out := make([]byte, cfg.OutSize)
		n := copy(out, m.Data())
		for i := n; i < len(out); i++ {
			out[i] = ' '
		}
		msg := &nats.Msg{Subject: cfg.OutSubject, Data: out, Header: nats.Header{
			jetstream.MsgIDHeader: []string{"relay/" + strconv.FormatUint(md.Sequence.Stream, 10)}}}
		fut, err := pub.PublishMsgAsync(msg)
		if err != nil {
			fut = nil
		}
		return pending{msg: m, fut: fut}
	}
	worker.Go(func() {
		for first := range in {
			batch := make([]pending, 0, min(cfg.BatchSize, 1+len(in)))
			batch = append(batch, publish(first))
		fill:
			for len(batch) < cfg.BatchSize {
				select {
				case m, ok := <-in:
					if !ok {
						break fill
					}
					batch = append(batch, publish(m))
				default:
					break fill
				}
			}
			ackq <- batch
		}
	})
	finish := func() {
		close(in)
		worker.Wait()
		close(ackq)
		acker.Wait()
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { in <- m },
		jetstream.PullMaxMessages(cfg.BatchSize), jetstream.PullExpiry(cfg.PullExpiry), jetstream.PullHeartbeat(cfg.PullExpiry/4))
	if err != nil {
		finish()
		return 0, fmt.Errorf("consuming: %w", err)
	}
	<-ctx.Done()
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(30 * time.Second):
		cc.Stop()
		<-cc.Closed()
	}
	finish()
	return acked.Load(), nil
}
