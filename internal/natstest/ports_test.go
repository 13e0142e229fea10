package natstest

import (
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFreePort: the ports are distinct, bindable, and outside the range
// the kernel hands to outgoing connections.
func TestFreePort(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 50 {
		p := FreePort(t)
		if p < freePortMin || p >= low {
			t.Errorf("port %d outside [%d, %d)", p, freePortMin, low)
		}
		if seen[p] {
			t.Errorf("port %d handed out twice", p)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Errorf("port %d: %v", p, err)
			continue
		}
		ln.Close()
	}
}

// TestProcessNodeThatExits: a node whose process ends on its own is not
// reported running, and the readiness wait says so at once with its log
// instead of waiting out its timeout.
func TestProcessNodeThatExits(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	nd := &Node{Name: "n1", bin: sh, args: []string{"-c", "echo 'listen tcp: address already in use' >&2; exit 1"}}
	if err := nd.startProcess(); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Nodes: []*Node{nd}}
	// Waiting out the timeout would end in "not ready", not errNodeExited.
	err = c.waitReadyProcesses(time.Minute)
	if !errors.Is(err, errNodeExited) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("wait: %v; want errNodeExited with the node's log", err)
	}
	if nd.Running() {
		t.Error("an exited node is reported running")
	}
}
