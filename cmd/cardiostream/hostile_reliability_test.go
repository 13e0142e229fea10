//go:build reliability

package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

// TestHostileFloodOfLargePayloads publishes a flood of payloads at the
// server's max_payload (1 MiB, 64 times the record limit) to a real
// `cardiostream scorer` process started on that backlog: each becomes a dead letter with the size
// reason, valid records behind them are scored, and the scorer's peak RSS
// is reported.
func TestHostileFloodOfLargePayloads(t *testing.T) {
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns)
	natstest.EnsureStreams(t, js, nil)

	const large, after = 1000, 100
	payload := padRecord("flood", serverMaxPayload)
	ctx := context.Background()
	start := time.Now()
	futs := make([]jetstream.PubAckFuture, 0, large+after)
	for i := range large {
		f, err := js.PublishAsync(fmt.Sprintf("cardio.records.flood%d", i%4), payload)
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, f)
		if len(futs)%64 == 0 {
			waitAcks(t, futs[len(futs)-64:])
		}
	}
	for i := range after {
		f, err := js.PublishAsync("cardio.records.after", []byte(fmt.Sprintf(`{"id":"after-%d","features":{"age":50}}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, f)
	}
	waitAcks(t, futs[len(futs)/64*64:]) // the earlier ones were awaited
	published := time.Since(start)
	// The scorer starts on the whole backlog: its first pull asks for a
	// full batch of 1 MiB messages.
	p := startProcess(t, "scorer", "--nats-url", ns.ClientURL())
	start = time.Now()

	var peak int64
	natstest.Eventually(t, 10*time.Minute, func() error {
		peak = max(peak, vmHWM(t, p.cmd.Process.Pid))
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var n [2]uint64
		for i, name := range []string{schemas.StreamDeadLetter, schemas.StreamPredictions} {
			s, err := js.Stream(sctx, name)
			if err != nil {
				return err
			}
			n[i] = s.CachedInfo().State.Msgs
		}
		if n[0] != large || n[1] != after {
			return fmt.Errorf("%d dead letters (want %d), %d predictions (want %d)", n[0], large, n[1], after)
		}
		return nil
	})
	elapsed := time.Since(start)
	peak = max(peak, vmHWM(t, p.cmd.Process.Pid))
	if err := p.healthy(); err != nil {
		t.Fatal(err)
	}
	// The server never had to cut the scorer off: a slow consumer is
	// disconnected, and redelivered to again after every reconnect.
	if n := ns.NumSlowConsumers(); n != 0 {
		t.Errorf("the server disconnected %d slow consumers; scorer stderr:\n%s", n, p.stderr.String())
	}
	if code := p.terminate(t); code != 0 {
		t.Errorf("exit %d; stderr:\n%s", code, p.stderr.String())
	}
	t.Logf("FIGURE %s payloads=%d payload_bytes=%d valid_after=%d published_s=%.1f settled_after_start_s=%.1f scorer_peak_rss_mib=%d",
		t.Name(), large, len(payload), after, published.Seconds(), elapsed.Seconds(), peak>>20)
}

func waitAcks(t *testing.T, futs []jetstream.PubAckFuture) {
	t.Helper()
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatalf("publish: %v", err)
		case <-time.After(60 * time.Second):
			t.Fatal("publish ack timeout")
		}
	}
}

// vmHWM is the peak resident set size of pid, in bytes.
func vmHWM(t *testing.T, pid int) int64 { return procStatusBytes(pid, "VmHWM:") }
