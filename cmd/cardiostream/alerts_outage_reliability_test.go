//go:build reliability

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/monitor/webhook"
	"github.com/cardiostream/cardiostream/schemas"
)

// Receiver behaviours during the outage test.
const (
	modeUnavailable int32 = iota // 503
	modeSlow                     // processes, then answers after the sender's timeout
	modeHealthy                  // 204 at once
)

// rawDelivery is one request the outage receiver saw.
type rawDelivery struct {
	id     string
	header http.Header
	body   []byte
	at     time.Time
	status int
	err    error // Verify's verdict
}

// outageReceiver verifies every request, processes each delivery id once
// (the documented receiver), and answers according to its mode.
type outageReceiver struct {
	secret []byte
	mode   atomic.Int32
	slow   time.Duration

	mu        sync.Mutex
	raw       []rawDelivery
	processed []string // delivery ids in the order first processed
	seen      map[string]bool
}

func (rc *outageReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	d := rawDelivery{id: r.Header.Get(webhook.HeaderDelivery), header: r.Header.Clone(), body: body, at: time.Now()}
	d.err = webhook.Verify(rc.secret, r.Header, body, d.at, webhook.DefaultSignatureTolerance)
	mode := rc.mode.Load()
	rc.mu.Lock()
	switch {
	case d.err != nil:
		d.status = http.StatusUnauthorized
	case mode == modeUnavailable:
		d.status = http.StatusServiceUnavailable
	default:
		d.status = http.StatusNoContent
		if !rc.seen[d.id] {
			rc.seen[d.id] = true
			rc.processed = append(rc.processed, d.id)
		}
	}
	rc.raw = append(rc.raw, d)
	rc.mu.Unlock()
	if mode == modeSlow && d.status == http.StatusNoContent {
		// Processed, but the answer comes after the sender gave up: it
		// will send the alert again.
		select {
		case <-time.After(rc.slow):
		case <-r.Context().Done():
		}
	}
	w.WriteHeader(d.status)
}

func (rc *outageReceiver) snapshot() ([]rawDelivery, []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.raw), slices.Clone(rc.processed)
}

// TestAlertDeliveryThroughOutages drives a `cardiostream monitor` OS process
// whose accuracy rule fires and resolves as the test feeds it joins, while
// its webhook receiver is down (connection refused), then answers 503, then
// (after a SIGKILL and restart of the monitor mid-outage) answers slower
// than the webhook timeout, then recovers. Every alert in ALERTS reaches the
// receiver in order, exactly once after dropping repeats by delivery id;
// every request is signed with a fresh timestamp; a captured request
// replayed later is refused by the documented Go and Python verification.
func TestAlertDeliveryThroughOutages(t *testing.T) {
	const secret = "outage-test-secret-0123456789abcdef"
	const timeout = 500 * time.Millisecond
	ns := natstest.RunServer(t)
	url := ns.ClientURL()
	_, js := natstest.Connect(t, ns)
	natstest.EnsureStreams(t, js, nil)
	subj := schemas.NewSubjects("")

	addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	rules := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(rules, []byte("monitor:\n  rules:\n    - name: accuracy\n      metric: accuracy\n      comparator: \"<\"\n      threshold: 0.80\n      min_samples: 20\n      severity: critical\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"ALERT_WEBHOOK=http://" + addr + "/hooks/cardiostream",
		"ALERT_WEBHOOK_SECRET=" + secret,
		"CARDIOSTREAM_MONITOR__WINDOW_SIZE=20",
		"CARDIOSTREAM_MONITOR__EVALUATION_INTERVAL=50ms",
		"CARDIOSTREAM_WEBHOOK__TIMEOUT=" + timeout.String(),
		"CARDIOSTREAM_WEBHOOK__ACK_WAIT=2s",
		"CARDIOSTREAM_WEBHOOK__INITIAL_BACKOFF=50ms",
		"CARDIOSTREAM_WEBHOOK__MAX_BACKOFF=300ms",
	}
	startMon := func() *osProc {
		p, _ := startMonitorProc(t, url, env, "--config", rules)
		return p
	}
	mon := startMon()

	// flip publishes 20 joins that are all right or all wrong, so the
	// window accuracy (last 20) moves to 1 or 0: one transition per call.
	batch := 0
	flip := func(correct bool) {
		t.Helper()
		batch++
		ctx := context.Background()
		now := time.Now().UTC()
		for i := range 20 {
			id := fmt.Sprintf("b%02d-%02d", batch, i)
			p := schemas.Prediction{SchemaVersion: schemas.Version, RecordID: id, Source: "clinic", Probability: 0.9, Label: 1,
				Threshold: 0.5, Model: schemas.ModelRef{Name: "test", Version: "1"}, ReceivedAt: now, ScoredAt: now, LatencyMS: 1}
			o := schemas.Outcome{SchemaVersion: schemas.Version, RecordID: id, Label: 0, ObservedAt: now}
			if correct {
				o.Label = 1
			}
			for subject, v := range map[string]any{subj.Predictions("clinic"): p, subj.Outcomes("clinic"): o} {
				b, _ := json.Marshal(v)
				if _, err := js.Publish(ctx, subject, b, jetstream.WithMsgID("clinic/"+id)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	alertIDs := func() []string {
		var ids []string
		for _, m := range natstest.StreamMessages(t, js, schemas.StreamAlerts) {
			var a schemas.Alert
			if err := json.Unmarshal(m.Data(), &a); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, a.ID)
		}
		return ids
	}
	waitAlerts := func(n int) {
		t.Helper()
		natstest.Eventually(t, 60*time.Second, func() error {
			if got := len(alertIDs()); got != n {
				return fmt.Errorf("ALERTS holds %d alerts, want %d", got, n)
			}
			return nil
		})
	}
	retries := func() float64 {
		v, _ := metricValue(scrape(t, mon.metricsAddr), "cardiostream_webhook_deliveries_total", "result", "retry")
		return v
	}

	// 1. Receiver down: connection refused.
	flip(false)
	waitAlerts(1)
	natstest.Eventually(t, 30*time.Second, func() error {
		if r := retries(); r < 3 {
			return fmt.Errorf("%v failed attempts while the receiver is down, want 3", r)
		}
		return nil
	})
	refused := retries()

	// 2. The receiver comes up answering 503.
	rc := &outageReceiver{secret: []byte(secret), seen: map[string]bool{}, slow: 2 * timeout}
	rc.mode.Store(modeUnavailable)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	flip(true)
	waitAlerts(2)
	flip(false)
	waitAlerts(3)
	natstest.Eventually(t, 30*time.Second, func() error {
		if raw, _ := rc.snapshot(); len(raw) < 3 {
			return fmt.Errorf("receiver saw %d requests, want 3 (503s)", len(raw))
		}
		return nil
	})

	// 3. The monitor (and its notifier) dies mid-outage and comes back.
	mon.kill(t)
	t.Logf("monitor pid %d killed with SIGKILL during the 503 phase", mon.cmd.Process.Pid)
	rc.mode.Store(modeSlow)
	mon = startMon()

	// 4. Slower than the webhook timeout: each attempt is processed by the
	// receiver but times out at the sender, so it is sent again.
	flip(true)
	waitAlerts(4)
	natstest.Eventually(t, 60*time.Second, func() error {
		raw, _ := rc.snapshot()
		slowOK := 0
		for _, d := range raw {
			if d.status == http.StatusNoContent {
				slowOK++
			}
		}
		if slowOK < 3 {
			return fmt.Errorf("%d slow answers so far, want 3", slowOK)
		}
		return nil
	})

	// 5. Healthy.
	rc.mode.Store(modeHealthy)
	flip(false)
	waitAlerts(5)
	flip(true)
	waitAlerts(6)

	want := alertIDs()
	natstest.Eventually(t, 60*time.Second, func() error {
		if _, processed := rc.snapshot(); len(processed) < len(want) {
			return fmt.Errorf("receiver processed %d of %d alerts", len(processed), len(want))
		}
		return nil
	})
	raw, processed := rc.snapshot()
	if !slices.Equal(processed, want) {
		t.Errorf("receiver processed %v,\nALERTS holds %v: want each once, in order", processed, want)
	}
	statuses := map[int]int{}
	perID := map[string]int{}
	for i, d := range raw {
		statuses[d.status]++
		perID[d.id]++
		if d.err != nil {
			t.Errorf("request %d (%s): signature does not verify: %v", i, d.id, d.err)
		}
		ts, err := strconv.ParseInt(d.header.Get(webhook.HeaderTimestamp), 10, 64)
		if err != nil {
			t.Errorf("request %d: timestamp header %q", i, d.header.Get(webhook.HeaderTimestamp))
		} else if age := d.at.Sub(time.Unix(ts, 0)); age > 5*time.Second || age < -5*time.Second {
			t.Errorf("request %d signed %s before it arrived: each attempt must be signed afresh", i, age)
		}
	}
	repeats := 0
	for _, d := range raw {
		if d.status == http.StatusNoContent {
			repeats++
		}
	}
	repeats -= len(processed)
	if repeats < 1 {
		t.Errorf("no repeated delivery seen: the slow phase should have made the sender retry a processed alert")
	}

	// A captured request replayed later than the tolerance is refused.
	captured := raw[len(raw)-1]
	ts, _ := strconv.ParseInt(captured.header.Get(webhook.HeaderTimestamp), 10, 64)
	later := time.Unix(ts, 0).Add(webhook.DefaultSignatureTolerance + time.Second)
	if err := webhook.Verify([]byte(secret), captured.header, captured.body, later, webhook.DefaultSignatureTolerance); !errors.Is(err, webhook.ErrTimestampOutOfTolerance) {
		t.Errorf("Go Verify of the captured request %s later = %v, want ErrTimestampOutOfTolerance", webhook.DefaultSignatureTolerance+time.Second, err)
	}
	pyVerdict := pythonCheck(t, secret, captured, later)
	if pyVerdict != "rejected: timestamp outside tolerance" {
		t.Errorf("Python recipe on the replayed request says %q, want rejected: timestamp outside tolerance", pyVerdict)
	}
	if fresh := pythonCheck(t, secret, captured, time.Unix(ts, 0)); fresh != "ok" {
		t.Errorf("Python recipe on the captured request at its own time says %q, want ok", fresh)
	}

	t.Logf("FIGURE TestAlertDeliveryThroughOutages alerts=%d processed_once=%d raw_deliveries=%d repeats=%d refused_attempts=%v status_503=%d status_204=%d bad_signatures=%d restarts=1 replay_rejected_go=true replay_rejected_python=%t",
		len(want), len(processed), len(raw), repeats, refused, statuses[http.StatusServiceUnavailable], statuses[http.StatusNoContent], statuses[http.StatusUnauthorized],
		pyVerdict == "rejected: timestamp outside tolerance")
	for _, id := range want {
		t.Logf("delivery %s: %d requests", id, perID[id])
	}
}

// pythonCheck runs the documented Python verify() (docs/examples) on a
// captured request as of now and returns its verdict line.
func pythonCheck(t *testing.T, secret string, d rawDelivery, now time.Time) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CARDIOSTREAM_NO_PYTHON") == "1" {
			return "skipped"
		}
		t.Fatal("python3 not found (set CARDIOSTREAM_NO_PYTHON=1 to skip)")
	}
	bodyFile := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(bodyFile, d.body, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "../../docs/examples/verify_webhook.py", "check", bodyFile,
		d.header.Get(webhook.HeaderTimestamp), d.header.Get(webhook.HeaderSignature), strconv.FormatInt(now.Unix(), 10))
	cmd.Env = append(os.Environ(), "WEBHOOK_SECRET="+secret)
	out, _ := cmd.CombinedOutput()
	return strings.TrimSpace(string(out))
}
