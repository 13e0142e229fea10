package natstest

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natsserver"
	"github.com/cardiostream/cardiostream/internal/tailbuf"
)

// Account is the account JetStream runs in on test servers (no accounts
// configured: the global account).
const Account = server.DEFAULT_GLOBAL_ACCOUNT

// Cluster is a JetStream cluster of nats-servers on loopback: each node has
// its own random client port, route port and store directory, all kept
// across a restart, so a node can be shut down and brought back as the same
// peer. Nodes are in-process servers (RunCluster) or OS processes
// (RunClusterProcesses, which can also be killed with SIGKILL). Nodes are
// stopped when the test ends.
type Cluster struct {
	Name  string
	Nodes []*Node
}

// Node is one server of a Cluster.
type Node struct {
	Name string

	opts *server.Options // template; cloned for every start
	mu   sync.Mutex
	srv  *server.Server // in-process; nil while down

	// OS-process nodes.
	bin      string
	args     []string
	httpPort int
	proc     *exec.Cmd       // nil while down
	exited   chan struct{}   // closed when proc has exited
	log      *tailbuf.Buffer // proc's last log lines
}

// RunCluster starts an n-node JetStream cluster (file storage, routes on
// 127.0.0.1) and waits until a meta leader sees every peer and every node is
// current, so R-n streams can be placed at once. Set NATSTEST_LOG=1 to see
// the servers' logs.
//
// Route ports are reserved with FreePort before any node starts: a clustered
// JetStream server does not start without its routes, so every node must
// know the others' addresses up front.
func RunCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if n < 3 {
		tb.Fatalf("RunCluster: %d nodes; a JetStream cluster needs at least 3", n)
	}
	// The route ports are chosen free and then bound by the servers; another
	// process can take one in between (tests run in parallel), and that
	// node then never becomes ready. Such a start is retried on new ports.
	var c *Cluster
	for attempt := 1; ; attempt++ {
		var err error
		if c, err = startCluster(tb, n); err == nil {
			break
		}
		if attempt == 3 {
			tb.Fatal(err)
		}
		tb.Logf("starting a %d-node cluster: %v; again on new ports", n, err)
	}
	tb.Cleanup(func() {
		for _, nd := range c.Nodes {
			nd.Shutdown()
		}
	})
	c.WaitReady(tb, 60*time.Second)
	return c
}

// startCluster starts n nodes on fresh route ports; on an error every node
// is shut down again.
func startCluster(tb testing.TB, n int) (*Cluster, error) {
	c := &Cluster{Name: "cardiostream-test"}
	routePorts := make([]int, n)
	for i := range routePorts {
		routePorts[i] = FreePort(tb)
	}
	var routes []*url.URL
	for _, p := range routePorts {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	dir := tb.TempDir()
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		opts := &server.Options{
			ServerName: name,
			Host:       "127.0.0.1",
			// A restarted node comes back on the same client port, so
			// clients holding the URL list find it again; FreePort's ports
			// lie below the ephemeral range, where no outgoing connection
			// takes them while the node is down.
			Port:      FreePort(tb),
			JetStream: true,
			StoreDir:  filepath.Join(dir, name),
			NoSigs:    true,
			NoLog:     true,
			Cluster: server.ClusterOpts{
				Name: c.Name,
				Host: "127.0.0.1",
				Port: routePorts[i],
			},
			Routes: routes,
		}
		c.Nodes = append(c.Nodes, &Node{Name: name, opts: opts})
	}
	// Start them together: each node waits for its routes.
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, nd := range c.Nodes {
		wg.Go(func() { errs[i] = nd.start() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, nd := range c.Nodes {
			nd.Shutdown()
		}
		return nil, err
	}
	return c, nil
}

func (nd *Node) start() error {
	opts := nd.opts.Clone()
	var log *slog.Logger
	if os.Getenv("NATSTEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", nd.Name)
	}
	srv, err := natsserver.StartWithOptions(opts, 30*time.Second, log)
	if err != nil {
		return fmt.Errorf("starting cluster node %s: %w", nd.Name, err)
	}
	nd.mu.Lock()
	nd.srv = srv
	nd.mu.Unlock()
	return nil
}

// Server returns the running in-process server, or nil while the node is
// shut down (and always for an OS-process node).
func (nd *Node) Server() *server.Server {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.srv
}

// Running reports whether the node is up: started, not stopped, and (an
// OS-process node) its process has not exited on its own.
func (nd *Node) Running() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.srv != nil {
		return true
	}
	if nd.proc == nil {
		return false
	}
	select {
	case <-nd.exited:
		return false
	default:
		return true
	}
}

// ClientURL is the node's client URL; it stays the same across restarts.
func (nd *Node) ClientURL() string {
	return fmt.Sprintf("nats://127.0.0.1:%d", nd.opts.Port)
}

// Shutdown stops the node (as losing the machine would, minus the disk) and
// waits until it is down. It does nothing when the node is already down.
func (nd *Node) Shutdown() {
	nd.mu.Lock()
	srv := nd.srv
	nd.srv = nil
	nd.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
	nd.stopProcess(syscall.SIGTERM)
}

// Kill loses an OS-process node abruptly (SIGKILL: no clean shutdown, its
// files as the kill left them) and waits until the process is gone. It
// fails the test for an in-process node.
func (nd *Node) Kill(tb testing.TB) {
	tb.Helper()
	if nd.bin == "" {
		tb.Fatalf("node %s is in-process; Kill needs RunClusterProcesses", nd.Name)
	}
	nd.stopProcess(syscall.SIGKILL)
}

func (nd *Node) stopProcess(sig syscall.Signal) {
	nd.mu.Lock()
	proc, exited := nd.proc, nd.exited
	nd.proc = nil
	nd.mu.Unlock()
	if proc == nil {
		return
	}
	_ = proc.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = proc.Process.Kill()
		<-exited
	}
}

// Restart starts a shut-down node again on the same ports and store
// directory: it rejoins the cluster as the same peer.
func (nd *Node) Restart(tb testing.TB) {
	tb.Helper()
	if nd.Running() {
		tb.Fatalf("node %s is already running", nd.Name)
	}
	start := nd.start
	if nd.bin != "" {
		start = nd.startProcess
	}
	if err := start(); err != nil {
		tb.Fatal(err)
	}
}

// StreamState is the node's own copy of stream's state (not the leader's),
// read from the node's monitoring data; ok is false when the node is down or
// does not host the stream.
func (nd *Node) StreamState(stream string) (state server.StreamState, ok bool) {
	if sd := nd.streamDetail(stream); sd != nil {
		return sd.State, true
	}
	return state, false
}

// LeadsStream reports whether the node is up and leads stream.
func (nd *Node) LeadsStream(stream string) bool {
	if srv := nd.Server(); srv != nil {
		return srv.JetStreamIsStreamLeader(Account, stream)
	}
	sd := nd.streamDetail(stream)
	return sd != nil && sd.Cluster != nil && sd.Cluster.Leader == nd.Name
}

// LeadsConsumer reports whether the node is up and leads the consumer.
func (nd *Node) LeadsConsumer(stream, consumer string) bool {
	if srv := nd.Server(); srv != nil {
		return srv.JetStreamIsConsumerLeader(Account, stream, consumer)
	}
	sd := nd.streamDetail(stream)
	if sd == nil {
		return false
	}
	for _, ci := range sd.Consumer {
		if ci.Name == consumer {
			return ci.Cluster != nil && ci.Cluster.Leader == nd.Name
		}
	}
	return false
}

// jsz is the node's own JetStream monitoring data (its view, not the
// leader's), or nil while it is down or does not answer.
func (nd *Node) jsz() *server.JSInfo {
	if srv := nd.Server(); srv != nil {
		info, err := srv.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
		if err != nil {
			return nil
		}
		return info
	}
	if !nd.Running() {
		return nil
	}
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz?accounts=true&streams=true&consumers=true", nd.httpPort))
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var info server.JSInfo
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&info) != nil {
		return nil
	}
	return &info
}

func (nd *Node) streamDetail(stream string) *server.StreamDetail {
	info := nd.jsz()
	if info == nil {
		return nil
	}
	for _, acc := range info.AccountDetails {
		if acc.Name != Account {
			continue
		}
		for i := range acc.Streams {
			if acc.Streams[i].Name == stream {
				return &acc.Streams[i]
			}
		}
	}
	return nil
}

// URLs is the comma-separated client URL list of every node, as a
// --nats-url value.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i, nd := range c.Nodes {
		urls[i] = nd.ClientURL()
	}
	return strings.Join(urls, ",")
}

// Node returns the node called name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, nd := range c.Nodes {
		if nd.Name == name {
			return nd
		}
	}
	return nil
}

// WaitReady waits until the running nodes agree on a meta leader that knows
// every peer and every running node's meta state is current.
func (c *Cluster) WaitReady(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	if c.Nodes[0].bin != "" {
		if err := c.waitReadyProcesses(timeout); err != nil {
			tb.Fatal(err)
		}
		return
	}
	Eventually(tb, timeout, func() error {
		var leader *server.Server
		for _, nd := range c.Nodes {
			srv := nd.Server()
			if srv == nil {
				continue
			}
			if !srv.JetStreamIsCurrent() {
				return fmt.Errorf("node %s: meta state not current", nd.Name)
			}
			if srv.JetStreamIsLeader() {
				leader = srv
			}
		}
		if leader == nil {
			return fmt.Errorf("no meta leader")
		}
		if peers := leader.JetStreamClusterPeers(); len(peers) != len(c.Nodes) {
			return fmt.Errorf("meta leader %s sees peers %v, want %d", leader.Name(), peers, len(c.Nodes))
		}
		return nil
	})
}

// StreamLeader waits until a running node leads stream and returns it.
func (c *Cluster) StreamLeader(tb testing.TB, stream string) *Node {
	tb.Helper()
	return c.waitLeader(tb, "stream "+stream, func(nd *Node) bool { return nd.LeadsStream(stream) })
}

// ConsumerLeader waits until a running node leads the consumer and returns it.
func (c *Cluster) ConsumerLeader(tb testing.TB, stream, consumer string) *Node {
	tb.Helper()
	return c.waitLeader(tb, "consumer "+stream+"/"+consumer, func(nd *Node) bool { return nd.LeadsConsumer(stream, consumer) })
}

func (c *Cluster) waitLeader(tb testing.TB, what string, leads func(*Node) bool) *Node {
	tb.Helper()
	var found *Node
	Eventually(tb, 30*time.Second, func() error {
		found = c.leader(leads)
		if found == nil {
			return fmt.Errorf("no running node leads %s", what)
		}
		return nil
	})
	return found
}

// leader returns the running node for which leads is true, or nil.
func (c *Cluster) leader(leads func(*Node) bool) *Node {
	for _, nd := range c.Nodes {
		if nd.Running() && leads(nd) {
			return nd
		}
	}
	return nil
}

// WaitStreamCurrent waits until node's copy of stream holds the same last
// sequence and message count as the stream leader's, and returns the time it
// took.
func (c *Cluster) WaitStreamCurrent(tb testing.TB, nd *Node, stream string, timeout time.Duration) time.Duration {
	tb.Helper()
	start := time.Now()
	Eventually(tb, timeout, func() error {
		leader := c.leader(func(nd *Node) bool { return nd.LeadsStream(stream) })
		if leader == nil {
			return fmt.Errorf("no running node leads stream %s", stream)
		}
		want, ok := leader.StreamState(stream)
		if !ok {
			return fmt.Errorf("leader %s has no state for %s", leader.Name, stream)
		}
		got, ok := nd.StreamState(stream)
		if !ok {
			return fmt.Errorf("node %s has no copy of %s yet", nd.Name, stream)
		}
		if got.LastSeq != want.LastSeq || got.Msgs != want.Msgs {
			return fmt.Errorf("node %s: %s last seq %d (%d msgs), leader %s: %d (%d msgs)",
				nd.Name, stream, got.LastSeq, got.Msgs, leader.Name, want.LastSeq, want.Msgs)
		}
		return nil
	})
	return time.Since(start)
}

// ConnectCluster connects to every node's URL (the client fails over between
// them) and closes the connection when the test ends.
func ConnectCluster(tb testing.TB, c *Cluster) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	return connectURL(tb, c.URLs())
}
