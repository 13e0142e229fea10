package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// SkipJetStreamOutageUnderRace skips tb when the test binary is built with
// the race detector: JetStreamOutage cannot be injected there, because
// nats-server v2.15.2's own EnableJetStream writes what its dispatch of an
// in-flight API request reads (a data race inside nats-server that -race
// reports). Call it before a test's set-up; the plain suite runs the test.
func SkipJetStreamOutageUnderRace(tb testing.TB) {
	tb.Helper()
	if raceEnabled {
		tb.Skip("nats-server's EnableJetStream races with its in-flight API requests; run without -race")
	}
}

// JetStreamOutage disables JetStream on ns, runs do while it is away, and
// enables it again (store dir) after d, as a cluster stream without a
// leader looks to a client: every JetStream request finds no responders.
// d is the fault's length, not an assertion. It fails tb if JetStream
// cannot be enabled again, and returns do's error.
func JetStreamOutage(tb testing.TB, ns *server.Server, dir string, d time.Duration, do func() error) error {
	tb.Helper()
	SkipJetStreamOutageUnderRace(tb)
	if err := ns.DisableJetStream(); err != nil {
		tb.Fatalf("disabling JetStream: %v", err)
	}
	back := make(chan error, 1)
	go func() {
		time.Sleep(d)
		back <- ns.EnableJetStream(&server.JetStreamConfig{StoreDir: dir})
	}()
	err := do()
	if berr := <-back; berr != nil {
		tb.Fatalf("enabling JetStream again: %v", berr)
	}
	return err
}
