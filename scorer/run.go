package scorer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/ctxtime"
	"github.com/cardiostream/cardiostream/schemas"
)

// Run creates or updates the durable consumer and scores records until ctx
// ends. It then drains in order: stop intake (the consume subscription is
// drained, so records already delivered are still processed), finish the
// batches in flight, wait for their publish acks, ack or NAK every record.
// The drain is bounded by ShutdownTimeout: records still unfinished then
// are NAKed for immediate redelivery and Run returns ErrShutdownTimeout.
// Run returns nil on a clean shutdown. It may be called once.
func (s *Scorer) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer s.setNotReady("stopped")
	set := s.models.Load()
	s.log.Info("scorer starting", "batch_size", s.cfg.BatchSize, "workers", s.cfg.Workers,
		"max_ack_pending", s.cfg.MaxAckPending, "ack_wait", s.cfg.AckWait, "max_deliver", s.cfg.MaxDeliver,
		"model", set.ref.Name, "model_version", set.ref.Version, "batch_model", set.batch != nil,
		"shadow_version", set.shadowRef.Version)

	in := make(chan jetstream.Msg, s.cfg.BatchSize)
	intakeDone := make(chan struct{})
	// Publishing never waits for earlier publish acks: a batch holds at
	// least one record and the server delivers at most MaxAckPending
	// unsettled records, so ackq cannot hold more batches than that. With a
	// shallow queue (it was 2 × workers) one slow publish ack stopped the
	// worker after a few batches, and records delivered meanwhile waited in
	// `in` unpublished (at 5,000/s, delivery → worker p99 14-42 ms; now
	// 0.6-3.7 ms: BENCHMARKS.md, "Latency").
	ackq := make(chan *batch, s.cfg.MaxAckPending)
	abort := make(chan struct{})
	s.abort = abort
	// abortCtx ends with abort: it bounds the wait for buffer space.
	abortCtx, cancelAbort := context.WithCancel(context.Background())
	defer cancelAbort()

	// The shutdown clock starts when ctx ends.
	stopTimer := make(chan struct{})
	var timerWG sync.WaitGroup
	timerWG.Go(func() {
		select {
		case <-ctx.Done():
		case <-stopTimer:
			return
		}
		t := time.NewTimer(s.cfg.ShutdownTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			close(abort)
			cancelAbort()
		case <-stopTimer:
		}
	})

	var workers, acker sync.WaitGroup
	for range s.cfg.Workers {
		workers.Go(func() { s.work(in, intakeDone, ackq) })
	}
	acker.Go(func() { s.acker(ackq, abort) })

	err := s.consume(ctx, in, abort, abortCtx)
	s.setNotReady("shutting down")

	close(intakeDone)
	workers.Wait()
	close(ackq)
	acker.Wait()
	// Every future was awaited by the acker; this only matters after abort.
	select {
	case <-s.pub.PublishAsyncComplete():
	case <-abort:
	}
	close(stopTimer)
	timerWG.Wait()

	aborted := false
	select {
	case <-abort:
		aborted = true
	default:
	}
	st := s.Stats()
	s.log.Info("scorer stopped", "received", st.Received, "scored", st.Scored,
		"dead_lettered", st.DeadLettered, "retried", st.Retried, "aborted", aborted)
	if err != nil {
		return err
	}
	if aborted {
		return fmt.Errorf("%w after %s", ErrShutdownTimeout, s.cfg.ShutdownTimeout)
	}
	return nil
}

// consume keeps a Consume subscription feeding in until ctx ends, recreating
// the consumer when it is deleted. It returns after intake has stopped.
func (s *Scorer) consume(ctx context.Context, in chan<- jetstream.Msg, abort <-chan struct{}, abortCtx context.Context) error {
	handler := func(m jetstream.Msg) {
		// Blocking here holds back the next pulls: back-pressure by bytes,
		// on top of the count bound of the channel.
		n := payloadWeight(m)
		if err := s.budget.Acquire(abortCtx, n); err != nil {
			_ = m.Nak()
			return
		}
		select {
		case <-abort:
			s.budget.Release(n)
			_ = m.Nak()
			return
		default:
		}
		select {
		case in <- m:
			if s.opts.intake != nil {
				s.opts.intake()
			}
		case <-abort:
			s.budget.Release(n)
			_ = m.Nak()
		}
	}
	checkedWindow := false
	for {
		cons, err := s.ensureConsumer(ctx)
		if err != nil {
			return nil // ctx ended before the consumer could be created
		}
		if !checkedWindow {
			checkedWindow = true
			s.checkDuplicateWindow(ctx)
		}
		signals := make(chan error, 1)
		cc, err := cons.Consume(handler,
			jetstream.PullMaxMessagesWithBytesLimit(s.cfg.BatchSize, s.pullMaxBytes()),
			jetstream.PullExpiry(s.cfg.PullExpiry),
			jetstream.PullHeartbeat(s.cfg.PullExpiry/4),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				select {
				case signals <- err:
				default: // one pending signal is enough
				}
			}))
		if err != nil {
			s.errLog.failed("starting consume", err)
			s.setNotReady("starting consume: " + err.Error())
			if !ctxtime.Sleep(ctx, time.Second) {
				return nil
			}
			continue
		}
		s.errLog.ok("starting consume")
		s.setReady()
		s.log.Info("consuming", "stream", schemas.StreamRecords, "filter", s.subjects.AllRecords())

		restart, fatal := s.watch(ctx, cons, signals)
		if restart {
			s.setNotReady("consumer lost; recreating it")
		}
		// Stop intake. Drain delivers what is already buffered to handler,
		// which hands it to the workers.
		cc.Drain()
		bound := time.NewTimer(s.cfg.ShutdownTimeout)
		select {
		case <-cc.Closed():
		case <-abort:
			cc.Stop()
		case <-bound.C: // only reachable on restart: abort covers shutdown
			cc.Stop()
		}
		bound.Stop()
		if fatal != nil {
			return fatal
		}
		if !restart {
			return nil
		}
	}
}

// maxBufferedBytes bounds the payload bytes of the records this process
// holds between delivery and settlement. Valid records are at most
// schemas.MaxRecordBytes, so a full pipeline of them (a few batches) never
// reaches it; a flood of payloads at the server's max_payload (1 MiB) would
// otherwise fill the same pipeline with gigabytes.
const maxBufferedBytes = 64 << 20

// payloadWeight is what a delivered record counts against maxBufferedBytes;
// a single record larger than the whole budget takes all of it.
func payloadWeight(m jetstream.Msg) int64 { return min(int64(len(m.Data())), maxBufferedBytes) }

// pullMaxBytes bounds the bytes one pull request may bring. Records are
// small, so a batch of valid ones is never cut; but RECORDS accepts messages
// up to the server's max_payload (1 MiB by default, 64 times the record
// limit), and a full batch of those (500 MiB) made the server drop the
// scorer as a slow consumer, again after every reconnect. The bound must
// stay above the largest possible message, or that message could never be
// delivered: twice the server's max_payload at least.
func (s *Scorer) pullMaxBytes() int {
	const ceiling = 32 << 20 // half the server's default max_pending per client
	return max(min(s.cfg.BatchSize*schemas.MaxRecordBytes, ceiling), 2*int(s.js.Conn().MaxPayload()), 2<<20)
}

// watch blocks until ctx ends (false, nil), the consumer must be recreated
// (true, nil) or the connection is gone (false, err).
func (s *Scorer) watch(ctx context.Context, cons jetstream.Consumer, signals <-chan error) (restart bool, fatal error) {
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case err := <-signals:
			switch {
			case errors.Is(err, jetstream.ErrConnectionClosed):
				s.log.Error("NATS connection closed; the scorer stops", "err", err)
				return false, ErrConnectionClosed
			case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound),
				errors.Is(err, jetstream.ErrBadRequest):
				s.log.Warn("consumer lost; recreating it", "err", err)
				return true, nil
			case errors.Is(err, jetstream.ErrNoHeartbeat):
				// The client re-pulls by itself; if the consumer is gone
				// (stream recreated), only recreating it helps.
				ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, ierr := cons.Info(ictx)
				cancel()
				if errors.Is(ierr, jetstream.ErrConsumerNotFound) || errors.Is(ierr, jetstream.ErrStreamNotFound) {
					s.log.Warn("consumer lost; recreating it", "err", ierr)
					return true, nil
				}
				s.errLog.failed("consuming", err)
			default:
				s.errLog.failed("consuming", err)
			}
		}
	}
}

// ensureConsumer creates or updates the durable consumer, retrying with
// backoff until it succeeds or ctx ends.
func (s *Scorer) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	wait := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cons, err := s.js.CreateOrUpdateConsumer(cctx, schemas.StreamRecords, s.ConsumerConfig())
		cancel()
		if err == nil {
			s.errLog.ok("creating consumer")
			return cons, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.setNotReady("creating consumer: " + err.Error())
		s.errLog.failed("creating consumer", err, "stream", schemas.StreamRecords)
		if !ctxtime.Sleep(ctx, wait) {
			return nil, ctx.Err()
		}
		wait = min(2*wait, 5*time.Second)
	}
}
