package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

// TestStandaloneSIGTERM runs `cardiostream standalone` as a real process,
// scores a record published by an ordinary NATS client, sends SIGTERM and
// expects a drained exit 0.
func TestStandaloneSIGTERM(t *testing.T) {
	natsAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	var stderr syncBuffer
	cmd := exec.Command(os.Args[0], "standalone", "--data-dir", t.TempDir(), "--nats-listen", natsAddr, "--metrics-addr", metricsAddr)
	cmd.Env = append(testEnviron(), "CARDIOSTREAM_TEST_RUN_MAIN=1")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})

	natstest.Eventually(t, 60*time.Second, func() error {
		resp, err := http.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz %s", resp.Status)
		}
		return nil
	})
	js := connectTo(t, "nats://"+natsAddr)
	rec := `{"id":"sig-1","features":{"age":63,"sex":1,"cp":1,"trestbps":145,"chol":233,"fbs":1,"restecg":2,"thalach":150,"exang":0,"oldpeak":2.3,"slope":3,"ca":0,"thal":6}}`
	if _, err := js.Publish(context.Background(), "cardio.records.clinic-a", []byte(rec), jetstream.WithMsgID("clinic-a/sig-1")); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, func() error {
		if n := len(natstest.StreamMessages(t, js, schemas.StreamPredictions)); n != 1 {
			return fmt.Errorf("%d predictions", n)
		}
		return nil
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no exit within 60s of SIGTERM; stderr:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "stopped") {
		t.Errorf("stderr does not say it stopped:\n%s", stderr.String())
	}
}

// TestStopDuringStartup cancels standalone (as SIGTERM does) at once after it
// starts serving, while its components are still setting up: that is a
// clean shutdown too, exit 0, every time.
func TestStopDuringStartup(t *testing.T) {
	for i := 0; i < 12; i++ {
		r := start(t, testEnviron(), "standalone", "--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
		// Stop at a different point of the start-up each time (not waiting
		// for a condition: the spread is the point).
		time.Sleep(time.Duration(i) * 2 * time.Millisecond)
		if code := r.stop(t); code != 0 {
			t.Fatalf("run %d: exit %d after an early stop; stderr:\n%s", i, code, r.stderr.String())
		}
	}
}

// TestAPIKeyGuardsEmbeddedServer: with API_KEY set, the embedded server
// refuses clients without it and serves clients that present it, and the
// system itself (which uses it) still scores.
func TestAPIKeyGuardsEmbeddedServer(t *testing.T) {
	const key = "clinic-key-0123456789abcdef"
	natsAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	sys := start(t, testEnviron("API_KEY="+key), "standalone", "--data-dir", t.TempDir(), "--nats-listen", natsAddr, "--metrics-addr", "127.0.0.1:0")

	if nc, err := nats.Connect("nats://"+natsAddr, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a client without the API key was let in")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("refusal %q does not say authorization", err)
	}
	js := connectTo(t, "nats://"+key+"@"+natsAddr)
	rec := `{"id":"key-1","features":{"age":50,"sex":0,"cp":3}}`
	if _, err := js.Publish(context.Background(), "cardio.records.clinic-a", []byte(rec)); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, func() error {
		if n := len(natstest.StreamMessages(t, js, schemas.StreamPredictions)); n != 1 {
			return fmt.Errorf("%d predictions", n)
		}
		return nil
	})
	if strings.Contains(sys.stderr.String(), key) {
		t.Error("the API key appears in the logs")
	}
}
