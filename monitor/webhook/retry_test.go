package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	cfg := DefaultConfig() // 500ms initial, 1m max
	n := &Notifier{cfg: cfg}
	tests := []struct {
		name     string
		attempt  int
		err      error
		min, max time.Duration
	}{
		{name: "first retry", attempt: 1, min: 250 * time.Millisecond, max: 500 * time.Millisecond},
		{name: "doubles", attempt: 3, min: time.Second, max: 2 * time.Second},
		{name: "capped", attempt: 12, min: 30 * time.Second, max: time.Minute},
		{name: "no overflow far out", attempt: 1000, min: 30 * time.Second, max: time.Minute},
		{name: "Retry-After raises the wait", attempt: 1, err: &StatusError{Code: 429, RetryAfter: 20 * time.Second}, min: 20 * time.Second, max: 20 * time.Second},
		{name: "Retry-After capped by MaxBackoff", attempt: 1, err: &StatusError{Code: 503, RetryAfter: time.Hour}, min: time.Minute, max: time.Minute},
		{name: "short Retry-After keeps the backoff", attempt: 12, err: &StatusError{Code: 503, RetryAfter: time.Second}, min: 30 * time.Second, max: time.Minute},
		{name: "wrapped StatusError", attempt: 1, err: fmt.Errorf("posting: %w", &StatusError{Code: 429, RetryAfter: 10 * time.Second}), min: 10 * time.Second, max: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 50 { // jitter: every draw must be in range
				if d := n.backoff(tt.attempt, tt.err); d < tt.min || d > tt.max {
					t.Fatalf("backoff(%d) = %s, want in [%s, %s]", tt.attempt, d, tt.min, tt.max)
				}
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, value string
		want        time.Duration
	}{
		{"absent", "", 0},
		{"seconds", "120", 2 * time.Minute},
		{"spaces", " 7 ", 7 * time.Second},
		{"zero", "0", 0},
		{"negative", "-5", 0},
		{"huge seconds are bounded", "99999999999999", 24 * time.Hour},
		{"HTTP date", "Sun, 01 Mar 2026 12:00:30 GMT", 30 * time.Second},
		{"HTTP date in the past", "Sun, 01 Mar 2026 11:00:00 GMT", 0},
		{"garbage", "soon", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseRetryAfter(tt.value, now); got != tt.want {
				t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.value, got, tt.want)
			}
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "120", "-5", "99999999999999", "Sun, 01 Mar 2026 12:00:30 GMT", "soon"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := parseRetryAfter(v, now); d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %s, negative", v, d)
		}
	})
}

func TestErrorKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&StatusError{Code: 503}, "status_503"},
		{fmt.Errorf("posting: %w", context.DeadlineExceeded), "timeout"},
		{fmt.Errorf("posting: %w", os.NewSyscallError("connect", syscall.ECONNREFUSED)), "connection_refused"},
		{fmt.Errorf("posting: %w", io.ErrUnexpectedEOF), "connection_reset"},
		{errors.New("something else"), "network"},
	}
	for _, tt := range tests {
		if got := errorKind(tt.err); got != tt.want {
			t.Errorf("errorKind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestParseAlert(t *testing.T) {
	tests := []struct {
		name, body string
		wantErr    bool
	}{
		{"valid", `{"id":"accuracy_low-firing-1","rule":"accuracy_low","status":"firing"}`, false},
		{"not JSON", `not json`, true},
		{"no id", `{"rule":"accuracy_low"}`, true},
		{"id with newline", `{"id":"a\nb"}`, true},
		{"id with space", `{"id":"a b"}`, true},
		{"id too long", `{"id":"` + strings.Repeat("x", maxDeliveryID+1) + `"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseAlert([]byte(tt.body))
			if (err != nil) != tt.wantErr {
				t.Errorf("parseAlert = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func FuzzParseAlert(f *testing.F) {
	for _, s := range []string{`{"id":"a","rule":"r","status":"firing"}`, `{"id":"a\nb"}`, `[]`, `{"id":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := parseAlert(body)
		if err != nil {
			return
		}
		// Whatever it accepts must be a usable header value.
		if len(a.ID) == 0 || len(a.ID) > maxDeliveryID {
			t.Fatalf("accepted id of %d bytes", len(a.ID))
		}
		req, _ := http.NewRequest(http.MethodPost, "http://x.example/", nil)
		req.Header.Set(HeaderDelivery, a.ID)
		if err := req.Write(io.Discard); err != nil {
			t.Fatalf("accepted id %q cannot be sent: %v", a.ID, err)
		}
	})
}
