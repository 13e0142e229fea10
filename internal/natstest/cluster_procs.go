package natstest

import (
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
// to see the servers' logs.
func RunClusterProcesses(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if n < 3 {
		tb.Fatalf("RunClusterProcesses: %d nodes; a JetStream cluster needs at least 3", n)
	}
	bin := BuildNATSServer(tb)
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
	tb.Cleanup(func() {
		for _, nd := range c.Nodes {
			nd.stopProcess(syscall.SIGKILL)
		}
	})
	for _, nd := range c.Nodes {
		if err := nd.startProcess(); err != nil {
			tb.Fatal(err)
		}
	}
	c.WaitReady(tb, 60*time.Second)
	return c
}

func (nd *Node) startProcess() error {
	cmd := exec.Command(nd.bin, nd.args...)
	var logTo io.Writer = io.Discard
	if os.Getenv("NATSTEST_LOG") != "" {
		logTo = os.Stderr
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
	nd.proc, nd.exited = cmd, exited
	nd.mu.Unlock()
	return nil
}

// waitReadyProcesses is WaitReady for OS-process nodes, from their /jsz.
func (c *Cluster) waitReadyProcesses(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	Eventually(tb, timeout, func() error {
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
	})
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
