package webhook_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cardiostream/cardiostream/monitor/webhook"
)

// receiver is a webhook endpoint: it verifies every request and processes
// each alert once, however often it is delivered.
type receiver struct {
	secret []byte
	mu     sync.Mutex
	seen   map[string]bool // delivery ids done; persist them in production
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Verify the raw bytes, before any JSON decoding.
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "reading body", http.StatusBadRequest)
		return
	}
	if err := webhook.Verify(rc.secret, r.Header, body, time.Now(), 5*time.Minute); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	id := r.Header.Get(webhook.HeaderDelivery)
	rc.mu.Lock()
	repeat := rc.seen[id]
	rc.seen[id] = true
	rc.mu.Unlock()
	if !repeat {
		fmt.Printf("alert %s: %s\n", id, body) // process the alert here
	}
	// 2xx for a repeat too, so the sender stops retrying it.
	w.WriteHeader(http.StatusNoContent)
}

// Example_receiver verifies and deduplicates cardiostream alert webhooks.
// Here the requests are made the way the notifier makes them.
func Example_receiver() {
	secret := []byte("the value of ALERT_WEBHOOK_SECRET")
	srv := httptest.NewServer(&receiver{secret: secret, seen: map[string]bool{}})
	defer srv.Close()

	send := func(key []byte, sentAt time.Time, body string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(webhook.HeaderDelivery, "accuracy_low-firing-1772366400")
		req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(sentAt.Unix(), 10))
		req.Header.Set(webhook.HeaderSignature, webhook.Sign(key, sentAt, []byte(body)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(strings.TrimSpace(fmt.Sprint(resp.StatusCode, " ", string(msg))))
	}
	alert := `{"id":"accuracy_low-firing-1772366400","rule":"accuracy_low","status":"firing"}`
	send(secret, time.Now(), alert)                 // delivered
	send(secret, time.Now(), alert)                 // a retry: accepted, not processed again
	send([]byte("guess"), time.Now(), alert)        // forged
	send(secret, time.Now().Add(-time.Hour), alert) // replayed an hour later
	fmt.Println(errors.Is(webhook.Verify(secret, nil, nil, time.Now(), 0), webhook.ErrTimestampMissing))
	// Output:
	// alert accuracy_low-firing-1772366400: {"id":"accuracy_low-firing-1772366400","rule":"accuracy_low","status":"firing"}
	// 204
	// 204
	// 401 webhook: signature does not match
	// 401 webhook: timestamp outside tolerance
	// true
}
