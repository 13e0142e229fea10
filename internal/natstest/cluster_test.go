package natstest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

// publishRetrying publishes with a message id until a publish ack arrives:
// while a stream elects a leader a publish gets no responders or times out.
func publishRetrying(t *testing.T, js jetstream.JetStream, subject, id string) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.Publish(ctx, subject, []byte(`{}`), jetstream.WithMsgID(id))
		return err
	})
}

// TestClusterLeaderLossAndRejoin: the cluster helper starts three nodes, the
// cardiostream streams are placed R3 on it, losing the RECORDS leader elects
// another, and the lost node rejoins on its old address and catches up.
func TestClusterLeaderLossAndRejoin(t *testing.T) {
	t0 := time.Now()
	c := natstest.RunCluster(t, 3)
	t.Logf("cluster ready after %s", time.Since(t0))
	leaderLossAndRejoin(t, c, func(nd *natstest.Node) { nd.Shutdown() })
}

func leaderLossAndRejoin(t *testing.T, c *natstest.Cluster, lose func(*natstest.Node)) {
	t0 := time.Now()
	if c.Node("n2") != c.Nodes[1] || c.Node("n9") != nil {
		t.Fatalf("Node lookup: n2=%v n9=%v", c.Node("n2"), c.Node("n9"))
	}
	_, js := natstest.ConnectCluster(t, c)
	cfg := streams.DefaultConfig()
	cfg.Replicas = 3
	natstest.EnsureStreams(t, js, &cfg)

	ctx := context.Background()
	for _, sc := range cfg.StreamConfigs() {
		s, err := js.Stream(ctx, sc.Name)
		if err != nil {
			t.Fatal(err)
		}
		info := s.CachedInfo()
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Errorf("stream %s: replicas %d, cluster %+v; want R3 with 2 followers", sc.Name, info.Config.Replicas, info.Cluster)
		}
	}

	subject := cfg.Subjects().Records("clinic-a")
	for i := range 50 {
		publishRetrying(t, js, subject, fmt.Sprintf("clinic-a/a%d", i))
	}
	old := c.StreamLeader(t, schemas.StreamRecords)
	t.Logf("streams ready after %s", time.Since(t0))
	lose(old)
	if old.Running() || old.Server() != nil || old.LeadsStream(schemas.StreamRecords) {
		t.Fatalf("node %s still running after it was lost", old.Name)
	}
	next := c.StreamLeader(t, schemas.StreamRecords)
	if next == old {
		t.Fatalf("node %s is down but still reported as leader", old.Name)
	}
	t.Logf("new leader after %s", time.Since(t0))
	for i := range 50 {
		publishRetrying(t, js, subject, fmt.Sprintf("clinic-a/b%d", i))
	}
	// A retried publish must not be stored twice.
	publishRetrying(t, js, subject, "clinic-a/b0")

	t.Logf("published after %s", time.Since(t0))
	old.Restart(t)
	c.WaitReady(t, 60*time.Second)
	c.WaitStreamCurrent(t, old, schemas.StreamRecords, 60*time.Second)
	t.Logf("caught up after %s", time.Since(t0))
	st, ok := old.StreamState(schemas.StreamRecords)
	if !ok || st.Msgs != 100 || st.LastSeq != 100 {
		t.Fatalf("rejoined node %s: RECORDS state %+v (ok %v), want 100 messages up to seq 100", old.Name, st, ok)
	}
	// Its client URL is the one clients already hold.
	if srv := old.Server(); srv != nil && srv.ClientURL() != old.ClientURL() {
		t.Errorf("restarted node listens on %s, clients know %s", srv.ClientURL(), old.ClientURL())
	}
}
