package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natsserver"
	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/monitor"
	"github.com/cardiostream/cardiostream/schemas"
)

// Scenarios of issue 3 run with real OS processes against a JetStream
// server in the test process: SIGTERM under load and start-up in any order
// here (small and fast), the 50,000-record kill -9 run and the server
// restart in crash_reliability_test.go (build tag reliability). Each ends by
// reading RECORDS, PREDICTIONS and DEADLETTER and accounting for every
// record (procCheckExactlyOnce), never by the processes' own counters.

// crashScorerEnv is the environment of the scorers in these tests: a short
// AckWait so records held by a killed scorer come back within seconds (the
// default is 30 s), and quick reconnects.
func crashScorerEnv() []string {
	return procEnv(
		"CARDIOSTREAM_SCORER__ACK_WAIT=10s",
		"CARDIOSTREAM_NATS__RECONNECT_WAIT=100ms",
	)
}

// crashStartScorerOn starts a `cardiostream scorer` process and waits until
// it is ready.
func crashStartScorerOn(tb testing.TB, name, url string) *osProc {
	tb.Helper()
	addr := procMetricsAddr(tb)
	p := procStart(tb, name, crashScorerEnv(), addr, "scorer", "--nats-url", url, "--metrics-addr", addr)
	p.waitReady(tb, 60*time.Second)
	return p
}

// crashStartReplay starts `cardiostream replay` of the UCI files as a process.
func crashStartReplay(tb testing.TB, url string, repeat int, rate float64, extra ...string) *osProc {
	tb.Helper()
	args := append([]string{"replay", "--nats-url", url, "--repeat", fmt.Sprint(repeat), "--rate", fmt.Sprint(rate)}, extra...)
	args = append(args, uciFiles...)
	return procStart(tb, "replay", procEnv(), "", args...)
}

// crashWaitReplay waits for a replay process to exit 0.
func crashWaitReplay(tb testing.TB, p *osProc) {
	tb.Helper()
	if code := p.wait(tb, 5*time.Minute); code != 0 {
		tb.Fatalf("replay exited %d; stderr:\n%s", code, p.tail())
	}
}

// crashWaitOutputs waits until PREDICTIONS and DEADLETTER hold at least n
// messages between them.
func crashWaitOutputs(tb testing.TB, js jetstream.JetStream, n int) {
	tb.Helper()
	natstest.Eventually(tb, 5*time.Minute, func() error {
		out, err := procOutputs(js)
		if err != nil {
			return err
		}
		if out < n {
			return fmt.Errorf("%d of %d outputs", out, n)
		}
		return nil
	})
}

// crashPublishInvalid publishes n invalid records (source "invalid") in the
// background, interleaved with a replay; the channel yields the result.
func crashPublishInvalid(tb testing.TB, js jetstream.JetStream, n int) <-chan error {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	done := make(chan error, 1)
	go func() {
		defer cancel()
		done <- procPublishInvalid(ctx, js, "invalid", n, 20*time.Millisecond)
	}()
	return done
}

// crashAckPending is the number of records the scorer consumer delivered
// and is waiting to have acknowledged.
func crashAckPending(tb testing.TB, js jetstream.JetStream) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, schemas.StreamRecords, streams.ConsumerScorer)
	if err != nil {
		tb.Fatal(err)
	}
	return c.CachedInfo().NumAckPending
}

// TestSIGTERMScorerUnderLoad is the small version of promise 8 for a
// scorer: SIGTERM it while a replay runs, expect exit 0, restart it, and
// find exactly one prediction or dead letter for every record.
func TestSIGTERMScorerUnderLoad(t *testing.T) {
	crashSIGTERMScorer(t, 3, 0)
}

// crashSIGTERMScorer replays the UCI files repeat times at rate records/s
// with one scorer process, SIGTERMs it when a third of the records are
// scored, restarts it and checks the exactly-once result.
func crashSIGTERMScorer(t *testing.T, repeat int, rate float64) {
	start := time.Now()
	ns := natstest.RunServer(t)
	url := ns.ClientURL()
	js := procConnect(t, url)
	const invalid = 200
	total := 920*repeat + invalid

	sc := crashStartScorerOn(t, "scorer-1", url)
	rp := crashStartReplay(t, url, repeat, rate)
	invalidDone := crashPublishInvalid(t, js, invalid)
	crashWaitOutputs(t, js, total/3)

	code, took := sc.sigterm(t, 60*time.Second)
	if code != 0 {
		t.Fatalf("scorer exited %d after SIGTERM; stderr:\n%s", code, sc.tail())
	}
	if !strings.Contains(sc.stderr.String(), "scorer stopped") {
		t.Errorf("the scorer did not log its drain; stderr:\n%s", sc.tail())
	}
	atStop, _ := procOutputs(js)
	stranded := crashAckPending(t, js)

	restarted := crashStartScorerOn(t, "scorer-2", url)
	crashWaitReplay(t, rp)
	if err := <-invalidDone; err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 3*time.Minute, func() error { return procSettled(js, total) })
	l := procCheckExactlyOnce(t, js)
	if l.Records != total || !l.ok() {
		t.Errorf("want %d records each with exactly one output, got %s; %v", total, l, l.Examples)
	}
	if code, _ := restarted.sigterm(t, 60*time.Second); code != 0 {
		t.Errorf("restarted scorer exited %d; stderr:\n%s", code, restarted.tail())
	}
	t.Logf("FIGURE %s %s outputs_at_sigterm=%d ack_pending_after_exit=%d sigterm_exit_seconds=%.2f total_seconds=%.1f",
		t.Name(), l, atStop, stranded, took.Seconds(), time.Since(start).Seconds())
}

// TestMonitorStartsBeforeNATS is promise 9 for the monitor: started while
// nothing listens at its NATS URL it says what it waits for, /readyz is 503
// until it is connected and its consumers exist, then 200, and it joins the
// predictions and outcomes that follow.
func TestMonitorStartsBeforeNATS(t *testing.T) {
	port := natstest.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	addr := procMetricsAddr(t)
	mon := procStart(t, "monitor", procEnv("CARDIOSTREAM_NATS__RECONNECT_WAIT=100ms"), addr,
		"monitor", "--nats-url", url, "--metrics-addr", addr)

	natstest.Eventually(t, 60*time.Second, func() error {
		code, body := mon.readyz()
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "connecting") {
			return fmt.Errorf("/readyz = %d %q, want 503 naming the NATS connection", code, body)
		}
		if !strings.Contains(mon.stderr.String(), "waiting for NATS") {
			return fmt.Errorf("no log line says it waits for NATS yet")
		}
		return nil
	})
	if !strings.Contains(mon.stderr.String(), "127.0.0.1:"+fmt.Sprint(port)) {
		t.Errorf("the waiting log does not name the address it waits for:\n%s", mon.tail())
	}
	// Still not ready a while later: it keeps retrying, it does not give up.
	for range 5 {
		if code, body := mon.readyz(); code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz = %d %q before NATS is up", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-mon.exited:
		t.Fatalf("monitor exited while waiting for NATS: %v; stderr:\n%s", mon.err, mon.tail())
	default:
	}

	natstest.RunServerOn(t, t.TempDir(), port)
	mon.waitReady(t, 60*time.Second)

	js := procConnect(t, url)
	// Ready means set up: its state bucket and audit consumer exist.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, err := js.Consumer(ctx, schemas.StreamAudit, monitor.ConsumerAudit); err != nil {
		t.Errorf("monitor ready but its consumer %s on %s: %v", monitor.ConsumerAudit, schemas.StreamAudit, err)
	}
	if _, err := js.ObjectStore(ctx, monitor.DefaultConfig().StateBucket); err != nil {
		t.Errorf("monitor ready but its state bucket: %v", err)
	}
	cancel()

	sc := crashStartScorerOn(t, "scorer", url)
	rp := procStart(t, "replay", procEnv(), "", append([]string{"replay", "--nats-url", url, "--outcomes", "--label-delay", "0s"}, uciFiles[0])...)
	crashWaitReplay(t, rp)
	natstest.Eventually(t, 2*time.Minute, func() error {
		fams := scrape(t, addr)
		j, _ := metricValue(fams, "cardiostream_monitor_joined_total")
		if j < 303 {
			return fmt.Errorf("monitor joined %v of 303", j)
		}
		return nil
	})
	for _, p := range []*osProc{sc, mon} {
		if code, _ := p.sigterm(t, 60*time.Second); code != 0 {
			t.Errorf("%s exited %d; stderr:\n%s", p.name, code, p.tail())
		}
	}
}

// TestSIGTERMStandaloneReplay is the small version of promise 8 for
// `standalone --replay`: SIGTERM mid-replay, exit 0, restart on the same
// data directory with the same replay, exactly one output per record.
func TestSIGTERMStandaloneReplay(t *testing.T) {
	crashSIGTERMStandalone(t, 3, 0)
}

// crashSIGTERMStandalone runs `standalone --replay` of the UCI files
// (repeat times, rate records/s), SIGTERMs it when a third of the records
// are scored, starts it again on the same data directory and port with the
// same replay (the records already stored are deduplicated by their message
// ids) and checks that every record ends with exactly one output.
func crashSIGTERMStandalone(t *testing.T, repeat int, rate float64) {
	start := time.Now()
	dir := t.TempDir()
	natsAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	total := 920 * repeat
	run := func(name string, rate float64) *osProc {
		addr := procMetricsAddr(t)
		args := []string{"standalone", "--data-dir", dir, "--nats-listen", natsAddr, "--metrics-addr", addr,
			"--repeat", fmt.Sprint(repeat), "--rate", fmt.Sprint(rate), "--label-delay", "0s", "--replay"}
		p := procStart(t, name, procEnv(), addr, append(args, uciFiles...)...)
		p.waitReady(t, 60*time.Second)
		return p
	}
	first := run("standalone-1", rate)
	js := procConnect(t, "nats://"+natsAddr)
	crashWaitOutputs(t, js, total/3)
	code, took := first.sigterm(t, 60*time.Second)
	if code != 0 {
		t.Fatalf("standalone exited %d after SIGTERM; stderr:\n%s", code, first.tail())
	}

	second := run("standalone-2", 0)
	natstest.Eventually(t, 3*time.Minute, func() error { return procSettled(js, total) })
	l := procCheckExactlyOnce(t, js)
	if l.Records != total || !l.ok() {
		t.Errorf("want %d records each with exactly one output, got %s; %v", total, l, l.Examples)
	}
	if code, _ := second.sigterm(t, 60*time.Second); code != 0 {
		t.Errorf("restarted standalone exited %d; stderr:\n%s", code, second.tail())
	}
	t.Logf("FIGURE %s %s sigterm_exit_seconds=%.2f total_seconds=%.1f", t.Name(), l, took.Seconds(), time.Since(start).Seconds())
}

// TestRoleRefusedByServerExits: a scorer whose server refuses it (wrong
// token) does not wait forever saying the server may not be running; it
// logs the refusal and exits 1 with it. (Regression: it waited until killed,
// /readyz "connecting", the reason never shown.)
func TestRoleRefusedByServerExits(t *testing.T) {
	port := natstest.FreePort(t)
	ns, err := natsserver.StartWithOptions(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(), Authorization: "the-right-token-0123456789"}, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	url := fmt.Sprintf("nats://a-wrong-token@127.0.0.1:%d", port)
	code, stdout, stderr := runCmd(t, testEnviron("CARDIOSTREAM_NATS__RECONNECT_WAIT=100ms"),
		"scorer", "--nats-url", url, "--metrics-addr", "127.0.0.1:0")
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(strings.ToLower(stderr), "authorization violation") {
		t.Errorf("stderr does not name the refusal:\n%s", stderr)
	}
	if strings.Contains(stdout+stderr, "a-wrong-token") {
		t.Errorf("the token appears in the output:\n%s", stdout+stderr)
	}
}
