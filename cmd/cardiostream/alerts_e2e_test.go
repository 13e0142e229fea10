package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/monitor/webhook"
	"github.com/cardiostream/cardiostream/schemas"
)

// receiver is an alert webhook endpoint that fails its first failFirst
// requests with 503 and records every request.
type receiver struct {
	t         testing.TB
	secret    []byte
	failFirst int

	mu       sync.Mutex
	attempts int
	accepted []schemas.Alert // in the order they were accepted (2xx)
	ids      map[string]int  // delivery id → attempts
	badSig   int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.attempts++
	id := r.Header.Get(webhook.HeaderDelivery)
	rc.ids[id]++
	if err := webhook.Verify(rc.secret, r.Header, body, time.Now(), 5*time.Minute); err != nil {
		rc.badSig++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if rc.attempts <= rc.failFirst {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	var a schemas.Alert
	if err := json.Unmarshal(body, &a); err != nil {
		rc.t.Errorf("alert body: %v", err)
	}
	if a.ID != id {
		rc.t.Errorf("delivery id header %q differs from alert id %q", id, a.ID)
	}
	rc.accepted = append(rc.accepted, a)
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) snapshot() ([]schemas.Alert, int, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]schemas.Alert(nil), rc.accepted...), rc.attempts, rc.badSig
}

// TestAlertsEndToEnd drives the default accuracy rule (< 0.80 over the window)
// through the whole system: outcomes that contradict the predictions make it
// fire, correct outcomes make it resolve; the webhook receiver, which answers
// 503 twice first, gets exactly one firing and one resolved alert, each
// correctly signed.
func TestAlertsEndToEnd(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-test"
	rc := &receiver{t: t, secret: []byte(secret), failFirst: 2, ids: map[string]int{}}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)

	env := testEnviron(
		"ALERT_WEBHOOK="+srv.URL+"/hooks/cardiostream",
		"ALERT_WEBHOOK_SECRET="+secret,
		"CARDIOSTREAM_MONITOR__WINDOW_SIZE=60",
		"CARDIOSTREAM_MONITOR__EVALUATION_INTERVAL=50ms",
		"CARDIOSTREAM_WEBHOOK__INITIAL_BACKOFF=20ms",
		"CARDIOSTREAM_WEBHOOK__MAX_BACKOFF=200ms",
	)
	// Only the accuracy rule, with the deployment guide's threshold and
	// minimum sample count: a latency or error-rate alert on a loaded CI
	// machine must not change the counts below.
	rules := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(rules, []byte("monitor:\n  rules:\n    - name: accuracy\n      metric: accuracy\n      comparator: \"<\"\n      threshold: 0.80\n      min_samples: 50\n      severity: critical\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sys := start(t, env, "standalone", "--config", rules, "--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	js := connectTo(t, sys.info.NATSURL)
	ctx := context.Background()
	subj := schemas.NewSubjects("")

	// publishBatch publishes n records and returns their predictions once scored.
	publishBatch := func(prefix string, n int) map[string]schemas.Prediction {
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("%s-%03d", prefix, i)
			body := fmt.Sprintf(`{"id":%q,"features":{"age":%d,"sex":%d,"cp":%d,"trestbps":130,"chol":%d,"fbs":0,"restecg":0,"thalach":%d,"exang":%d,"oldpeak":%.1f,"slope":2,"ca":%d,"thal":%d}}`,
				id, 40+i%35, i%2, 1+i%4, 180+i*3%200, 100+i*7%90, i%2, float64(i%30)/10, i%4, []int{3, 6, 7}[i%3])
			if _, err := js.Publish(ctx, subj.Records("clinic-a"), []byte(body), jetstream.WithMsgID("clinic-a/"+id)); err != nil {
				t.Fatal(err)
			}
		}
		preds := map[string]schemas.Prediction{}
		natstest.Eventually(t, 60*time.Second, func() error {
			for _, m := range natstest.StreamMessages(t, js, schemas.StreamPredictions) {
				var p schemas.Prediction
				if err := json.Unmarshal(m.Data(), &p); err != nil {
					return err
				}
				if len(p.RecordID) > len(prefix) && p.RecordID[:len(prefix)+1] == prefix+"-" {
					preds[p.RecordID] = p
				}
			}
			if len(preds) < n {
				return fmt.Errorf("%d of %d predictions", len(preds), n)
			}
			return nil
		})
		return preds
	}
	publishOutcomes := func(preds map[string]schemas.Prediction, correct bool) {
		for id, p := range preds {
			label := p.Label
			if !correct {
				label = 1 - label
			}
			o := schemas.Outcome{RecordID: id, Label: label, ObservedAt: time.Now().UTC()}
			b, _ := json.Marshal(o)
			if _, err := js.Publish(ctx, subj.Outcomes("clinic-a"), b, jetstream.WithMsgID("clinic-a/"+id)); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitAccepted := func(n int) []schemas.Alert {
		var got []schemas.Alert
		natstest.Eventually(t, 60*time.Second, func() error {
			got, _, _ = rc.snapshot()
			if len(got) < n {
				return fmt.Errorf("receiver accepted %d alerts, want %d", len(got), n)
			}
			return nil
		})
		return got
	}

	// 1. Wrong outcomes for 60 records: window accuracy 0 → one firing alert.
	publishOutcomes(publishBatch("wrong", 60), false)
	got := waitAccepted(1)
	if got[0].Rule != "accuracy" || got[0].Status != schemas.AlertFiring || got[0].Value >= 0.80 {
		t.Fatalf("first alert %+v, want accuracy firing below 0.80", got[0])
	}

	// 2. Correct outcomes for 60 more: the window recovers → one resolved alert.
	publishOutcomes(publishBatch("right", 60), true)
	got = waitAccepted(2)
	if got[1].Rule != "accuracy" || got[1].Status != schemas.AlertResolved || got[1].Value < 0.80 {
		t.Fatalf("second alert %+v, want accuracy resolved", got[1])
	}

	// Nothing more arrives: one firing and one resolved, not a flurry.
	fams := scrape(t, sys.info.MetricsAddr)
	if v := mustMetric(t, fams, "cardiostream_monitor_alerts_fired_total", "rule", "accuracy"); v != 1 {
		t.Errorf("alerts fired = %v, want 1", v)
	}
	if v := mustMetric(t, fams, "cardiostream_monitor_alerts_resolved_total", "rule", "accuracy"); v != 1 {
		t.Errorf("alerts resolved = %v, want 1", v)
	}
	alertsStream := natstest.StreamMessages(t, js, schemas.StreamAlerts)
	if len(alertsStream) != 2 {
		t.Errorf("ALERTS holds %d transitions, want 2", len(alertsStream))
	}
	accepted, attempts, badSig := rc.snapshot()
	if len(accepted) != 2 || badSig != 0 {
		t.Errorf("receiver accepted %d alerts (%d bad signatures), want 2 and 0", len(accepted), badSig)
	}
	// The two 503s were retried with the same delivery id.
	if attempts < 4 || rc.ids[accepted[0].ID] < 3 {
		t.Errorf("attempts %d, first alert tried %d times; want the 503s retried under one delivery id", attempts, rc.ids[accepted[0].ID])
	}
	t.Logf("receiver: %d attempts, accepted %s (%v) then %s (%v)", attempts, accepted[0].Status, accepted[0].Value, accepted[1].Status, accepted[1].Value)
	if v := mustMetric(t, fams, "cardiostream_webhook_deliveries_total", "result", "success"); v != 2 {
		t.Errorf("webhook successes = %v, want 2", v)
	}
	if code := sys.stop(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}
