package scorer

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

// TestPublishingDoesNotWaitForEarlierPublishAcks holds the acker on the
// first batch (as a publish ack that is slow to come back would) and feeds
// records one at a time: each must still be scored and its prediction
// stored while that batch is unsettled. Only then are the records acked,
// each exactly once.
//
// Regression: the worker handed batches to the acker through a queue of
// 2 × workers, so after four batches it stopped, and records delivered
// meanwhile waited unpublished until the slow ack arrived. At 5,000
// records/s that put the pipeline's p99 at 5-6x the bare relay's
// (BENCHMARKS.md, "Latency").
func TestPublishingDoesNotWaitForEarlierPublishAcks(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	// No redelivery while the first batch is held.
	cfg.AckWait = 30 * time.Second
	cfg.PublishTimeout = 5 * time.Second

	release := make(chan struct{})
	var releaseOnce, heldOnce sync.Once
	held := make(chan struct{})
	r := e.start(t, cfg, fakeModel{}, withBeforeSettle(func(int) {
		heldOnce.Do(func() {
			close(held)
			<-release
		})
	}))
	defer releaseOnce.Do(func() { close(release) })

	const n = 20 // well past the old queue's 2 batches + 1 in the acker + 1 in the worker
	for i := range n {
		e.publish(t, e.subjects.Records("lat"), recordJSON(fmt.Sprintf("one-%d", i), i))
		if i == 0 {
			select {
			case <-held:
			case <-time.After(30 * time.Second):
				t.Fatal("the acker never received the first batch")
			}
		}
		// One record per batch: the next is published once this one's
		// prediction is stored, with the first batch still unsettled.
		want := uint64(i + 1)
		natstest.Eventually(t, 20*time.Second, func() error {
			if got := e.streamCount(t, schemas.StreamPredictions); got != want {
				return fmt.Errorf("%d predictions stored with the first batch unsettled, want %d", got, want)
			}
			return nil
		})
	}
	if st := r.s.Stats(); st.Scored != 0 {
		t.Fatalf("%d records acked while the first batch was held", st.Scored)
	}

	releaseOnce.Do(func() { close(release) })
	e.settled(t, 30*time.Second)
	ps := e.predictions(t)
	if len(ps) != n || len(uniqueIDs(t, ps)) != n {
		t.Errorf("%d predictions (%d unique) for %d records", len(ps), len(uniqueIDs(t, ps)), n)
	}
	if dl := e.streamCount(t, schemas.StreamDeadLetter); dl != 0 {
		t.Errorf("%d dead letters, want 0", dl)
	}
}

// holdModel is fakeModel, except that scoring a record whose age is in hold
// blocks until that age's channel is closed; held[age] is closed when it
// starts blocking.
type holdModel struct {
	fakeModel
	hold map[float64]chan struct{}
	held map[float64]chan struct{}
	once map[float64]*sync.Once
}

func (m holdModel) Predict(f *[schemas.NumFeatures]float64) float64 {
	if release, ok := m.hold[f[schemas.Age]]; ok {
		m.once[f[schemas.Age]].Do(func() { close(m.held[f[schemas.Age]]) })
		<-release
	}
	return m.fakeModel.Predict(f)
}

// TestBatchPublishesItsFirstRecordsBeforeScoringTheRest holds the worker
// until eight records are buffered, so they form one batch, and holds the
// scoring of the last of them: the predictions of the seven before it must
// be stored meanwhile, then every record acked exactly once.
//
// Regression: a batch was decoded and scored whole before any of it was
// published, so the first record of a catch-up batch (the one that had
// already waited longest, after a scheduling hiccup) also waited for the
// decoding and scoring of all the others; the relay publishes each record
// as it takes it. At 5,000 records/s, records in batches of 16 or more
// waited a median 0.43 ms from the worker taking the batch to their
// publish, 0.26 ms with chunks (BENCHMARKS.md, "Latency at 5,000/s, second
// pass").
func TestBatchPublishesItsFirstRecordsBeforeScoringTheRest(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.AckWait = 30 * time.Second // no redelivery while a record is held
	cfg.PublishTimeout = 5 * time.Second

	// recordJSON(id, i) has age 30 + i: i = 0 is the gate, i = 8 the held one.
	const gateAge, holdAge, n = 30, 38, 8
	m := holdModel{
		hold: map[float64]chan struct{}{gateAge: make(chan struct{}), holdAge: make(chan struct{})},
		held: map[float64]chan struct{}{gateAge: make(chan struct{}), holdAge: make(chan struct{})},
		once: map[float64]*sync.Once{gateAge: {}, holdAge: {}},
	}
	var queued atomic.Int64
	e.start(t, cfg, m, withIntake(func() { queued.Add(1) }))
	releaseOnce := map[float64]*sync.Once{gateAge: {}, holdAge: {}}
	release := func(age float64) { releaseOnce[age].Do(func() { close(m.hold[age]) }) }
	defer release(gateAge)
	defer release(holdAge)

	waitClosed := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s never happened", what)
		}
	}
	e.publish(t, e.subjects.Records("chunks"), recordJSON("gate", 0))
	waitClosed(m.held[gateAge], "scoring the gate record")
	for i := 1; i <= n; i++ {
		e.publish(t, e.subjects.Records("chunks"), recordJSON(fmt.Sprintf("rec-%d", i), i))
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		if got := queued.Load(); got != 1+n {
			return fmt.Errorf("%d records queued for the worker, want %d", got, 1+n)
		}
		return nil
	})
	release(gateAge) // the worker takes the eight buffered records as one batch
	waitClosed(m.held[holdAge], "scoring the last record of the batch")

	// The gate's prediction and those of the seven records before the held one.
	natstest.Eventually(t, 20*time.Second, func() error {
		if got := e.streamCount(t, schemas.StreamPredictions); got != n {
			return fmt.Errorf("%d predictions stored while the batch's last record is being scored, want %d", got, n)
		}
		return nil
	})

	release(holdAge)
	e.settled(t, 30*time.Second)
	ps := e.predictions(t)
	if len(ps) != 1+n || len(uniqueIDs(t, ps)) != 1+n {
		t.Errorf("%d predictions (%d unique) for %d records", len(ps), len(uniqueIDs(t, ps)), 1+n)
	}
	if dl := e.streamCount(t, schemas.StreamDeadLetter); dl != 0 {
		t.Errorf("%d dead letters, want 0", dl)
	}
}
