package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/internal/natstest"
)

// TestModelLifecycleOnCluster: the model commands work against a 3-node
// cluster (the URL list), the registry's buckets are replicated, and a
// scorer connected to the cluster follows activate and rollback — also
// after the node leading the registry's KV bucket is shut down.
func TestModelLifecycleOnCluster(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	env := testEnviron("USER=release", "CARDIOSTREAM_NATS__URL="+c.URLs(), "CARDIOSTREAM_STREAMS__REPLICAS=3")
	root := filepath.Join("..", "..")
	model := func(args ...string) string {
		t.Helper()
		code, out, errOut := runCmd(t, env, append([]string{"model"}, args...)...)
		if code != 0 {
			t.Fatalf("model %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
		}
		return out
	}
	scorer := start(t, env, "scorer", "--metrics-addr", "127.0.0.1:0")
	serving := func(version string) {
		t.Helper()
		natstest.Eventually(t, 60*time.Second, func() error {
			fams := scrape(t, scorer.info.MetricsAddr)
			if _, ok := metricValue(fams, "cardiostream_scorer_model_info", "version", version); !ok {
				return fmt.Errorf("scorer does not serve %s yet", version)
			}
			return nil
		})
	}
	serving("1.0.0") // the embedded model: no active pointer yet

	model("push", filepath.Join(root, "models", "heart-xgb"), "--version", "1.0.0")
	model("push", filepath.Join(root, "models", "heart-xgb-1.1.0"), "--version", "1.1.0")
	model("activate", "1.0.0", "--reason", "cluster test: the baseline")
	model("activate", "1.1.0", "--reason", "cluster test: the challenger")
	serving("1.1.0")

	_, js := natstest.ConnectCluster(t, c)
	for _, stream := range []string{"KV_CARDIO_MODEL_REGISTRY", "OBJ_CARDIO_MODELS", "AUDIT"} {
		s, err := js.Stream(t.Context(), stream)
		if err != nil {
			t.Fatalf("%s: %v", stream, err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("%s: %d replicas, want 3", stream, r)
		}
	}

	// Lose the node leading the pointers' bucket: a rollback still lands
	// and the scorer follows it.
	leader := c.StreamLeader(t, "KV_CARDIO_MODEL_REGISTRY")
	leader.Shutdown()
	natstest.Eventually(t, 60*time.Second, func() error {
		code, out, errOut := runCmd(t, env, "model", "rollback", "--reason", "node lost")
		if code != 0 {
			return fmt.Errorf("rollback: exit %d: %s%s", code, out, errOut)
		}
		return nil
	})
	serving("1.0.0")
	leader.Restart(t)

	hist := model("history")
	for _, want := range []string{"push", "activate", "rollback"} {
		if !strings.Contains(hist, want) {
			t.Errorf("history lacks %q:\n%s", want, hist)
		}
	}
}
