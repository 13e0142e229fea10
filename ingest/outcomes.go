package ingest

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/schemas"
)

// dueOutcome is an outcome waiting for its publish time.
type dueOutcome struct {
	source  string
	subject string
	tag     msgTag
	label   int
	due     time.Time
}

// scheduler publishes each outcome when it falls due. Every record gets the
// same LabelDelay after its ack, and acks arrive in order, so due times are
// non-decreasing: a FIFO queue and one timer serve every pending outcome
// (no goroutine per record).
type scheduler struct {
	in       chan dueOutcome
	pub      *publisher
	now      func() time.Time
	notSent  func(n int) // outcomes dropped because the replay was cancelled
	finished chan struct{}
}

func newScheduler(pub *publisher, now func() time.Time, notSent func(int)) *scheduler {
	return &scheduler{
		in:       make(chan dueOutcome, 1024),
		pub:      pub,
		now:      now,
		notSent:  notSent,
		finished: make(chan struct{}),
	}
}

// add queues an outcome. It blocks only while the scheduler is busy
// publishing (backpressure from the outcome in-flight window).
func (s *scheduler) add(o dueOutcome) { s.in <- o }

// close stops intake and waits until every queued outcome is published (or
// counted as not sent when ctx ended).
func (s *scheduler) close() {
	close(s.in)
	<-s.finished
}

func (s *scheduler) run(ctx context.Context) {
	defer close(s.finished)
	var (
		queue []dueOutcome
		head  int
		in    = s.in
		timer = time.NewTimer(time.Hour)
	)
	defer timer.Stop()
	for in != nil || head < len(queue) {
		var fire <-chan time.Time
		if head < len(queue) {
			timer.Reset(queue[head].due.Sub(s.now()))
			fire = timer.C
		}
		select {
		case o, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			queue = append(queue, o)
		case <-fire:
			now := s.now()
			for head < len(queue) && !queue[head].due.After(now) {
				if err := s.publish(ctx, queue[head], now); err != nil {
					break // ctx ended; counted below
				}
				queue[head] = dueOutcome{}
				head++
			}
			// Reclaim the consumed prefix once it dominates the slice.
			if head > 1024 && head*2 > len(queue) {
				queue = append(queue[:0], queue[head:]...)
				head = 0
			}
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			n := len(queue) - head
			if in != nil {
				for range in { // keep the record collector from blocking
					n++
				}
			}
			s.notSent(n)
			return
		}
	}
}

func (s *scheduler) publish(ctx context.Context, o dueOutcome, now time.Time) error {
	data, err := json.Marshal(schemas.Outcome{
		SchemaVersion: schemas.Version,
		RecordID:      o.tag.id,
		Label:         o.label,
		ObservedAt:    now.UTC(),
	})
	if err != nil {
		return err // cannot happen: the Outcome type always marshals
	}
	msg := &nats.Msg{
		Subject: o.subject,
		Data:    data,
		Header: nats.Header{
			jetstream.MsgIDHeader:          []string{o.source + "/" + o.tag.id},
			jetstream.ExpectedStreamHeader: []string{schemas.StreamOutcomes},
		},
	}
	return s.pub.publish(ctx, msg, o.tag)
}
