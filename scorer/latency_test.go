package scorer

import (
	"fmt"
	"sync"
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
