package natstest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/jsretry"
	"github.com/cardiostream/cardiostream/internal/natsserver"
	"github.com/cardiostream/cardiostream/internal/streams"
)

// RunServer starts a single JetStream server on a random loopback port and
// shuts it down when the test ends.
func RunServer(tb testing.TB) *server.Server {
	tb.Helper()
	return RunServerIn(tb, tb.TempDir())
}

// RunServerIn is RunServer with a given store directory, so a test can
// restart a server on the same data.
func RunServerIn(tb testing.TB, storeDir string) *server.Server {
	tb.Helper()
	return RunServerOn(tb, storeDir, server.RANDOM_PORT)
}

// FreePort returns a loopback TCP port that was free a moment ago, for tests
// that must know a server's address before it starts (a node restarted on
// its old address, a process told where to listen).
//
// The port is drawn at random from below the kernel's ephemeral range
// (ip_local_port_range), and never twice in one test binary. A port from
// "127.0.0.1:0" comes from the ephemeral range, where the kernel also picks
// the local port of every outgoing connection: with tests opening hundreds
// of connections, one could take the port before the server bound it (CI
// saw a cluster node that never became ready). Below that range only
// another listener choosing the same port can.
func FreePort(tb testing.TB) int {
	tb.Helper()
	low := ephemeralLow()
	for range 200 {
		p := freePortMin + rand.IntN(low-freePortMin)
		if _, taken := handedOut.LoadOrStore(p, true); taken {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		return p
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// freePortMin keeps FreePort above the well-known ports tests and defaults
// use (4222, 8222, 9090, …).
const freePortMin = 10000

// handedOut holds every port FreePort returned in this process.
var handedOut sync.Map

// ephemeralLow is the lowest port of the kernel's ephemeral range (Linux
// default 32768; IANA's 49152 where it cannot be read).
var ephemeralLow = sync.OnceValue(func() int {
	low := 49152
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	return max(low, freePortMin+1000)
})

// RunServerOn is RunServerIn on a given port (server.RANDOM_PORT for any).
func RunServerOn(tb testing.TB, storeDir string, port int) *server.Server {
	tb.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  storeDir,
		NoSigs:    true,
		NoLog:     true,
	}
	ns, err := natsserver.StartWithOptions(opts, 10*time.Second, nil)
	if err != nil {
		tb.Fatalf("starting embedded nats-server: %v", err)
	}
	tb.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// Connect connects to ns over loopback TCP and closes the connection when the
// test ends.
func Connect(tb testing.TB, ns *server.Server) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	return connectURL(tb, ns.ClientURL())
}

// connectURL connects to url (one URL or a comma-separated list the client
// fails over between), reconnecting without limit, and closes the
// connection when the test ends.
func connectURL(tb testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(url, nats.Name(tb.Name()), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		tb.Fatalf("connecting to %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// EnsureStreams creates the cardiostream streams with cfg (or the defaults
// when cfg is nil) and returns the config used. Like the processes'
// start-up it sends again a request left unanswered: on a cluster that has
// just elected its meta leader, a stream create can go unanswered (CI saw
// one wait out its whole 10 s), and a loaded machine can take longer than
// one attempt to place five R3 streams. Ensure is idempotent, so a repeat
// after a timeout is safe.
func EnsureStreams(tb testing.TB, js jetstream.JetStream, cfg *streams.Config) streams.Config {
	tb.Helper()
	c := streams.DefaultConfig()
	if cfg != nil {
		c = *cfg
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := jsretry.Do(ctx, 10*time.Second, jsretry.Transient, func(err error) {
		tb.Logf("ensuring streams: %v; retrying", err)
	}, func(ctx context.Context) error { return streams.Ensure(ctx, js, c) })
	if err != nil {
		tb.Fatalf("ensuring streams: %v", err)
	}
	return c
}

// Eventually polls cond every 10ms until it returns nil or timeout passes,
// then fails the test with cond's last error.
func Eventually(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met after %s: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StreamMessages reads every message currently in stream with an ordered
// consumer and returns them in sequence order.
func StreamMessages(tb testing.TB, js jetstream.JetStream, stream string) []jetstream.Msg {
	tb.Helper()
	// A cluster that has just lost or regained a node can refuse a request
	// for a moment (no responders while the consumer's node is elected):
	// the whole read is retried for up to a minute before failing.
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := readStream(js, stream)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%v", err)
		}
		tb.Logf("%v; reading again", err)
		time.Sleep(500 * time.Millisecond)
	}
}

func readStream(js jetstream.JetStream, stream string) ([]jetstream.Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s info: %w", stream, err)
	}
	n := int(info.State.Msgs)
	if n == 0 {
		return nil, nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("ordered consumer on %s: %w", stream, err)
	}
	out := make([]jetstream.Msg, 0, n)
	for len(out) < n {
		batch, err := c.Fetch(n-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("fetching from %s: %w", stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			out = append(out, m)
			got++
		}
		if batch.Error() != nil {
			return nil, fmt.Errorf("fetching from %s: %w", stream, batch.Error())
		}
		if got == 0 {
			return nil, fmt.Errorf("stream %s: read %d of %d messages, then nothing", stream, len(out), n)
		}
	}
	return out, nil
}

// RunInBackground runs a component's Run(ctx) in a goroutine. stop cancels
// its context and waits up to timeout for Run to return, reporting a Run
// error or a hang as a test error; it runs once (later calls do nothing) and
// is also registered as a cleanup.
func RunInBackground(tb testing.TB, run func(context.Context) error, timeout time.Duration) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("Run returned %v, want nil", err)
				}
			case <-time.After(timeout):
				tb.Errorf("Run did not return %s after its context ended", timeout)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}
