package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(tb testing.TB, name, got string) {
	tb.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		tb.Errorf("%s differs (run go test -update if the change is intended)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// productionEnviron is what a correct production deployment sets.
func productionEnviron() []string {
	return []string{
		"DEPLOYMENT_ENV=production",
		"API_KEY=0123456789abcdef0123456789abcdef",
		"MONITORING_KEY=fedcba9876543210fedcba9876543210",
		"ALERT_WEBHOOK=https://hooks.example.com/cardiostream",
		"ALERT_WEBHOOK_SECRET=" + strings.Repeat("s", MinWebhookSecretBytes),
	}
}

func TestProductionValid(t *testing.T) {
	cfg := mustLoad(t, LoadOptions{Environ: productionEnviron()})
	if cfg.Env != Production {
		t.Fatalf("Env = %q", cfg.Env)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("a complete production configuration fails:\n%v", err)
	}
	// An external NATS satisfies durability without the embedded server's fsync.
	cfg.NATS.URL = "tls://nats.internal:4222"
	cfg.NATS.Embedded.SyncAlways = false
	cfg.NATS.Embedded.Listen = "0.0.0.0:4222" // unused with an external NATS
	if err := cfg.Validate(); err != nil {
		t.Errorf("production with an external NATS fails:\n%v", err)
	}
}

func TestProductionInvalidGolden(t *testing.T) {
	const apiKey = "same-key-for-both-roles"
	file := writeFile(t, `
nats:
  embedded:
    sync_always: false
    listen: 0.0.0.0:4222
streams:
  storage: memory
  duplicate_window: 1m
log:
  format: text
model:
  path: /nonexistent/cardiostream/model.json
webhook:
  url: http://hooks.example.com/services/T0K3N
  secret: s3cr3t
security:
  api_key: `+apiKey+`
  monitoring_key: `+apiKey+`
`)
	cfg := mustLoad(t, LoadOptions{Env: Production, File: file})
	err := cfg.Validate()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate = %v, want ErrInvalid", err)
	}
	out := err.Error() + "\n"
	for _, leak := range []string{apiKey, "s3cr3t", "T0K3N"} {
		if strings.Contains(out, leak) {
			t.Errorf("validation output shows %q", leak)
		}
	}
	golden(t, "production_invalid.golden", out)

	// Nothing set at all: every production requirement is reported.
	cfg = mustLoad(t, LoadOptions{Env: Production})
	golden(t, "production_empty.golden", cfg.Validate().Error()+"\n")
}

func TestValidateForProduction(t *testing.T) {
	cfg := mustLoad(t, LoadOptions{})
	if err := cfg.Validate(); err != nil {
		t.Fatalf("development defaults fail: %v", err)
	}
	err := cfg.ValidateFor(Production)
	if err == nil {
		t.Fatal("development defaults pass production checks")
	}
	for _, key := range []string{"webhook.url", "webhook.secret", "security.api_key", "security.monitoring_key", "log.format", "nats.embedded.sync_always"} {
		if !strings.Contains(err.Error(), "\n"+key+": ") && !strings.HasPrefix(err.Error(), key+": ") {
			t.Errorf("production problems do not name %s:\n%v", key, err)
		}
	}
	if err := cfg.ValidateFor("prod"); !errors.Is(err, ErrUnknownEnvironment) {
		t.Errorf("ValidateFor(prod) = %v, want ErrUnknownEnvironment", err)
	}
}

func TestValidateChecks(t *testing.T) {
	existing := writeFile(t, "x")
	tests := []struct {
		name     string
		env      string
		mutate   func(c *Config)
		wantLine string // "" = valid
	}{
		{name: "defaults", mutate: func(c *Config) {}},
		{name: "dedup window shorter than the redelivery horizon",
			mutate: func(c *Config) {
				c.Streams.DuplicateWindow = 2 * time.Minute
				c.Scorer.AckWait, c.Scorer.MaxDeliver = 30*time.Second, 5
			},
			wantLine: "streams.duplicate_window: 2m0s is shorter than scorer.ack_wait × scorer.max_deliver (30s × 5 = 2m30s)"},
		{name: "dedup window equal to the horizon",
			mutate: func(c *Config) {
				c.Streams.DuplicateWindow = 150 * time.Second
				c.Scorer.AckWait, c.Scorer.MaxDeliver = 30*time.Second, 5
			}},
		{name: "replicas on the embedded server", mutate: func(c *Config) { c.Streams.Replicas = 3 },
			wantLine: "streams.replicas: 3 needs a NATS cluster (nats.url)"},
		{name: "replicas on a cluster", mutate: func(c *Config) { c.Streams.Replicas = 3; c.NATS.URL = "nats://a:4222,nats://b:4222,nats://c:4222" }},
		{name: "TLS with the embedded server", mutate: func(c *Config) { c.NATS.TLS.CAFile = existing },
			wantLine: "nats.tls: applies only to an external NATS"},
		{name: "token with the embedded server", mutate: func(c *Config) { c.NATS.Token = "t" },
			wantLine: "nats.token: applies only to an external NATS"},
		{name: "cert without key", mutate: func(c *Config) { c.NATS.URL = "tls://n:4222"; c.NATS.TLS.CertFile = existing },
			wantLine: "nats.tls.cert_file: and nats.tls.key_file must be given together"},
		{name: "missing CA file", mutate: func(c *Config) { c.NATS.URL = "tls://n:4222"; c.NATS.TLS.CAFile = "/nonexistent/ca.pem" },
			wantLine: `nats.tls.ca_file: "/nonexistent/ca.pem": no such file or directory`},
		{name: "bad NATS scheme hides the password", mutate: func(c *Config) { c.NATS.URL = "http://user:hunter2@n:4222" },
			wantLine: `nats.url: "http://REDACTED@n:4222": scheme must be nats, tls, ws or wss`},
		{name: "model path is a directory without a manifest", mutate: func(c *Config) { c.Model.Path = t.TempDir() },
			wantLine: "manifest.json\": no such file or directory"},
		{name: "model path is an artifact directory", mutate: func(c *Config) { c.Model.Path = "../models/heart-xgb" }},
		{name: "model path exists", mutate: func(c *Config) { c.Model.Path = existing }},
		{name: "bad log level", mutate: func(c *Config) { c.Log.Level = "verbose" },
			wantLine: `log.level: "verbose" is not one of debug, info, warn, error`},
		{name: "bad log format", mutate: func(c *Config) { c.Log.Format = "xml" },
			wantLine: `log.format: "xml" is not one of text, json`},
		{name: "bad http listen", mutate: func(c *Config) { c.HTTP.Listen = "9090" },
			wantLine: `http.listen: "9090" is not host:port`},
		{name: "secret with a trailing newline", mutate: func(c *Config) { c.Security.APIKey = "key\n" },
			wantLine: "security.api_key: has leading or trailing whitespace"},
		{name: "component problems name their key", mutate: func(c *Config) { c.Streams.Storage = "tape" },
			wantLine: `streams.storage: "tape" is not "file" or "memory"`},
		{name: "webhook scheme", mutate: func(c *Config) { c.Webhook.URL = "ftp://x/y" },
			wantLine: "webhook.url: "},
		{name: "embedded server problems", mutate: func(c *Config) { c.NATS.Embedded.DataDir = "" },
			wantLine: "nats.embedded.data_dir: must be set"},
		{name: "embedded settings ignored with an external NATS", mutate: func(c *Config) { c.NATS.URL = "nats://n:4222"; c.NATS.Embedded.DataDir = "" }},
		{name: "production on a public embedded listener", env: Production,
			mutate:   func(c *Config) { c.NATS.Embedded.Listen = ":4222" },
			wantLine: `nats.embedded.listen: production requires a loopback address for the embedded server, which has no authentication or TLS; got ":4222"`},
		{name: "production with a short API key", env: Production,
			mutate:   func(c *Config) { c.Security.APIKey = "short" },
			wantLine: "security.api_key: production requires at least 16 bytes, got 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if env == "" {
				env = Development
			}
			var cfg *Config
			if env == Production {
				cfg = mustLoad(t, LoadOptions{Environ: productionEnviron()})
			} else {
				cfg = mustLoad(t, LoadOptions{Env: env})
			}
			tt.mutate(cfg)
			err := cfg.Validate()
			if tt.wantLine == "" {
				if err != nil {
					t.Errorf("Validate:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate passed, want %q", tt.wantLine)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("err does not match ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), tt.wantLine) {
				t.Errorf("Validate:\n%v\ndoes not contain\n%s", err, tt.wantLine)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("a password leaks: %v", err)
			}
		})
	}
}

func TestComponentProblemKeys(t *testing.T) {
	tests := []struct {
		section string
		err     error
		want    string
	}{
		{"scorer", errors.New("batch_size: 0 is outside [1, 10000]"), "scorer.batch_size: 0 is outside [1, 10000]"},
		{"scorer", errors.New("scorer.batch_size: 0 is outside [1, 10000]"), "scorer.batch_size: 0 is outside [1, 10000]"},
		{"monitor", errors.Join(errors.New("a: x"), errors.New("rules[0].threshold: y")), "monitor.a: x\nmonitor.rules[0].threshold: y"},
		{"ingest", errors.New("something is wrong"), "ingest: something is wrong"},
	}
	for _, tt := range tests {
		var ps problems
		ps.addComponent(tt.section, tt.err)
		if got := ps.err().Error(); got != tt.want {
			t.Errorf("addComponent(%s, %q) = %q, want %q", tt.section, tt.err, got, tt.want)
		}
	}
}
