//go:build reliability

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
	"github.com/cardiostream/cardiostream/scorer"
)

// kill9 (kill -9) sends SIGKILL and waits for the process to be gone.
func (p *osProc) kill9(tb testing.TB) {
	tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		tb.Fatalf("kill -9 %s: %v", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		tb.Fatalf("%s still running 30s after SIGKILL", p.name)
	}
}

// crashAckWait is CARDIOSTREAM_SCORER__ACK_WAIT of crashScorerEnv.
const crashAckWait = 10 * time.Second

// TestCrashKill9Scorers is promise 1: 50,600 UCI records (replay --repeat
// 55) and 1,000 invalid ones flow into RECORDS on a server in this process
// while two scorer processes score them; a scorer is killed with SIGKILL at
// random points four times and restarted. Every record ends with exactly
// one prediction or dead letter, read from the streams.
func TestCrashKill9Scorers(t *testing.T) {
	start := time.Now()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("random seed %d", seed)

	ns := natstest.RunServerIn(t, t.TempDir())
	url := ns.ClientURL()
	js := procConnect(t, url)
	natstest.EnsureStreams(t, js, nil)
	const (
		repeat  = 55
		invalid = 1000
		kills   = 4
	)
	total := 920*repeat + invalid

	var scorers [2]*osProc
	for i := range scorers {
		scorers[i] = crashStartScorerOn(t, fmt.Sprintf("scorer-%d", i), url)
	}
	rp := crashStartReplay(t, url, repeat, 0)
	invalidDone := crashPublishInvalid(t, js, invalid)

	var lastKill time.Time
	for k := range kills {
		// A random point in the k-th fifth of the run, then a random delay:
		// mid-batch, mid-publish or between batches, whatever it hits.
		frac := 0.08 + 0.2*float64(k) + 0.12*rng.Float64()
		crashWaitOutputs(t, js, int(frac*float64(total)))
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		i := rng.IntN(len(scorers))
		out, _ := procOutputs(js)
		scorers[i].kill9(t)
		lastKill = time.Now()
		t.Logf("kill %d: SIGKILL %s at %d of %d outputs", k+1, scorers[i].name, out, total)
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
		scorers[i] = crashStartScorerOn(t, fmt.Sprintf("scorer-%d-restart-%d", i, k+1), url)
	}
	crashWaitReplay(t, rp)
	if err := <-invalidDone; err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Minute, func() error { return procSettled(js, total) })
	settled := time.Since(lastKill)

	l := procCheckExactlyOnce(t, js)
	if l.Records != total || l.DeadLetters != invalid || !l.ok() {
		t.Errorf("want %d records (%d invalid) each with exactly one output, got %s; %v", total, invalid, l, l.Examples)
	}
	crashCheckWindow(t, js, time.Since(start))
	for _, s := range scorers {
		if code, _ := s.sigterm(t, 60*time.Second); code != 0 {
			t.Errorf("%s exited %d; stderr:\n%s", s.name, code, s.tail())
		}
	}
	t.Logf("FIGURE %s %s redelivered_outputs=%d kills=%d last_kill_to_settled_seconds=%.1f total_seconds=%.1f ack_wait=%s",
		t.Name(), l, l.Redelivered, kills, settled.Seconds(), time.Since(start).Seconds(), crashAckWait)
}

// crashCheckWindow fails the test unless PREDICTIONS remembers message ids
// for longer than a record can be redelivered: the scorers' AckWait ×
// MaxDeliver, and this whole run (a record held by a killed scorer is
// redelivered past MaxDeliver until a publish ack settles it).
func crashCheckWindow(tb testing.TB, js jetstream.JetStream, run time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, schemas.StreamPredictions)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := scorer.DefaultConfig()
	cfg.AckWait = crashAckWait
	window := st.CachedInfo().Config.Duplicates
	if h := cfg.RedeliveryHorizon(); window < h || window < run {
		tb.Errorf("PREDICTIONS duplicate window %s is shorter than the redelivery horizon %s or this run (%s)", window, h, run.Round(time.Second))
	}
	tb.Logf("PREDICTIONS duplicate window %s; redelivery horizon (ack_wait × max_deliver) %s; run %s", window, cfg.RedeliveryHorizon(), run.Round(time.Second))
}

// TestCrashServerRestart is the single-server half of promise 2: the
// JetStream server the scorer processes use is shut down while they score a
// backlog, stays down a few seconds and comes back on the same port and
// store directory. The scorers reconnect and finish on their own (no
// restart of theirs), records published after the restart are scored too,
// and every record has exactly one output.
func TestCrashServerRestart(t *testing.T) {
	start := time.Now()
	dir := t.TempDir()
	port := natstest.FreePort(t)
	ns := natstest.RunServerOn(t, dir, port)
	url := ns.ClientURL()
	js := procConnect(t, url)
	const before, after = 20, 25 // repeats replayed before and after the restart
	crashWaitReplay(t, crashStartReplay(t, url, before, 0))

	monAddr := procMetricsAddr(t)
	mon := procStart(t, "monitor", crashScorerEnv(), monAddr, "monitor", "--nats-url", url, "--metrics-addr", monAddr)
	mon.waitReady(t, time.Minute)
	var scorers [2]*osProc
	for i := range scorers {
		scorers[i] = crashStartScorerOn(t, fmt.Sprintf("scorer-%d", i), url)
	}
	crashWaitOutputs(t, js, 920*before/4)
	atShutdown, _ := procOutputs(js)
	ns.Shutdown()
	ns.WaitForShutdown()
	down := time.Now()
	for _, s := range scorers {
		natstest.Eventually(t, 30*time.Second, func() error {
			if code, body := s.readyz(); code != http.StatusServiceUnavailable {
				return fmt.Errorf("%s /readyz = %d %s during the outage, want 503", s.name, code, body)
			}
			return nil
		})
	}
	// The outage itself: a fixed few seconds is the scenario, not a wait
	// for a condition.
	time.Sleep(3*time.Second - time.Since(down))
	natstest.RunServerOn(t, dir, port)
	outage := time.Since(down)
	up := time.Now()
	for _, s := range scorers {
		s.waitReady(t, 2*time.Minute)
	}
	readyAfter := time.Since(up)
	// Intake after the restart: repeats 0..before-1 again (deduplicated by
	// RECORDS) and new ones up to after.
	rp := crashStartReplay(t, url, after, 0)
	crashWaitReplay(t, rp)
	total := 920 * after
	natstest.Eventually(t, 5*time.Minute, func() error { return procSettled(js, total) })
	settled := time.Since(up)

	l := procCheckExactlyOnce(t, js)
	if l.Records != total || !l.ok() {
		t.Errorf("want %d records each with exactly one output, got %s; %v", total, l, l.Examples)
	}
	// The monitor came back too, and saw every output.
	mon.waitReady(t, time.Minute)
	var seen float64
	natstest.Eventually(t, 2*time.Minute, func() error {
		fams := scrape(t, monAddr)
		p, _ := metricValue(fams, "cardiostream_monitor_predictions_total")
		d, _ := metricValue(fams, "cardiostream_monitor_dead_lettered_total")
		if seen = p + d; int(seen) < total {
			return fmt.Errorf("monitor counted %v of %d outputs", seen, total)
		}
		return nil
	})
	if int(seen) != total {
		t.Errorf("monitor counted %v outputs, want %d", seen, total)
	}
	for _, s := range append(scorers[:], mon) {
		select {
		case <-s.exited:
			t.Errorf("%s exited during the outage (%v); stderr:\n%s", s.name, s.err, s.tail())
			continue
		default:
		}
		if code, _ := s.sigterm(t, 60*time.Second); code != 0 {
			t.Errorf("%s exited %d; stderr:\n%s", s.name, code, s.tail())
		}
	}
	t.Logf("FIGURE %s %s redelivered_outputs=%d outputs_at_shutdown=%d outage_seconds=%.1f scorers_ready_after_restart_seconds=%.1f restart_to_settled_seconds=%.1f total_seconds=%.1f",
		t.Name(), l, l.Redelivered, atShutdown, outage.Seconds(), readyAfter.Seconds(), settled.Seconds(), time.Since(start).Seconds())
}

// TestCrashSIGTERMScorerLarge is promise 8 for a scorer with 18,400
// records and 200 invalid ones.
func TestCrashSIGTERMScorerLarge(t *testing.T) {
	crashSIGTERMScorer(t, 20, 0)
}

// TestCrashSIGTERMStandaloneLarge is promise 8 for `standalone --replay`
// with 18,400 records.
func TestCrashSIGTERMStandaloneLarge(t *testing.T) {
	crashSIGTERMStandalone(t, 20, 0)
}

// TestCrashLoneScorerBackAfterDuplicateWindow: the only scorer is killed
// with SIGKILL mid-backlog and comes back only after the output streams'
// duplicate window has passed (5 s here, 10 min by default), so the server
// no longer deduplicates the outputs it had stored without acking. Every
// record still has exactly one output.
func TestCrashLoneScorerBackAfterDuplicateWindow(t *testing.T) {
	start := time.Now()
	const window = 5 * time.Second
	env := procEnv(
		"CARDIOSTREAM_SCORER__ACK_WAIT=2s",
		"CARDIOSTREAM_SCORER__MAX_DELIVER=2",
		"CARDIOSTREAM_SCORER__PUBLISH_TIMEOUT=1s",
		"CARDIOSTREAM_STREAMS__DUPLICATE_WINDOW="+window.String(),
		"CARDIOSTREAM_NATS__RECONNECT_WAIT=100ms",
	)
	ns := natstest.RunServerIn(t, t.TempDir())
	url := ns.ClientURL()
	js := procConnect(t, url)
	const repeat = 10
	total := 920 * repeat
	rp := procStart(t, "replay", env, "", append([]string{"replay", "--nats-url", url, "--repeat", fmt.Sprint(repeat)}, uciFiles...)...)
	crashWaitReplay(t, rp)

	scorerOn := func(name string) *osProc {
		addr := procMetricsAddr(t)
		p := procStart(t, name, env, addr, "scorer", "--nats-url", url, "--metrics-addr", addr)
		p.waitReady(t, time.Minute)
		return p
	}
	first := scorerOn("scorer-1")
	crashWaitOutputs(t, js, total/3)
	first.kill9(t)
	atKill, _ := procOutputs(js)
	// Away for longer than the window, twice over (the server forgets
	// message ids on a timer): the scenario, not a wait for a condition.
	time.Sleep(3 * window)
	second := scorerOn("scorer-2")
	natstest.Eventually(t, 3*time.Minute, func() error { return procSettled(js, total) })
	l := procCheckExactlyOnce(t, js)
	if l.Records != total || !l.ok() {
		t.Errorf("want %d records each with exactly one output, got %s; %v", total, l, l.Examples)
	}
	if code, _ := second.sigterm(t, time.Minute); code != 0 {
		t.Errorf("scorer exited %d; stderr:\n%s", code, second.tail())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ps, err := js.Stream(ctx, schemas.StreamPredictions)
	if err != nil {
		t.Fatal(err)
	}
	if got := ps.CachedInfo().Config.Duplicates; got != window {
		t.Errorf("PREDICTIONS duplicate window %s, want %s (from the processes' configuration)", got, window)
	}
	t.Logf("FIGURE %s %s redelivered_outputs=%d outputs_at_kill=%d duplicate_window=%s away=%s total_seconds=%.1f",
		t.Name(), l, l.Redelivered, atKill, window, 3*window, time.Since(start).Seconds())
}
