//go:build reliability

package registry_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/registry"
	"github.com/cardiostream/cardiostream/internal/streams"
)

// TestRegistryChangesWhileKVLeaderKilled: a registry handle opened on a
// 3-node cluster (R3 buckets) keeps working when the node leading the KV
// bucket's stream is lost abruptly (SIGKILL of a nats-server OS process):
// a pointer change issued right after the kill, while the survivors have
// not yet elected a new leader, lands once they have, and is audited once.
func TestRegistryChangesWhileKVLeaderKilled(t *testing.T) {
	c := natstest.RunClusterProcesses(t, 3)
	_, js := natstest.ConnectCluster(t, c)
	cfg := registry.DefaultConfig()
	cfg.Streams = streams.DefaultConfig()
	cfg.Streams.Replicas = 3
	// The registry's retries are logged into the test's output.
	r, err := registry.Open(ctx(t), js, cfg, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{js: js, r: r}
	e.push(t, dirV100, "1.0.0")
	e.push(t, dirV110, "1.1.0")
	opts := registry.ChangeOptions{Actor: "tester@host"}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if _, err := r.Activate(ctx(t), v, opts); err != nil {
			t.Fatal(err)
		}
	}

	leader := c.StreamLeader(t, "KV_"+registry.DefaultPointersBucket)
	leader.Kill(t)
	t0 := time.Now()
	res, err := r.Rollback(ctx(t), "", registry.ChangeOptions{Actor: "tester@host", Reason: "leader killed"})
	took := time.Since(t0)
	if err != nil {
		t.Fatalf("rollback %s after the KV leader was killed: %v", took.Round(time.Millisecond), err)
	}
	if res.From != "1.1.0" || res.To != "1.0.0" || res.Unchanged {
		t.Fatalf("rollback: %+v", res)
	}
	if _, err := r.SetShadow(ctx(t), "1.1.0", opts); err != nil {
		t.Fatalf("shadow after failover: %v", err)
	}
	got := strings.Join(actions(auditEntries(t, js)), " ")
	if want := "push push activate activate rollback shadow_set"; got != want {
		t.Fatalf("audit actions %q, want %q", got, want)
	}
	t.Logf("FIGURE TestRegistryChangesWhileKVLeaderKilled rollback_s=%.2f", took.Seconds())
}
