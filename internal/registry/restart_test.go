package registry_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/registry"
)

// TestRegistrySurvivesServerRestart: versions, pointers and the audit trail
// are on disk, and a Watch opened before the restart (as a scorer holds
// one) sees a pointer change made after it. Without the poll backstop
// (registry.pointer_poll 1m) the KV watch alone took 19.8 s here, twice.
func TestRegistrySurvivesServerRestart(t *testing.T) {
	dir, port := t.TempDir(), natstest.FreePort(t)
	ns := natstest.RunServerOn(t, dir, port)
	url := ns.ClientURL()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{js: js, r: openRegistry(t, js, nil)}
	e.push(t, dirV100, "1.0.0")
	e.push(t, dirV110, "1.1.0")
	opts := registry.ChangeOptions{Actor: "tester@host"}
	if _, err := e.r.Activate(ctx(t), "1.0.0", opts); err != nil {
		t.Fatal(err)
	}
	ch, err := e.r.Watch(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	waitFor := func(version string) {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case p, ok := <-ch:
				if !ok {
					t.Fatal("watch closed")
				}
				if p.Active != nil && p.Active.Version == version {
					return
				}
			case <-timeout:
				t.Fatalf("watch never showed %s active", version)
			}
		}
	}
	waitFor("1.0.0")

	t0 := time.Now()
	ns.Shutdown()
	ns.WaitForShutdown()
	natstest.RunServerOn(t, dir, port)
	natstest.Eventually(t, 30*time.Second, func() error {
		if !nc.IsConnected() {
			return fmt.Errorf("not reconnected")
		}
		return nil
	})

	t1 := time.Now()
	// Another process (its own connection) activates 1.1.0 after the restart.
	other := openRegistry(t, natstestJS(t, url), nil)
	natstest.Eventually(t, 30*time.Second, func() error {
		_, err := other.Activate(ctx(t), "1.1.0", opts)
		return err
	})
	t2 := time.Now()
	waitFor("1.1.0")
	t.Logf("FIGURE TestRegistrySurvivesServerRestart restart_reconnect_s=%.2f activate_s=%.2f watch_after_activate_s=%.2f",
		t1.Sub(t0).Seconds(), t2.Sub(t1).Seconds(), time.Since(t2).Seconds())
	hist, err := e.r.History(ctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 4 {
		t.Fatalf("history after restart: %d entries, want 4 (2 pushes, 2 activations)", len(hist))
	}
	if _, err := e.r.Fetch(ctx(t), "1.0.0"); err != nil {
		t.Fatalf("artifact after restart: %v", err)
	}
}

func natstestJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
