package ops

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardiostream/cardiostream/internal/secret"
)

func newTestServer(t *testing.T, token secret.String) (*Server, string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "cardiostream_test_things_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	s := New(Config{Listen: "127.0.0.1:0"}, reg, token, slog.New(slog.NewTextHandler(io.Discard, nil)))
	addr, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s, "http://" + addr.String()
}

func get(t *testing.T, url, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMetricsToken(t *testing.T) {
	tests := []struct {
		name     string
		token    secret.String
		auth     string
		wantCode int
	}{
		{name: "no token configured", wantCode: 200},
		{name: "token required, none sent", token: "k-123", wantCode: 401},
		{name: "token required, wrong sent", token: "k-123", auth: "Bearer nope", wantCode: 401},
		{name: "token required, right sent", token: "k-123", auth: "Bearer k-123", wantCode: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, base := newTestServer(t, tt.token)
			code, body := get(t, base+"/metrics", tt.auth)
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", code, tt.wantCode, body)
			}
			if code == 200 && !strings.Contains(body, "cardiostream_test_things_total 3") {
				t.Errorf("metrics body lacks the counter:\n%s", body)
			}
			if tt.token.IsSet() && strings.Contains(body, tt.token.Reveal()) {
				t.Errorf("response leaks the token")
			}
			// health never needs the token
			if code, _ := get(t, base+"/healthz", ""); code != 200 {
				t.Errorf("/healthz = %d", code)
			}
		})
	}
}

func TestReadyz(t *testing.T) {
	s, base := newTestServer(t, "")
	ready := errors.New("scorer: consumer not created yet")
	s.AddCheck("nats", func() error { return nil })
	s.AddCheck("scorer", func() error { return ready })
	code, body := get(t, base+"/readyz", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "consumer not created yet") || !strings.Contains(body, `"nats":"ok"`) {
		t.Fatalf("not ready: got %d %s", code, body)
	}
	ready = nil
	code, body = get(t, base+"/readyz", "")
	if code != http.StatusOK {
		t.Fatalf("ready: got %d %s", code, body)
	}
}

func TestReadyzDegraded(t *testing.T) {
	s, base := newTestServer(t, "")
	refused := errors.New("model artifact 1.1.0 refused: sha256 mismatch")
	s.AddCheck("nats", func() error { return nil })
	s.AddDegradedCheck("model", func() error { return refused })
	code, body := get(t, base+"/readyz", "")
	if code != http.StatusOK || !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, "degraded: model artifact 1.1.0 refused") {
		t.Fatalf("degraded: got %d %s", code, body)
	}
	refused = nil
	code, body = get(t, base+"/readyz", "")
	if code != http.StatusOK || strings.Contains(body, "degraded") {
		t.Fatalf("recovered: got %d %s", code, body)
	}
}
