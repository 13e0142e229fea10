package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigCommands(t *testing.T) {
	const apiKey = "api-key-0123456789abcdef"
	tests := []struct {
		name     string
		environ  []string
		args     []string
		wantCode int
		want     []string // substrings of stdout
		notWant  []string // never in stdout or stderr
	}{
		{name: "development is valid", args: []string{"config", "validate"}, want: []string{"configuration for development is valid"}},
		{name: "production lacks what it needs", args: []string{"config", "validate", "--env", "production"}, wantCode: 1,
			want: []string{"webhook.url:", "webhook.secret:", "security.api_key:", "security.monitoring_key:"}},
		{name: "DEPLOYMENT_ENV selects the environment", environ: []string{"DEPLOYMENT_ENV=staging"}, args: []string{"config", "show"},
			want: []string{"env: staging", "sync_always: true"}},
		{name: "secrets are redacted", environ: []string{"API_KEY=" + apiKey, "ALERT_WEBHOOK_SECRET=whsec-0123456789abcdef0123456789abcdef"},
			args: []string{"config", "show"}, want: []string{"api_key:"}, notWant: []string{apiKey, "whsec-0123456789abcdef0123456789abcdef"}},
		{name: "unknown environment", args: []string{"config", "validate", "--env", "prod"}, wantCode: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, append([]string{}, tt.environ...), tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, nw := range tt.notWant {
				if strings.Contains(stdout+stderr, nw) {
					t.Errorf("output leaks %q", nw)
				}
			}
		})
	}
}

func TestModelValidate(t *testing.T) {
	code, stdout, stderr := runCmd(t, nil, "model", "validate", "--json", "../../models/heart-xgb")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep modelReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("report %q: %v", stdout, err)
	}
	if rep.Name != "heart-xgb" || rep.Parity == nil || rep.Parity.Rows != 920 || rep.Parity.MaxAbsDiff > 1e-6 || len(rep.FeatureNames) != 13 {
		t.Errorf("report %+v", rep)
	}

	// A tampered artifact is refused with a clear error, and nothing crashes.
	dir := t.TempDir()
	for _, f := range []string{"manifest.json", "model.json", "golden.csv"} {
		b, err := os.ReadFile(filepath.Join("../../models/heart-xgb", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "model.json" {
			b = []byte(strings.Replace(string(b), `"base_score":"`, `"base_score":"1`, 1))
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, _, stderr = runCmd(t, nil, "model", "validate", dir)
	if code != 1 || !strings.Contains(stderr, "sha256") {
		t.Errorf("tampered model: exit %d, stderr %q; want exit 1 naming the checksum", code, stderr)
	}
	code, _, stderr = runCmd(t, nil, "model", "validate", filepath.Join(dir, "nope"))
	if code != 1 || !strings.Contains(stderr, "not usable") {
		t.Errorf("missing model: exit %d, stderr %q", code, stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"nosuchcommand"},
		{"standalone", "--exit-after-replay"},
		{"standalone", "--no-such-flag"},
		{"replay"},
	} {
		code, _, stderr := runCmd(t, nil, args...)
		if code != 2 && !(args[0] == "replay" && code != 0) {
			t.Errorf("%v: exit %d, want 2 (usage); stderr %q", args, code, stderr)
		}
		if stderr == "" {
			t.Errorf("%v: no message", args)
		}
	}
}

// TestModelPath points the scorer at another artifact through MODEL_PATH:
// predictions name its version; a broken artifact stops start-up with a
// clear error instead of scoring with anything else.
func TestModelPath(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"manifest.json", "model.json", "golden.csv"} {
		b, err := os.ReadFile(filepath.Join("../../models/heart-xgb", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "manifest.json" {
			b = []byte(strings.Replace(string(b), `"version": "1.0.0"`, `"version": "1.0.0-canary"`, 1))
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, stderr := runCmd(t, testEnviron("MODEL_PATH="+dir), "standalone",
		"--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
		"--label-delay", "10ms", "--exit-after-replay", "--replay", uciFiles[2])
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "1.0.0-canary") {
		t.Errorf("the log does not name the loaded model version:\n%s", stderr)
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(lastLine(stdout)), &sum); err != nil || sum["scored"].(float64) != 123 {
		t.Fatalf("summary %q: %v", lastLine(stdout), err)
	}

	// A model.json that does not match its manifest's sha256 is refused.
	if err := os.WriteFile(filepath.Join(dir, "model.json"), []byte(`{"learner":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCmd(t, testEnviron("MODEL_PATH="+dir), "standalone",
		"--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	if code != 1 || !strings.Contains(stderr, "MODEL_PATH") {
		t.Errorf("broken MODEL_PATH: exit %d, want 1 with an error naming MODEL_PATH; stderr:\n%s", code, stderr)
	}
}
