package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

func TestDeliverSignedAlert(t *testing.T) {
	e := newTestEnv(t)
	rc := &receiver{}
	srv := startReceiver(t, rc)
	sent := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	r := startNotifier(t, testConfig(srv.URL+"/hook-token/abc"), e, WithNow(func() time.Time { return sent }))

	id, body := e.publishAlert(t, "accuracy_low", schemas.AlertFiring)
	rc.waitAccepted(t, 1)
	e.waitSettled(t, streams.ConsumerAlertWebhook)

	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver saw %d requests, want 1", len(reqs))
	}
	got := reqs[0]
	if !bytes.Equal(got.body, body) {
		t.Errorf("body = %s, want the stored bytes %s", got.body, body)
	}
	for name, want := range map[string]string{
		"Content-Type":  "application/json",
		"User-Agent":    "cardiostream/test",
		HeaderDelivery:  id,
		HeaderTimestamp: strconv.FormatInt(sent.Unix(), 10),
	} {
		if v := got.header.Get(name); v != want {
			t.Errorf("header %s = %q, want %q", name, v, want)
		}
	}
	if err := Verify([]byte(testSecret), got.header, got.body, sent.Add(time.Second), 0); err != nil {
		t.Errorf("Verify(request) = %v, want nil", err)
	}
	if err := Verify([]byte("another secret"), got.header, got.body, sent, 0); !errors.Is(err, ErrSignatureMismatch) {
		t.Errorf("Verify with the wrong secret = %v, want ErrSignatureMismatch", err)
	}

	r.wantDeliveries(t, 1, 0, 0)
	natstest.Eventually(t, 5*time.Second, func() error {
		if v := testutil.ToFloat64(r.n.m.pending); v != 0 {
			return fmt.Errorf("pending = %v, want 0", v)
		}
		return nil
	})
	if v := testutil.ToFloat64(r.n.m.lastSuccess); v != float64(sent.Unix()) {
		t.Errorf("last_success_timestamp_seconds = %v, want %d", v, sent.Unix())
	}
	if err := r.n.Ready(); err != nil {
		t.Errorf("Ready() = %v, want nil", err)
	}
}

func TestRetryOn503ThenDeliveredOnce(t *testing.T) {
	e := newTestEnv(t)
	rc := &receiver{respond: func(n int, _ *http.Request, _ http.ResponseWriter) int {
		if n < 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}}
	srv := startReceiver(t, rc)
	r := startNotifier(t, testConfig(srv.URL), e)

	id, _ := e.publishAlert(t, "accuracy_low", schemas.AlertFiring)
	rc.waitAccepted(t, 1)
	e.waitSettled(t, streams.ConsumerAlertWebhook)

	reqs := rc.requests()
	if len(reqs) != 3 {
		t.Fatalf("receiver saw %d requests, want 3 (503, 503, 200)", len(reqs))
	}
	for i, req := range reqs {
		if req.id() != id {
			t.Errorf("request %d delivery id = %q, want %q on every attempt", i, req.id(), id)
		}
		if err := Verify([]byte(testSecret), req.header, req.body, time.Now(), 0); err != nil {
			t.Errorf("request %d: Verify = %v", i, err)
		}
	}
	r.wantDeliveries(t, 1, 2, 0)
	wantAttempts := `
# HELP cardiostream_webhook_attempts_per_alert HTTP attempts an alert took until it was delivered or given up (in this process).
# TYPE cardiostream_webhook_attempts_per_alert histogram
cardiostream_webhook_attempts_per_alert_bucket{le="1"} 0
cardiostream_webhook_attempts_per_alert_bucket{le="2"} 0
cardiostream_webhook_attempts_per_alert_bucket{le="3"} 1
cardiostream_webhook_attempts_per_alert_bucket{le="5"} 1
cardiostream_webhook_attempts_per_alert_bucket{le="10"} 1
cardiostream_webhook_attempts_per_alert_bucket{le="20"} 1
cardiostream_webhook_attempts_per_alert_bucket{le="50"} 1
cardiostream_webhook_attempts_per_alert_bucket{le="100"} 1
cardiostream_webhook_attempts_per_alert_bucket{le="+Inf"} 1
cardiostream_webhook_attempts_per_alert_sum 3
cardiostream_webhook_attempts_per_alert_count 1
`
	if err := testutil.GatherAndCompare(r.reg, strings.NewReader(wantAttempts), "cardiostream_webhook_attempts_per_alert"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(r.reg, "cardiostream_webhook_delivery_duration_seconds"); n != 1 {
		t.Errorf("delivery_duration_seconds series = %d, want 1", n)
	}
	// Logged when the error kind changed (503) and when delivery recovered,
	// not on every attempt.
	if n := strings.Count(r.logs.String(), "attempt failed; retrying"); n != 1 {
		t.Errorf("logged %d failed attempts, want 1 (log on change):\n%s", n, r.logs.String())
	}
	if !strings.Contains(r.logs.String(), "delivering again") {
		t.Errorf("recovery not logged:\n%s", r.logs.String())
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	e := newTestEnv(t)
	rc := &receiver{respond: func(n int, _ *http.Request, w http.ResponseWriter) int {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	}}
	srv := startReceiver(t, rc)
	cfg := testConfig(srv.URL)
	cfg.MaxBackoff = 5 * time.Second
	startNotifier(t, cfg, e)

	e.publishAlert(t, "accuracy_low", schemas.AlertFiring)
	rc.waitAccepted(t, 1)
	reqs := rc.requests()
	// A lower bound: timers never fire early, so this cannot flake on a
	// slow machine.
	if gap := reqs[1].at.Sub(reqs[0].at); gap < time.Second {
		t.Errorf("second attempt %s after a 429 with Retry-After: 1, want ≥ 1s", gap)
	}
}

func TestConnectionRefusedThenReceiverComesUp(t *testing.T) {
	e := newTestEnv(t)
	addr := freeAddr(t)
	r := startNotifier(t, testConfig("http://"+addr+"/hook-token/abc"), e)

	id, _ := e.publishAlert(t, "accuracy_low", schemas.AlertFiring)
	r.eventuallyCounter(t, resultRetry, 3)

	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening on %s again: %v", addr, err)
	}
	rc := &receiver{}
	srv := httptest.NewUnstartedServer(rc)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)

	if got := rc.waitAccepted(t, 1); got[0] != id {
		t.Errorf("accepted %v, want [%s]", got, id)
	}
	e.waitSettled(t, streams.ConsumerAlertWebhook)
	logs := r.logs.String()
	if n := strings.Count(logs, `"kind":"connection_refused"`); n != 1 {
		t.Errorf("connection refused logged %d times, want once:\n%s", n, logs)
	}
}

func TestSlowReceiverTimesOutAndIsRetried(t *testing.T) {
	e := newTestEnv(t)
	rc := &receiver{respond: func(n int, r *http.Request, _ http.ResponseWriter) int {
		if n == 0 {
			// Hold the first request past the notifier's Timeout; the
			// notifier has hung up by the time this answer is written.
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}}
	srv := startReceiver(t, rc)
	cfg := testConfig(srv.URL)
	cfg.Timeout = 250 * time.Millisecond
	r := startNotifier(t, cfg, e)

	id, _ := e.publishAlert(t, "accuracy_low", schemas.AlertFiring)
	rc.waitAccepted(t, 1)
	e.waitSettled(t, streams.ConsumerAlertWebhook)
	reqs := rc.requests()
	if len(reqs) < 2 {
		t.Fatalf("receiver saw %d requests, want the timed-out one and a retry", len(reqs))
	}
	for i, req := range reqs {
		if req.id() != id {
			t.Errorf("request %d delivery id = %q, want %q", i, req.id(), id)
		}
	}
	r.eventuallyCounter(t, resultRetry, 1)
	r.eventuallyCounter(t, resultSuccess, 1)
	if !strings.Contains(r.logs.String(), `"kind":"timeout"`) {
		t.Errorf("timeout not logged:\n%s", r.logs.String())
	}
}

func TestRejectedAlertIsTerminatedAndLaterAlertsFlow(t *testing.T) {
	e := newTestEnv(t)
	rc := &receiver{}
	var rejectID atomic.Value
	rc.respond = func(_ int, r *http.Request, w http.ResponseWriter) int {
		if r.Header.Get(HeaderDelivery) == rejectID.Load() {
			return http.StatusBadRequest
		}
		return http.StatusOK
	}
	srv := startReceiver(t, rc)
	first, _ := e.publishAlert(t, "accuracy_low", schemas.AlertFiring)
	rejectID.Store(first)
	second, _ := e.publishAlert(t, "accuracy_low", schemas.AlertResolved)
	r := startNotifier(t, testConfig(srv.URL), e)

	rc.waitAccepted(t, 1)
	info := e.waitSettled(t, streams.ConsumerAlertWebhook)
	var ids []string
	for _, req := range rc.requests() {
		ids = append(ids, fmt.Sprintf("%s:%d", req.id(), req.status))
	}
	if want := []string{first + ":400", second + ":200"}; !slices.Equal(ids, want) {
		t.Errorf("requests = %v, want %v", ids, want)
	}
	if info.Delivered.Consumer != 2 {
		t.Errorf("consumer delivered %d times, want 2 (no redelivery of the terminated alert)", info.Delivered.Consumer)
	}
	r.wantDeliveries(t, 1, 0, 1)
	if !strings.Contains(r.logs.String(), "gave up") {
		t.Errorf("terminated alert not logged:\n%s", r.logs.String())
	}
}

func TestMaxAttemptsGivesUp(t *testing.T) {
	e := newTestEnv(t)
	var fail atomic.Bool
	fail.Store(true)
	rc := &receiver{respond: func(int, *http.Request, http.ResponseWriter) int {
		if fail.Load() {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}}
	srv := startReceiver(t, rc)
	cfg := testConfig(srv.URL)
	cfg.MaxAttempts = 3
	r := startNotifier(t, cfg, e)

	e.publishAlert(t, "accuracy_low", schemas.AlertFiring)
	r.eventuallyCounter(t, resultFailed, 1)
	fail.Store(false)
	second, _ := e.publishAlert(t, "accuracy_low", schemas.AlertResolved)
	if got := rc.waitAccepted(t, 1); got[0] != second {
		t.Errorf("accepted %v, want [%s]", got, second)
	}
	// The receiver records its 200 before the notifier reads it: wait for
	// the ack, which follows the counter update.
	e.waitSettled(t, cfg.Consumer)
	if n := len(rc.requests()); n != 4 {
		t.Errorf("receiver saw %d requests, want 3 attempts + 1", n)
	}
	r.wantDeliveries(t, 1, 2, 1)
}

func TestOrderIsPreserved(t *testing.T) {
	e := newTestEnv(t)
	// Published before the notifier first starts: DeliverAll sends them too.
	var want []string
	for i := range 9 {
		id, _ := e.publishAlert(t, []string{"accuracy_low", "drift_high", "latency_high"}[i%3], schemas.AlertFiring)
		want = append(want, id)
	}
	rc := &receiver{respond: func(n int, _ *http.Request, _ http.ResponseWriter) int {
		if n%3 == 1 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	}}
	srv := startReceiver(t, rc)
	r := startNotifier(t, testConfig(srv.URL), e)

	got := rc.waitAccepted(t, len(want))
	if !slices.Equal(got, want) {
		t.Errorf("accepted in order %v, want %v", got, want)
	}
	e.waitSettled(t, streams.ConsumerAlertWebhook)
	r.wantDeliveries(t, len(want), len(rc.requests())-len(want), 0)
}

func TestRestartMidRetryDeliversAfterRestart(t *testing.T) {
	e := newTestEnv(t)
	var up atomic.Bool
	rc := &receiver{respond: func(int, *http.Request, http.ResponseWriter) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	}}
	srv := startReceiver(t, rc)
	cfg := testConfig(srv.URL)

	first, _ := e.publishAlert(t, "accuracy_low", schemas.AlertFiring)
	second, _ := e.publishAlert(t, "drift_high", schemas.AlertFiring)
	r1 := startNotifier(t, cfg, e)
	r1.eventuallyCounter(t, resultRetry, 2)
	r1.stop()
	if !strings.Contains(r1.logs.String(), "undelivered") {
		t.Errorf("shutdown with an undelivered alert not logged:\n%s", r1.logs.String())
	}
	before := len(rc.requests())
	for _, req := range rc.requests() {
		if req.id() != first {
			t.Fatalf("before the restart the receiver saw delivery %q, want only %q", req.id(), first)
		}
	}
	info := e.consumerInfo(t, cfg.Consumer)
	if info.AckFloor.Stream != 0 {
		t.Fatalf("ack floor = %d after shutdown mid-retry, want 0 (nothing acknowledged)", info.AckFloor.Stream)
	}

	up.Store(true)
	r2 := startNotifier(t, cfg, e)
	got := rc.waitAccepted(t, 2)
	e.waitSettled(t, cfg.Consumer)
	if want := []string{first, second}; !slices.Equal(got, want) {
		t.Errorf("accepted %v, want each exactly once in order %v", got, want)
	}
	if n := len(rc.requests()) - before; n != 2 {
		t.Errorf("after the restart the receiver saw %d requests, want 2", n)
	}
	r2.wantDeliveries(t, 2, 0, 0)
}

func TestInProgressPreventsRedeliveryDuringLongRetry(t *testing.T) {
	e := newTestEnv(t)
	start := time.Now()
	rc := &receiver{respond: func(int, *http.Request, http.ResponseWriter) int {
		if time.Since(start) < 2500*time.Millisecond { // retrying for longer than AckWait
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}}
	srv := startReceiver(t, rc)
	cfg := testConfig(srv.URL)
	cfg.Timeout = 500 * time.Millisecond
	cfg.AckWait = time.Second
	cfg.InitialBackoff = 100 * time.Millisecond
	cfg.MaxBackoff = 400 * time.Millisecond
	startNotifier(t, cfg, e)

	id, _ := e.publishAlert(t, "accuracy_low", schemas.AlertFiring)
	rc.waitAccepted(t, 1)
	info := e.waitSettled(t, cfg.Consumer)
	if info.Delivered.Consumer != 1 {
		t.Errorf("consumer delivered the alert %d times, want 1 (kept in progress, never redelivered)", info.Delivered.Consumer)
	}
	// A 200 the notifier timed out on is sent again (at least once): the
	// receiver may see repeats, always with the same delivery id.
	for _, got := range rc.accepted() {
		if got != id {
			t.Errorf("accepted delivery %q, want only %q", got, id)
		}
	}
}

func TestUnsignedWhenNoSecret(t *testing.T) {
	e := newTestEnv(t)
	rc := &receiver{}
	srv := startReceiver(t, rc)
	cfg := testConfig(srv.URL)
	cfg.Secret = ""
	r := startNotifier(t, cfg, e)

	e.publishAlert(t, "accuracy_low", schemas.AlertFiring)
	e.publishAlert(t, "accuracy_low", schemas.AlertResolved)
	rc.waitAccepted(t, 2)
	for _, req := range rc.requests() {
		if sig := req.header.Get(HeaderSignature); sig != "" {
			t.Errorf("unsigned config sent signature %q", sig)
		}
		if req.header.Get(HeaderTimestamp) == "" {
			t.Error("timestamp header missing")
		}
	}
	if n := strings.Count(r.logs.String(), "sent unsigned"); n != 1 {
		t.Errorf("unsigned warning logged %d times, want once:\n%s", n, r.logs.String())
	}
}

func TestInvalidAlertIsTerminated(t *testing.T) {
	e := newTestEnv(t)
	rc := &receiver{}
	srv := startReceiver(t, rc)
	e.publishRaw(t, e.subjects.Alerts("accuracy_low"), "garbage-1", []byte("not json"))
	e.publishRaw(t, e.subjects.Alerts("accuracy_low"), "bad-id", []byte(`{"id":"a\nb","rule":"accuracy_low"}`))
	id, _ := e.publishAlert(t, "accuracy_low", schemas.AlertFiring)
	r := startNotifier(t, testConfig(srv.URL), e)

	if got := rc.waitAccepted(t, 1); !slices.Equal(got, []string{id}) {
		t.Errorf("accepted %v, want only the valid alert %s", got, id)
	}
	e.waitSettled(t, streams.ConsumerAlertWebhook)
	if n := len(rc.requests()); n != 1 {
		t.Errorf("receiver saw %d requests, want 1", n)
	}
	r.wantDeliveries(t, 1, 0, 2)
}

func TestDisabledWithoutURL(t *testing.T) {
	e := newTestEnv(t)
	cfg := testConfig("")
	r := startNotifier(t, cfg, e)
	natstest.Eventually(t, 5*time.Second, r.n.Ready)
	e.publishAlert(t, "accuracy_low", schemas.AlertFiring)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.Consumer(ctx, schemas.StreamAlerts, cfg.Consumer); err == nil {
		t.Error("disabled notifier created the delivery consumer")
	}
	if msgs := natstest.StreamMessages(t, e.js, schemas.StreamAlerts); len(msgs) != 1 {
		t.Errorf("ALERTS holds %d alerts, want 1 (kept for later delivery)", len(msgs))
	}
	if !strings.Contains(r.logs.String(), "delivery disabled") {
		t.Errorf("disabled delivery not logged:\n%s", r.logs.String())
	}
}

func TestReadyWaitsForStream(t *testing.T) {
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns)
	e := &testEnv{js: js, subjects: schemas.NewSubjects("")}
	rc := &receiver{}
	srv := startReceiver(t, rc)
	cfg := testConfig(srv.URL)
	r := startNotifier(t, cfg, e)

	natstest.Eventually(t, 5*time.Second, func() error {
		if err := r.n.Ready(); !errors.Is(err, ErrNotReady) {
			return fmt.Errorf("Ready() = %v before ALERTS exists, want ErrNotReady", err)
		}
		if !strings.Contains(r.logs.String(), "cannot set up") {
			return errors.New("setup failure not logged yet")
		}
		return nil
	})
	natstest.EnsureStreams(t, js, nil)
	natstest.Eventually(t, 10*time.Second, r.n.Ready)
	id, _ := e.publishAlert(t, "accuracy_low", schemas.AlertFiring)
	if got := rc.waitAccepted(t, 1); got[0] != id {
		t.Errorf("accepted %v, want [%s]", got, id)
	}
}

func TestStartFromNewSkipsOldAlerts(t *testing.T) {
	e := newTestEnv(t)
	e.publishAlert(t, "accuracy_low", schemas.AlertFiring)
	rc := &receiver{}
	srv := startReceiver(t, rc)
	cfg := testConfig(srv.URL)
	cfg.StartFrom = StartNew
	r := startNotifier(t, cfg, e)
	natstest.Eventually(t, 5*time.Second, r.n.Ready)

	id, _ := e.publishAlert(t, "accuracy_low", schemas.AlertResolved)
	if got := rc.waitAccepted(t, 1); !slices.Equal(got, []string{id}) {
		t.Errorf("accepted %v, want only the alert published after start [%s]", got, id)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	cfg := testConfig("ftp://example.com/x")
	if _, err := New(cfg, nil, schemas.NewSubjects(""), nil, nil, nil); err == nil || !strings.Contains(err.Error(), "webhook.url") {
		t.Errorf("New with an ftp URL = %v, want a webhook.url error", err)
	}
}

func TestTwoNotifiersShareTheQueue(t *testing.T) {
	e := newTestEnv(t)
	rc := &receiver{respond: func(n int, _ *http.Request, _ http.ResponseWriter) int {
		if n%4 == 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}}
	srv := startReceiver(t, rc)
	cfg := testConfig(srv.URL)
	a := startNotifier(t, cfg, e)
	b := startNotifier(t, cfg, e)
	var want []string
	for range 8 {
		id, _ := e.publishAlert(t, "accuracy_low", schemas.AlertFiring)
		want = append(want, id)
	}
	got := rc.waitAccepted(t, len(want))
	e.waitSettled(t, cfg.Consumer)
	if !slices.Equal(got, want) {
		t.Errorf("accepted %v, want each once in order %v", got, want)
	}
	// Both processes are consumers of one queue; whichever pulled an alert
	// delivered it, and the totals add up.
	success := testutil.ToFloat64(a.n.m.success) + testutil.ToFloat64(b.n.m.success)
	if int(success) != len(want) {
		t.Errorf("success across both notifiers = %v, want %d", success, len(want))
	}
}
