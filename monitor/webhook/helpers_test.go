package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

const testSecret = "test-secret-do-not-log-3f9a"

// testEnv is an embedded JetStream server with the cardiostream streams.
type testEnv struct {
	js       jetstream.JetStream
	subjects schemas.Subjects
}

func newTestEnv(tb testing.TB) *testEnv {
	tb.Helper()
	ns := natstest.RunServer(tb)
	_, js := natstest.Connect(tb, ns)
	cfg := natstest.EnsureStreams(tb, js, nil)
	return &testEnv{js: js, subjects: cfg.Subjects()}
}

// testConfig is a config with short timeouts and backoffs for url.
func testConfig(url string) Config {
	cfg := DefaultConfig()
	cfg.URL = url
	cfg.Secret = testSecret
	// Generous: a loaded CI machine must not turn a 200 into a client
	// timeout and an extra attempt.
	cfg.Timeout = 2 * time.Second
	cfg.InitialBackoff = 10 * time.Millisecond
	cfg.MaxBackoff = 50 * time.Millisecond
	cfg.AckWait = 5 * time.Second
	return cfg
}

var alertSeq int

// publishAlert stores an alert on ALERTS as the monitor does (message id =
// alert id) and returns its id and the exact bytes stored.
func (e *testEnv) publishAlert(tb testing.TB, rule string, status schemas.AlertStatus) (string, []byte) {
	tb.Helper()
	alertSeq++
	at := time.Date(2026, 3, 1, 12, 0, alertSeq, 0, time.UTC)
	a := schemas.Alert{
		SchemaVersion: schemas.Version,
		ID:            fmt.Sprintf("%s-%s-%d", rule, status, at.Unix()),
		Rule:          rule,
		Status:        status,
		Severity:      "critical",
		Metric:        "accuracy",
		Comparator:    "<",
		Threshold:     0.8,
		Value:         0.71,
		Samples:       500,
		Summary:       "live accuracy 0.71 < 0.8 over 500 labelled records",
		StartsAt:      at,
		At:            at,
	}
	body, err := json.Marshal(a)
	if err != nil {
		tb.Fatal(err)
	}
	e.publishRaw(tb, e.subjects.Alerts(rule), a.ID, body)
	return a.ID, body
}

func (e *testEnv) publishRaw(tb testing.TB, subject, msgID string, body []byte) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.Publish(ctx, subject, body, jetstream.WithMsgID(msgID)); err != nil {
		tb.Fatalf("publishing alert: %v", err)
	}
}

// consumerInfo returns the delivery consumer's state.
func (e *testEnv) consumerInfo(tb testing.TB, name string) *jetstream.ConsumerInfo {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, schemas.StreamAlerts, name)
	if err != nil {
		tb.Fatalf("consumer %s: %v", name, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		tb.Fatalf("consumer %s info: %v", name, err)
	}
	return info
}

// waitSettled waits until the consumer has nothing pending or in flight.
func (e *testEnv) waitSettled(tb testing.TB, name string) *jetstream.ConsumerInfo {
	tb.Helper()
	var info *jetstream.ConsumerInfo
	natstest.Eventually(tb, 10*time.Second, func() error {
		info = e.consumerInfo(tb, name)
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("consumer: %d pending, %d awaiting ack", info.NumPending, info.NumAckPending)
		}
		return nil
	})
	return info
}

// request is one request a receiver saw, with the status it answered.
type request struct {
	at     time.Time
	header http.Header
	body   []byte
	status int
}

func (r request) id() string { return r.header.Get(HeaderDelivery) }

// receiver is a webhook endpoint that records every request and answers
// what respond says (200 when respond is nil).
type receiver struct {
	mu      sync.Mutex
	reqs    []request
	respond func(n int, r *http.Request, w http.ResponseWriter) int // n counts from 0
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	n := len(rc.reqs)
	respond := rc.respond
	rc.mu.Unlock()
	status := http.StatusOK
	if respond != nil {
		status = respond(n, r, w)
	}
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, request{at: time.Now(), header: r.Header.Clone(), body: body, status: status})
	rc.mu.Unlock()
	w.WriteHeader(status)
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.reqs...)
}

// accepted returns the delivery ids the receiver answered 2xx to, in order.
func (rc *receiver) accepted() []string {
	var ids []string
	for _, r := range rc.requests() {
		if r.status >= 200 && r.status < 300 {
			ids = append(ids, r.id())
		}
	}
	return ids
}

func (rc *receiver) waitAccepted(tb testing.TB, n int) []string {
	tb.Helper()
	natstest.Eventually(tb, 15*time.Second, func() error {
		if got := len(rc.accepted()); got < n {
			return fmt.Errorf("receiver accepted %d alerts, want %d", got, n)
		}
		return nil
	})
	return rc.accepted()
}

func startReceiver(tb testing.TB, rc *receiver) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(rc)
	tb.Cleanup(srv.Close)
	return srv
}

// logBuffer collects log output safely from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// running is a notifier started by startNotifier.
type running struct {
	n    *Notifier
	reg  *prometheus.Registry
	logs *logBuffer
	stop func() // cancels Run and waits for it; idempotent
}

// startNotifier runs a notifier until the test ends (or stop is called). At
// cleanup it checks that the secret and signatures never reached the log.
func startNotifier(tb testing.TB, cfg Config, e *testEnv, opts ...Option) *running {
	tb.Helper()
	reg := prometheus.NewRegistry()
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts = append([]Option{WithVersion("test")}, opts...)
	n, err := New(cfg, e.js, e.subjects, nil, reg, log, opts...)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	stopRun := natstest.RunInBackground(tb, n.Run, 15*time.Second)
	var once sync.Once
	stop := func() {
		stopRun()
		once.Do(func() { checkLogsClean(tb, logs.String()) })
	}
	tb.Cleanup(stop)
	return &running{n: n, reg: reg, logs: logs, stop: stop}
}

func checkLogsClean(tb testing.TB, logs string) {
	tb.Helper()
	for _, leak := range []string{testSecret, "v1=", "/hook-token"} {
		if strings.Contains(logs, leak) {
			tb.Errorf("log contains %q:\n%s", leak, logs)
		}
	}
}

// wantDeliveries compares the deliveries_total counters.
func (r *running) wantDeliveries(tb testing.TB, success, retry, failed int) {
	tb.Helper()
	want := fmt.Sprintf(`
# HELP cardiostream_webhook_deliveries_total Webhook delivery attempts by result: success (accepted), retry (failed, will be retried), failed (alert given up and terminated).
# TYPE cardiostream_webhook_deliveries_total counter
cardiostream_webhook_deliveries_total{result="failed"} %d
cardiostream_webhook_deliveries_total{result="retry"} %d
cardiostream_webhook_deliveries_total{result="success"} %d
`, failed, retry, success)
	if err := testutil.GatherAndCompare(r.reg, strings.NewReader(want), "cardiostream_webhook_deliveries_total"); err != nil {
		tb.Error(err)
	}
}

// eventuallyCounter waits until deliveries_total{result} reaches atLeast.
func (r *running) eventuallyCounter(tb testing.TB, result string, atLeast int) {
	tb.Helper()
	natstest.Eventually(tb, 10*time.Second, func() error {
		mfs, err := r.reg.Gather()
		if err != nil {
			return err
		}
		for _, mf := range mfs {
			if mf.GetName() != "cardiostream_webhook_deliveries_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == result && int(m.GetCounter().GetValue()) >= atLeast {
					return nil
				}
			}
		}
		return fmt.Errorf("deliveries_total{result=%q} below %d", result, atLeast)
	})
}

// freeAddr returns a loopback address nothing listens on (yet).
func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
