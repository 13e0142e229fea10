package scorer

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/schemas"
)

// batch is a group of records decoded, scored and published together, then
// settled (acked, NAKed or terminated) together by the acker.
type batch struct {
	// set is the models this batch is scored with, loaded once when the
	// batch starts: a swap takes effect between batches.
	set       *modelSet
	items     []item
	rows      [][schemas.NumFeatures]float64 // BatchModel input
	probs     []float64
	idx       []int // items scored through the BatchModel
	published time.Time
}

var errAborted = errors.New("shutdown timeout: not awaited")

// getBatch returns an empty batch with room for n items. Its items are
// sized to what is buffered, not to BatchSize: at low rates many batches of a
// few records are in flight at once (see ackq in Run), and a full-size item
// slice is ~250 KB.
func (s *Scorer) getBatch(n int) *batch {
	b, ok := s.batches.Get().(*batch)
	if !ok {
		b = &batch{}
	}
	b.items = slices.Grow(b.items[:0], n)
	return b
}

func (s *Scorer) putBatch(b *batch) {
	clear(b.items) // drop message and payload references
	b.items = b.items[:0]
	b.set = nil
	s.batches.Put(b)
}

// work builds batches from in (one blocking receive, then whatever is
// already buffered, up to BatchSize), processes them and hands them to the
// acker. It returns once intake is done and in is empty.
func (s *Scorer) work(in <-chan jetstream.Msg, intakeDone <-chan struct{}, ackq chan<- *batch) {
	for {
		var first jetstream.Msg
		select {
		case first = <-in:
		case <-intakeDone:
			select {
			case first = <-in:
			default:
				return
			}
		}
		b := s.getBatch(min(1+len(in), s.cfg.BatchSize))
		b.items = append(b.items, item{msg: first})
	fill:
		for len(b.items) < s.cfg.BatchSize {
			select {
			case m := <-in:
				b.items = append(b.items, item{msg: m})
			default:
				break fill
			}
		}
		s.process(b)
		ackq <- b
	}
}

// process decodes, scores and publishes every record of b, chunk by chunk:
// the first chunk is one record and each next one twice as large, so a
// record is published after at most about twice the work of the records
// before it in the batch, not after the whole batch's. Scoring the whole
// batch before publishing any of it held the first record of a 50-record
// catch-up batch (after a scheduling hiccup) for the decoding and scoring of
// all 50, and those first records are the ones that had already waited
// longest; the relay publishes each record as it takes it (BENCHMARKS.md,
// "Latency at 5,000/s, second pass"). Large batches are still scored in
// large chunks (BatchModel). A batch with a record that may need its earlier
// output looked up (stored.go) is one chunk, so the lookup, a scan of the
// output streams, runs once per batch as before.
func (s *Scorer) process(b *batch) {
	n := len(b.items)
	b.set = s.models.Load()
	s.received.Add(uint64(n))
	s.m.received.Add(float64(n))
	s.m.inflight.Add(float64(n))
	s.m.batchSize.Observe(float64(n))

	now := s.now()
	lookup := false
	for i := range b.items {
		it := &b.items[i]
		s.readDelivery(it)
		lookup = lookup || s.mayNeedLookup(it, now)
	}
	outs := s.newOutputs(n)
	for lo, size := 0, 1; lo < n; lo, size = lo+size, size*2 {
		if lookup {
			size = n
		}
		c := b.chunk(lo, min(lo+size, n))
		for i := range c.items {
			// A valid record past max_deliver is scored and published like
			// any other: it only gets here when an earlier delivery's
			// outcome is unknown (a publish ack that timed out, a scorer
			// killed after publishing). Its prediction may already be
			// stored, and only republishing it under the same message id
			// can tell: dead-lettering it now could leave the record with
			// both.
			s.decode(&c.items[i])
		}
		s.skipStored(&c)
		s.score(&c)
		if c.set.shadow != nil {
			s.scoreShadow(&c)
		}
		s.publish(&c, outs)
		b.keepScratch(&c)
	}
	b.published = time.Now()
}

// chunk is a view of b's items [lo, hi) that shares b's model set and
// scratch space; keepScratch hands the scratch back.
func (b *batch) chunk(lo, hi int) batch {
	return batch{set: b.set, items: b.items[lo:hi:hi], rows: b.rows, probs: b.probs, idx: b.idx}
}

// keepScratch keeps the (possibly grown) scratch slices of chunk c.
func (b *batch) keepScratch(c *batch) { b.rows, b.probs, b.idx = c.rows, c.probs, c.idx }

// readDelivery fills the delivery fields of it from its message.
func (s *Scorer) readDelivery(it *item) {
	it.verdict = verdictPredict
	it.subject = it.msg.Subject()
	it.data = it.msg.Data()
	if md, err := it.msg.Metadata(); err == nil {
		it.seq = md.Sequence.Stream
		it.deliveries = md.NumDelivered
		it.storedAt = md.Timestamp
	} else {
		// Not a JetStream delivery; it cannot be acked either way. Keep
		// going so it is accounted for as a dead letter.
		it.deliveries = 1
		it.storedAt = s.now()
	}
	if it.deliveries > 1 {
		s.m.redeliveries.Inc()
	}
}

// publish publishes the output of every record of b headed for one.
func (s *Scorer) publish(b *batch, outs *outputs) {
	for i := range b.items {
		it := &b.items[i]
		if it.verdict == verdictRetry || it.verdict == verdictStored {
			continue
		}
		msg, err := s.outMsgIn(b.set, it, outs)
		if err != nil {
			s.scoringFailed(it, err.Error())
			if it.verdict == verdictRetry {
				continue
			}
			if msg, err = s.outMsg(b.set, it); err != nil { // the dead letter itself cannot fail to encode
				it.pubErr = err
				continue
			}
		}
		it.fut, it.pubErr = s.pub.PublishMsgAsync(msg)
		if it.verdict == verdictPredict && it.shadowOK {
			// Published with the main prediction and awaited with it, so a
			// shadow never delays the record beyond its batch.
			if smsg, err := s.shadowMsg(b.set, it); err != nil {
				it.shadowErr = err
			} else {
				it.shadowFut, it.shadowErr = s.pub.PublishMsgAsync(smsg)
			}
		}
	}
}

// score predicts every record of b still headed for a prediction, through
// the BatchModel when there is one.
func (s *Scorer) score(b *batch) {
	b.idx = b.idx[:0]
	for i := range b.items {
		if b.items[i].verdict == verdictPredict {
			b.idx = append(b.idx, i)
		}
	}
	if len(b.idx) == 0 {
		return
	}
	batched := false
	if bm := b.set.batch; bm != nil && len(b.idx) > 1 {
		if err := b.predictIdx(bm); err == nil {
			for k, i := range b.idx {
				b.items[i].prob = b.probs[k]
			}
			batched = true
		} else {
			// Not attributable to a record: score them one by one.
			s.errLog.failed("batch prediction", err)
		}
	}
	if !batched {
		for _, i := range b.idx {
			it := &b.items[i]
			p, err := predictOne(b.set.active, &it.rec.Features)
			if err != nil {
				// A panic: bad input for this model. Retrying cannot help.
				s.m.panics.Inc()
				s.log.Error("model panicked; record dead-lettered", "stream_seq", it.seq, "err_kind", "panic")
				it.deadLetter(schemas.StageScore, schemas.Problem{Problem: err.Error()})
				continue
			}
			it.prob = p
		}
	}
	scored := s.now()
	for _, i := range b.idx {
		it := &b.items[i]
		if it.verdict != verdictPredict {
			continue
		}
		it.scored = scored
		if !validProbability(it.prob) {
			s.scoringFailed(it, fmt.Sprintf("model returned probability %v (want a number in [0, 1])", it.prob))
		}
	}
}

// acker settles each batch in turn once its publish acks are in.
func (s *Scorer) acker(ackq <-chan *batch, abort <-chan struct{}) {
	var again []*item
	for b := range ackq {
		if s.opts.beforeSettle != nil {
			s.opts.beforeSettle(len(b.items))
		}
		deadline, stop := closeAfter(time.Until(b.published.Add(s.cfg.PublishTimeout + 2*time.Second)))
		again = again[:0]
		for i := range b.items {
			if s.settle(&b.items[i], deadline, abort) {
				again = append(again, &b.items[i])
			}
		}
		stop()
		if len(again) > 0 {
			// Predictions that failed on the last allowed delivery: their
			// dead letters.
			for _, it := range again {
				msg, err := s.outMsg(b.set, it)
				if err != nil {
					it.pubErr = err
					continue
				}
				it.fut, it.pubErr = s.pub.PublishMsgAsync(msg)
			}
			deadline, stop := closeAfter(s.cfg.PublishTimeout + 2*time.Second)
			for _, it := range again {
				s.settle(it, deadline, abort)
			}
			stop()
		}
		var weight int64
		for i := range b.items {
			weight += payloadWeight(b.items[i].msg)
		}
		s.budget.Release(weight)
		s.putBatch(b)
	}
}

// settle acks, NAKs or terminates one record according to its verdict and
// its publish ack. It returns true when the record became a dead letter that
// still has to be published (its prediction failed on the last delivery).
func (s *Scorer) settle(it *item, deadline <-chan struct{}, abort <-chan struct{}) (again bool) {
	if it.verdict == verdictRetry {
		s.nak(it, s.backoff(it.deliveries))
		s.retried.Add(1)
		s.m.retried.Inc()
		s.m.inflight.Dec()
		return false
	}
	if it.verdict == verdictStored {
		s.settleStored(it)
		s.m.inflight.Dec()
		return false
	}
	ack, err := awaitAck(it, deadline, abort)
	if err != nil {
		if errors.Is(err, errAborted) {
			s.nak(it, 0) // redeliver now, to another scorer
			s.m.inflight.Dec()
			return false
		}
		s.m.publishFailures[it.kind].Inc()
		s.errLog.failed("publishing "+it.kind, err)
		// Only a prediction the server refused for what it is (too large,
		// ...) may turn into a dead letter: a record whose prediction can
		// never be stored is a bad record. A full or unavailable stream is
		// back-pressure, not a bad record, and after a timeout the
		// prediction may be stored; either way the record is retried
		// (without limit) until a publish ack settles it.
		if it.verdict == verdictPredict && publishRejectsMessage(err) && it.deliveries >= uint64(s.cfg.MaxDeliver) {
			it.deadLetter(schemas.StageScore, schemas.Problem{Problem: fmt.Sprintf(
				"publishing the prediction failed on delivery %d of max_deliver %d: %v", it.deliveries, s.cfg.MaxDeliver, err)})
			it.fut, it.pubErr = nil, nil
			return true
		}
		delay := s.backoff(it.deliveries)
		if backPressure(err) {
			s.m.backPressure.Inc()
			// Come back soon: the stream may have room again any moment, and
			// NAKed records hold MaxAckPending slots while they wait.
			delay = min(delay, s.backPressureDelay())
		}
		// A failed dead-letter publish is retried with no limit (the server
		// does not enforce max_deliver), so the record cannot vanish.
		s.nak(it, delay)
		s.retried.Add(1)
		s.m.retried.Inc()
		s.m.inflight.Dec()
		return false
	}
	s.errLog.ok("publishing " + it.kind)
	switch it.verdict {
	case verdictPredict:
		s.settleShadow(it, deadline, abort)
		if ack.Duplicate {
			s.duplicates.Add(1)
			s.m.duplicates.Inc()
		} else {
			s.m.published.Inc()
		}
		if err := it.msg.Ack(); err != nil {
			s.errLog.failed("acking", err)
		} else {
			s.scored.Add(1)
			s.m.scored.Inc()
			s.m.latency.Observe(max(it.scored.Sub(it.storedAt), 0).Seconds())
		}
	case verdictDeadLetter:
		if err := it.msg.TermWithReason("dead-lettered at stage " + string(it.stage)); err != nil {
			s.errLog.failed("terminating", err)
		} else {
			s.deadLettered.Add(1)
			s.m.deadLettered[it.stage].Inc()
			s.log.Debug("record dead-lettered", "stream_seq", it.seq, "stage", it.stage,
				"fields", problemFields(it.reasons), "deliveries", it.deliveries)
		}
	}
	s.m.inflight.Dec()
	return false
}

func (s *Scorer) nak(it *item, delay time.Duration) {
	var err error
	if delay > 0 {
		err = it.msg.NakWithDelay(delay)
	} else {
		err = it.msg.Nak()
	}
	if err != nil {
		s.errLog.failed("naking", err)
	}
}

// awaitAck waits for it's publish ack.
func awaitAck(it *item, deadline <-chan struct{}, abort <-chan struct{}) (*jetstream.PubAck, error) {
	return awaitFuture(it.fut, it.pubErr, deadline, abort)
}

// awaitFuture waits for the publish ack of fut (pubErr: the publish failed
// to start).
func awaitFuture(fut jetstream.PubAckFuture, pubErr error, deadline <-chan struct{}, abort <-chan struct{}) (*jetstream.PubAck, error) {
	if pubErr != nil {
		return nil, pubErr
	}
	if fut == nil {
		return nil, errors.New("nothing published")
	}
	select {
	case a := <-fut.Ok():
		return a, nil
	case err := <-fut.Err():
		return nil, err
	case <-deadline:
		// Only if the library's own timeout did not fire.
		select {
		case a := <-fut.Ok():
			return a, nil
		case err := <-fut.Err():
			return nil, err
		default:
			return nil, jetstream.ErrAsyncPublishTimeout
		}
	case <-abort:
		return nil, errAborted
	}
}

// publishRejectsMessage reports whether the server refused to store a
// message for what it is, so that publishing it again cannot succeed: the
// stream answered with a client error (HTTP-like code 4xx, e.g. 10054
// "message size exceeds maximum allowed"), or the message exceeds the
// server's max_payload. Timeouts and lost connections are not refusals (the
// message may have been stored), and neither is back-pressure.
func publishRejectsMessage(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500
}

// backPressure reports whether a publish error means the stream cannot store
// anything right now, whatever the message: the stream is full with discard
// policy new (10077 "maximum bytes exceeded", "maximum messages exceeded"),
// the server or account is out of storage (10023), the stream is
// unavailable (5xx), or no stream listens on the subject. The record is not
// at fault and is retried without limit; it is never dead-lettered for it.
func backPressure(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code >= 500
	}
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}

// problemFields lists the fields named by reasons: safe to log, unlike the
// problems themselves, which may quote patient values.
func problemFields(ps []schemas.Problem) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		f := p.Field
		if f == "" {
			f = "(payload)"
		}
		out = append(out, f)
	}
	return out
}

// closeAfter returns a channel closed after d, and a func to release it.
func closeAfter(d time.Duration) (<-chan struct{}, func() bool) {
	ch := make(chan struct{})
	t := time.AfterFunc(d, func() { close(ch) })
	return ch, t.Stop
}

// predictIdx scores the records b.idx points at with bm in one call, into
// b.probs (b.probs[k] is the probability of b.items[b.idx[k]]).
func (b *batch) predictIdx(bm BatchModel) error {
	b.rows = b.rows[:0]
	for _, i := range b.idx {
		b.rows = append(b.rows, [schemas.NumFeatures]float64(b.items[i].rec.Features))
	}
	if cap(b.probs) < len(b.idx) {
		b.probs = make([]float64, len(b.idx))
	}
	b.probs = b.probs[:len(b.idx)]
	return predictBatch(bm, b.rows, b.probs)
}
