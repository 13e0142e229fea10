package scorer

import (
	"fmt"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

// TestRedeliveryAfterDuplicateWindowStoresNoSecondOutput: a scorer publishes
// predictions (and dead letters) and dies before acking them; no scorer runs
// for longer than the output streams' duplicate window, so the server has
// forgotten the message ids when the records come back. The next scorer
// must still not store a second prediction or dead letter for them.
// (Regression: it did, breaking exactly-once after a scorer crash followed
// by a restart later than streams.duplicate_window, 10 min by default.)
func TestRedeliveryAfterDuplicateWindowStoresNoSecondOutput(t *testing.T) {
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns)
	sc := streams.DefaultConfig()
	sc.DuplicateWindow = 2 * time.Second
	c := natstest.EnsureStreams(t, js, &sc)
	e := &env{ns: ns, js: js, subjects: c.Subjects()}

	const n, bad = 200, 20
	// Invalid ones first, so the batch published before the crash holds
	// dead letters as well as predictions.
	for i := range bad {
		e.publish(t, e.subjects.Records("c"), fmt.Appendf(nil, `{"id":"bad-%d","features":{"sex":7}}`, i))
	}
	e.publishRecords(t, "c", "r", n)
	cfg := testConfig()
	atCrash := e.crashBeforeAck(t, cfg)
	if atCrash == 0 {
		t.Fatal("nothing was stored before the crash")
	}
	// Let the duplicate window pass, twice over (the server forgets ids on
	// a timer): this is the scenario, not a wait for a condition.
	time.Sleep(3 * sc.DuplicateWindow)

	b := e.start(t, cfg, fakeModel{})
	natstest.Eventually(t, 60*time.Second, func() error {
		if st := b.s.Stats(); st.Scored+st.DeadLettered < n+bad {
			return fmt.Errorf("scorer B settled %d of %d", st.Scored+st.DeadLettered, n+bad)
		}
		return nil
	})
	e.settled(t, 10*time.Second)
	ps := e.predictions(t)
	if len(ps) != n || len(uniqueIDs(t, ps)) != n {
		t.Errorf("%d predictions (%d unique) for %d valid records", len(ps), len(uniqueIDs(t, ps)), n)
	}
	if dl := e.deadLetters(t); len(dl) != bad || e.streamCount(t, schemas.StreamDeadLetter) != bad {
		t.Errorf("%d dead letters for %d invalid records", e.streamCount(t, schemas.StreamDeadLetter), bad)
	}
	if st := b.s.Stats(); st.Duplicates < atCrash {
		t.Errorf("scorer B found %d outputs already stored, want at least %d (stored before the crash)", st.Duplicates, atCrash)
	}
}
