package ingest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

// recordMsg is a record message with its message id, as Replay sends it.
func recordMsg(i int) *nats.Msg {
	m := nats.NewMsg(schemas.NewSubjects("").Records("t"))
	m.Data = []byte(`{}`)
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("t/%d", i))
	return m
}

// TestAwaitPrefersArrivedAck is a regression test: when the collector runs
// behind (it was retrying), a message's ack has arrived and its deadline
// has passed at the same time. await must return the ack; it used to pick
// at random between the two, so about half the stored messages were
// retried, each after RetryBackoff, and a replay that had fallen behind
// once (a cluster node loss) crawled at ~20 records/s for minutes.
func TestAwaitPrefersArrivedAck(t *testing.T) {
	js := testJetStream(t)
	p := newPublisher(js, "record", DefaultConfig(), testLogger(t), nil, nil)
	const n = 200
	its := make([]inflight, n)
	for i := range its {
		m := recordMsg(i)
		fut, err := js.PublishMsgAsync(m)
		if err != nil {
			t.Fatal(err)
		}
		its[i] = inflight{msg: m, fut: fut, sent: time.Now().Add(-time.Hour)}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publish acks did not arrive")
	}
	timer := time.NewTimer(time.Hour)
	late := 0
	for _, it := range its {
		if _, err := p.await(t.Context(), it, timer); err != nil {
			late++
		}
	}
	if late != 0 {
		t.Errorf("%d of %d acked messages reported as failed because their deadline had also passed", late, n)
	}
}

// TestRetriesAfterRecoveryDoNotBackOff is a regression test: the messages
// in flight when a stream became unavailable all fail; once a retry
// succeeds, the rest are retried at once, not each after RetryBackoff
// (which, for up to MaxInFlight messages in turn, kept a replay stalled for
// minutes after a cluster node loss). Every message is still stored once.
func TestRetriesAfterRecoveryDoNotBackOff(t *testing.T) {
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns) // no streams yet: publishes get no responders
	cfg := DefaultConfig()
	const n = 50
	var (
		mu     sync.Mutex
		sleeps []time.Duration
		errs   []error
	)
	p := newPublisher(js, "record", cfg, testLogger(t), func(_ msgTag, _ *jetstream.PubAck, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
		}
	}, func(err error) { t.Errorf("replay aborted: %v", err) })
	p.sleep = func(context.Context, time.Duration) bool {
		mu.Lock()
		sleeps = append(sleeps, cfg.RetryBackoff)
		first := len(sleeps) == 1
		mu.Unlock()
		if first {
			natstest.EnsureStreams(t, js, nil) // the outage ends
		}
		return true
	}
	for i := range n {
		if err := p.publish(t.Context(), recordMsg(i), msgTag{id: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete(): // every publish failed: no stream
	case <-time.After(30 * time.Second):
		t.Fatal("publishes did not resolve")
	}
	go p.run(t.Context())
	p.close()

	if len(errs) != 0 {
		t.Errorf("%d messages failed: %v", len(errs), errs[0])
	}
	if len(sleeps) != 1 {
		t.Errorf("%d backoffs taken for %d messages lost in one outage, want 1", len(sleeps), n)
	}
	if got := len(readStream(t, js, schemas.StreamRecords)); got != n {
		t.Errorf("RECORDS holds %d messages, want %d", got, n)
	}
}
