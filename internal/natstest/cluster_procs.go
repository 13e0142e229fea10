package natstest

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/cardiostream/cardiostream/internal/tailbuf"
)

// BuildNATSServer builds the nats-server binary of the module's own
// nats-server version into a test directory and returns its path. The Go
// build cache makes every build after the first one quick.
func BuildNATSServer(tb testing.TB) string {
	tb.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		tb.Fatalf("building nats-server needs the go tool: %v", err)
	}
	bin := filepath.Join(tb.TempDir(), "nats-server")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	return bin
}

// RunClusterProcesses is RunCluster with every node a nats-server OS process
// (built by BuildNATSServer), so that a node can also be lost abruptly with
// Node.Kill. Node.Server is nil for these nodes; leaders and stream states
// are read from each node's monitoring endpoint (/jsz). Set NATSTEST_LOG=1
// to see the servers' logs; a node that exits on its own has its last log
// lines in the test's failure.
func RunClusterProcesses(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if n < 3 {
		tb.Fatalf("RunClusterProcesses: %d nodes; a JetStream cluster needs at least 3", n)
	}
	bin := BuildNATSServer(tb)
	// A port chosen free can still be taken before the node binds it (by a
	// listener of a test running in parallel); that node exits at once.
	// Such a start is retried on new ports, as RunCluster does.
	for attempt := 1; ; attempt++ {
		c, err := startClusterProcesses(tb, bin, n)
		if err == nil {
			err = c.waitReadyProcesses(60 * time.Second)
		}
		if err == nil {
			return c
		}
		if c != nil {
			c.stopProcesses()
		}
		if attempt == 3 || !errors.Is(err, errNodeExited) {
			tb.Fatal(err)
		}
		tb.Logf("starting a %d-node cluster of processes: %v; again on new ports", n, err)
	}
}

func startClusterProcesses(tb testing.TB, bin string, n int) (*Cluster, error) {
	c := &Cluster{Name: "cardiostream-test"}
	routePorts := make([]int, n)
	var routes []string
	for i := range routePorts {
		routePorts[i] = FreePort(tb)
		routes = append(routes, (&url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", routePorts[i])}).String())
	}
	dir := tb.TempDir()
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		port, httpPort := FreePort(tb), FreePort(tb)
		nd := &Node{
			Name:     name,
			opts:     &server.Options{Port: port},
			bin:      bin,
			httpPort: httpPort,
			args: []string{
				"-n", name, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(httpPort),
				"-js", "-sd", filepath.Join(dir, name),
				"--cluster_name", c.Name, "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i]),
				"--routes", strings.Join(routes, ","),
			},
		}
		c.Nodes = append(c.Nodes, nd)
	}
	tb.Cleanup(c.stopProcesses)
	for _, nd := range c.Nodes {
		if err := nd.startProcess(); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (c *Cluster) stopProcesses() {
	for _, nd := range c.Nodes {
		nd.stopProcess(syscall.SIGKILL)
	}
}

// errNodeExited: a node's process ended without being stopped.
var errNodeExited = errors.New("exited on its own")

func (nd *Node) startProcess() error {
	cmd := exec.Command(nd.bin, nd.args...)
	tail := tailbuf.New(8 << 10)
	var logTo io.Writer = tail
	if os.Getenv("NATSTEST_LOG") != "" {
		logTo = io.MultiWriter(tail, os.Stderr)
	}
	cmd.Stdout, cmd.Stderr = logTo, logTo
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting nats-server node %s: %w", nd.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	nd.mu.Lock()
	nd.proc, nd.exited, nd.log = cmd, exited, tail
	nd.mu.Unlock()
	return nil
}

// exitedOnItsOwn is errNodeExited with the node's last log lines when its
// process ended without being stopped, else nil.
func (nd *Node) exitedOnItsOwn() error {
	nd.mu.Lock()
	proc, exited, tail := nd.proc, nd.exited, nd.log
	nd.mu.Unlock()
	if proc == nil {
		return nil
	}
	select {
	case <-exited:
		return fmt.Errorf("nats-server node %s %w (%s); its last log lines:\n%s", nd.Name, errNodeExited, proc.ProcessState, tail)
	default:
		return nil
	}
}

// waitReadyProcesses is WaitReady for OS-process nodes, from their /jsz. It
// returns at once, wrapping errNodeExited, when a node's process has ended.
func (c *Cluster) waitReadyProcesses(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		for _, nd := range c.Nodes {
			if err := nd.exitedOnItsOwn(); err != nil {
				return err
			}
		}
		err := c.readyProcesses()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for _, nd := range c.Nodes {
				nd.mu.Lock()
				tail := nd.log
				nd.mu.Unlock()
				if tail != nil {
					fmt.Fprintf(&logs, "\n--- node %s, last log lines:\n%s", nd.Name, tail)
				}
			}
			return fmt.Errorf("cluster not ready after %s: %w%s", timeout, err, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *Cluster) readyProcesses() error {
	var leader string
	for _, nd := range c.Nodes {
		if !nd.Running() {
			continue
		}
		info := nd.jsz()
		if info == nil || info.Meta == nil {
			return fmt.Errorf("node %s: no JetStream cluster information yet", nd.Name)
		}
		if info.Meta.Leader == "" {
			return fmt.Errorf("node %s: no meta leader", nd.Name)
		}
		if leader != "" && info.Meta.Leader != leader {
			return fmt.Errorf("nodes disagree on the meta leader: %s, %s", leader, info.Meta.Leader)
		}
		leader = info.Meta.Leader
		if info.Meta.Leader == nd.Name {
			current := 0
			for _, r := range info.Meta.Replicas {
				if r.Current && !r.Offline {
					current++
				}
			}
			if want := c.runningCount() - 1; current < want || info.Meta.Size != len(c.Nodes) {
				return fmt.Errorf("meta leader %s: %d current followers of %d, cluster size %d", nd.Name, current, want, info.Meta.Size)
			}
		}
	}
	if leader == "" {
		return fmt.Errorf("no meta leader")
	}
	return nil
}

func (c *Cluster) runningCount() int {
	n := 0
	for _, nd := range c.Nodes {
		if nd.Running() {
			n++
		}
	}
	return n
}
