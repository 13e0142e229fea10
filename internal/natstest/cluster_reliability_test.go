//go:build reliability

package natstest_test

import (
	"testing"

	"github.com/cardiostream/cardiostream/internal/natstest"
)

// TestClusterProcessesKillAndRejoin is TestClusterLeaderLossAndRejoin with
// nats-server OS processes, the RECORDS leader lost to SIGKILL.
func TestClusterProcessesKillAndRejoin(t *testing.T) {
	c := natstest.RunClusterProcesses(t, 3)
	leaderLossAndRejoin(t, c, func(nd *natstest.Node) { nd.Kill(t) })
}
