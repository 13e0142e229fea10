package webhook

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

// The receiver recipe in docs/webhooks.md is this file; these tests run it.
var pythonRecipe = filepath.Join("..", "..", "docs", "examples", "verify_webhook.py")

// python3 returns the interpreter. CI installs it; only an explicit
// CARDIOSTREAM_NO_PYTHON=1 turns its absence into a skip.
func python3(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CARDIOSTREAM_NO_PYTHON") == "1" {
		tb.Skip("python3 not found and CARDIOSTREAM_NO_PYTHON=1")
	}
	tb.Fatal("python3 not found: install it (or set CARDIOSTREAM_NO_PYTHON=1 to skip the receiver recipe tests)")
	return ""
}

func TestPythonRecipeVerifiesGoSignatures(t *testing.T) {
	py := python3(t)
	body := []byte(`{"schema_version":1,"id":"accuracy_low-firing-1772366400","rule":"accuracy_low","status":"firing"}`)
	sent := time.Unix(1772366400, 0)
	tests := []struct {
		name      string
		secret    string // the receiver's secret
		body      []byte // what the receiver got
		signature string
		now       time.Time
		want      string
	}{
		{name: "valid", secret: testSecret, body: body, now: sent.Add(30 * time.Second), want: "ok"},
		{name: "tampered body", secret: testSecret, body: bytes.Replace(body, []byte("firing"), []byte("resolved"), 1), now: sent, want: "rejected: signature does not match"},
		{name: "wrong secret", secret: "not-the-secret", body: body, now: sent, want: "rejected: signature does not match"},
		{name: "old timestamp", secret: testSecret, body: body, now: sent.Add(DefaultSignatureTolerance + time.Second), want: "rejected: timestamp outside tolerance"},
		{name: "from the future", secret: testSecret, body: body, now: sent.Add(-DefaultSignatureTolerance - time.Second), want: "rejected: timestamp outside tolerance"},
		{name: "two signatures, second valid", secret: testSecret, body: body, now: sent,
			signature: "v1=" + strings.Repeat("0", 64) + ", " + Sign([]byte(testSecret), sent, body), want: "ok"},
		{name: "unknown scheme only", secret: testSecret, body: body, now: sent,
			signature: "v0=" + strings.Repeat("0", 64), want: "rejected: signature header missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig := tt.signature
			if sig == "" {
				sig = Sign([]byte(testSecret), sent, body)
			}
			// Go's Verify must agree with the recipe on every case.
			h := http.Header{}
			h.Set(HeaderTimestamp, strconv.FormatInt(sent.Unix(), 10))
			h.Set(HeaderSignature, sig)
			goErr := Verify([]byte(tt.secret), h, tt.body, tt.now, 0)
			if (goErr == nil) != (tt.want == "ok") {
				t.Errorf("Go Verify = %v, but the recipe should say %q", goErr, tt.want)
			}

			bodyFile := filepath.Join(t.TempDir(), "body.json")
			if err := os.WriteFile(bodyFile, tt.body, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(py, pythonRecipe, "check", bodyFile, strconv.FormatInt(sent.Unix(), 10), sig, strconv.FormatInt(tt.now.Unix(), 10))
			cmd.Env = append(os.Environ(), "WEBHOOK_SECRET="+tt.secret)
			out, err := cmd.CombinedOutput()
			var exitErr *exec.ExitError
			if err != nil && !errors.As(err, &exitErr) {
				t.Fatalf("running %s: %v\n%s", pythonRecipe, err, out)
			}
			got := strings.TrimSpace(string(out))
			if got != tt.want {
				t.Errorf("recipe says %q, want %q", got, tt.want)
			}
			if (tt.want == "ok") != (err == nil) {
				t.Errorf("recipe exit error %v does not match its verdict %q", err, got)
			}
		})
	}
}

// TestPythonReceiverEndToEnd delivers alerts through the notifier to the
// recipe's reference receiver, which verifies each request.
func TestPythonReceiverEndToEnd(t *testing.T) {
	py := python3(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, py, pythonRecipe, "serve", "0")
	cmd.Env = append(os.Environ(), "WEBHOOK_SECRET="+testSecret)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the reference receiver: %v", err)
	}
	t.Cleanup(func() {
		cancel() // kills the receiver this test started
		_ = cmd.Wait()
	})
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("reference receiver exited")
			}
			return l
		case <-time.After(15 * time.Second):
			t.Fatal("no output from the reference receiver")
		}
		return ""
	}
	port, ok := strings.CutPrefix(next(), "listening ")
	if !ok {
		t.Fatal("reference receiver did not report its port")
	}
	url := "http://127.0.0.1:" + port + "/"

	// An unsigned request is refused.
	resp, err := http.Post(url, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unsigned request answered %d, want 401", resp.StatusCode)
	}

	e := newTestEnv(t)
	first, _ := e.publishAlert(t, "accuracy_low", schemas.AlertFiring)
	second, _ := e.publishAlert(t, "accuracy_low", schemas.AlertResolved)
	r := startNotifier(t, testConfig(url), e)
	for _, want := range []string{
		fmt.Sprintf("accepted %s accuracy_low firing", first),
		fmt.Sprintf("accepted %s accuracy_low resolved", second),
	} {
		if got := next(); got != want {
			t.Errorf("receiver printed %q, want %q", got, want)
		}
	}
	e.waitSettled(t, testConfig(url).Consumer)
	r.wantDeliveries(t, 2, 0, 0)
	natstest.Eventually(t, time.Second, r.n.Ready)
}
