package scorer

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/schemas"
)

// Outputs already stored beyond the duplicate window.
//
// A record redelivered after its earlier delivery published an output and
// died before acking is normally settled by the output streams' message-id
// deduplication: the republish is answered "duplicate". The server forgets
// ids after the duplicate window, though (streams.duplicate_window, 10 min
// by default), so a record that comes back later than that — a lone scorer
// killed and restarted a quarter of an hour later, a long outage — would get
// a second prediction or dead letter. For such records the scorer looks the
// earlier output up by its message id in PREDICTIONS and DEADLETTER before
// publishing anything; found, the record is settled without a new publish.
//
// Only redelivered records (delivery > 1) stored in RECORDS longer than half
// the duplicate window ago are looked up (half: for clock skew between scorer
// and server), so the scan runs after incidents only, never in the steady
// state. It reads the output messages of the records' sources published
// since the oldest of them was stored: after a crash with a deep backlog
// that can be a long stretch, read once per affected batch (at tens of
// thousands of messages a second), while the records are kept in progress.

// storedScanBatch is the fetch size of the scan.
const storedScanBatch = 1000

// setDuplicateWindow records the shortest duplicate window of the output
// streams; zero (unknown) makes every redelivered record a candidate.
func (s *Scorer) setDuplicateWindow(d time.Duration) { s.dupWindow.Store(int64(d)) }

// needsLookup reports whether it was redelivered so late that the server may
// have forgotten the message id of an output stored on an earlier delivery.
func (s *Scorer) needsLookup(it *item, now time.Time) bool {
	if it.verdict != verdictPredict && it.verdict != verdictDeadLetter {
		return false
	}
	return s.mayNeedLookup(it, now)
}

// mayNeedLookup is needsLookup before decoding: it needs only the record's
// delivery count and store time.
func (s *Scorer) mayNeedLookup(it *item, now time.Time) bool {
	return it.deliveries > 1 && now.Sub(it.storedAt) >= time.Duration(s.dupWindow.Load())/2
}

// outputIDs are the message ids an earlier delivery of it may have
// published: its prediction's (when its id could be read) and its dead
// letter's.
func (s *Scorer) outputIDs(it *item) (prediction, deadLetter string) {
	if it.rec.ID != "" && it.source != InvalidSource {
		prediction = it.source + "/" + it.rec.ID
	}
	return prediction, "dl/" + strconv.FormatUint(it.seq, 10)
}

// skipStored settles, without publishing, the records of b whose output an
// earlier delivery already stored beyond the duplicate window. A record whose
// lookup fails is retried (NAK) rather than risk a second output.
func (s *Scorer) skipStored(b *batch) {
	now := s.now()
	var cands []*item
	for i := range b.items {
		if s.needsLookup(&b.items[i], now) {
			cands = append(cands, &b.items[i])
		}
	}
	if len(cands) == 0 {
		return
	}
	// A scan of a long stretch of PREDICTIONS can outlast AckWait: the
	// candidates are kept from being redelivered meanwhile (InProgress), and
	// the scan is bounded by lookupTimeout, after which they are NAKed and
	// the next delivery tries again.
	ctx, cancel := context.WithTimeout(context.Background(), s.lookupTimeout())
	defer cancel()
	go func() { // the shutdown timeout ends a lookup too
		select {
		case <-s.abort:
			cancel()
		case <-ctx.Done():
		}
	}()
	stopKeepalive := s.keepInProgress(cands)
	defer stopKeepalive()
	want := map[string]bool{}
	since := cands[0].storedAt
	var predSubjects, dlSubjects []string
	for _, it := range cands {
		p, d := s.outputIDs(it)
		if p != "" {
			want[p] = true
			predSubjects = appendUnique(predSubjects, s.subjects.Predictions(it.source))
		}
		want[d] = true
		dlSubjects = appendUnique(dlSubjects, s.subjects.DeadLetter(it.source))
		if it.storedAt.Before(since) {
			since = it.storedAt
		}
	}
	found := map[string]string{} // message id → kind
	err := s.scanStored(ctx, schemas.StreamPredictions, predSubjects, since, want, kindPrediction, found)
	if err == nil {
		err = s.scanStored(ctx, schemas.StreamDeadLetter, dlSubjects, since, want, kindDeadLetter, found)
	}
	if err != nil {
		s.errLog.failed("looking up earlier outputs of late redeliveries", err)
		for _, it := range cands {
			it.verdict = verdictRetry // NAK only: never dead-letter for this
			it.failure = "looking up an earlier output: " + err.Error()
		}
		return
	}
	s.errLog.ok("looking up earlier outputs of late redeliveries")
	for _, it := range cands {
		p, d := s.outputIDs(it)
		switch {
		case p != "" && found[p] != "":
			it.verdict, it.kind = verdictStored, kindPrediction
		case found[d] != "":
			it.verdict, it.kind = verdictStored, kindDeadLetter
		}
	}
	s.log.Info("looked up earlier outputs of records redelivered after the duplicate window",
		"records", len(cands), "already_stored", len(found))
}

// lookupTimeout bounds one lookup: ten AckWaits, at least a minute.
func (s *Scorer) lookupTimeout() time.Duration { return max(10*s.cfg.AckWait, time.Minute) }

// keepInProgress tells the server every AckWait/3 that items are still being
// worked on, until the returned func is called.
func (s *Scorer) keepInProgress(items []*item) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(max(s.cfg.AckWait/3, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, it := range items {
					_ = it.msg.InProgress()
				}
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// scanStored reads the messages of stream on subjects stored since since
// and adds the ids in want it finds to found (as kind).
func (s *Scorer) scanStored(ctx context.Context, stream string, subjects []string, since time.Time, want map[string]bool, kind string, found map[string]string) error {
	if len(subjects) == 0 {
		return nil
	}
	slices.Sort(subjects)
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	if st.CachedInfo().State.Msgs == 0 {
		return nil
	}
	start := since.Add(-time.Second) // server and scorer clocks may differ a little
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Description:       "cardiostream scorer: looking up earlier outputs of late redeliveries",
		FilterSubjects:    subjects,
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy,
		OptStartTime:      &start,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return fmt.Errorf("reading %s: %w", stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = st.DeleteConsumer(dctx, cons.CachedInfo().Name) // else it expires after InactiveThreshold
	}()
	// NumPending at creation is what there is to read: a fetch that comes
	// back short is an error, not the end.
	left := cons.CachedInfo().NumPending
	for left > 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s: %w", stream, err)
		}
		msgs, err := cons.Fetch(int(min(left, storedScanBatch)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("reading %s: %w", stream, err)
		}
		n := 0
		for m := range msgs.Messages() {
			n++
			if id := m.Headers().Get(jetstream.MsgIDHeader); want[id] {
				found[id] = kind
			}
			if md, err := m.Metadata(); err == nil {
				left = md.NumPending
			}
		}
		if err := msgs.Error(); err != nil {
			return fmt.Errorf("reading %s: %w", stream, err)
		}
		if n == 0 {
			return fmt.Errorf("reading %s: no messages while %d remain", stream, left)
		}
	}
	return nil
}

// settleStored acks (prediction) or terminates (dead letter) a record whose
// output an earlier delivery stored; it counts as a duplicate.
func (s *Scorer) settleStored(it *item) {
	s.duplicates.Add(1)
	if it.kind == kindDeadLetter {
		if err := it.msg.TermWithReason("dead letter stored by an earlier delivery"); err != nil {
			s.errLog.failed("terminating", err)
			return
		}
		s.deadLettered.Add(1)
		return
	}
	s.m.duplicates.Inc()
	if err := it.msg.Ack(); err != nil {
		s.errLog.failed("acking", err)
		return
	}
	s.scored.Add(1)
	s.m.scored.Inc()
}

func appendUnique(list []string, v string) []string {
	if slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}
