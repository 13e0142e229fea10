package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"go.yaml.in/yaml/v3"

	"github.com/cardiostream/cardiostream/internal/natstest"
)

func TestSecretsNeverShown(t *testing.T) {
	secrets := map[string]string{
		"security.api_key":        "api-KEY-value-0001",
		"security.monitoring_key": "monitoring-KEY-value-0002",
		"webhook.secret":          "webhook-SECRET-value-0003",
		"nats.token":              "nats-TOKEN-value-0004",
	}
	fs, fm := testFlags(t, "--nats-url=nats://admin:PASSWORD-0005@nats.internal:4222")
	cfg := mustLoad(t, LoadOptions{
		Environ: []string{
			"API_KEY=" + secrets["security.api_key"],
			"MONITORING_KEY=" + secrets["security.monitoring_key"],
			"ALERT_WEBHOOK_SECRET=" + secrets["webhook.secret"],
			"ALERT_WEBHOOK=https://hooks.example.com/services/PATH-TOKEN-0006",
			"CARDIOSTREAM_NATS__TOKEN=" + secrets["nats.token"],
		},
		Flags: fs, FlagMap: fm,
	})
	leaks := []string{"PASSWORD-0005", "PATH-TOKEN-0006"}
	for _, v := range secrets {
		leaks = append(leaks, v)
	}

	yml, err := cfg.RedactedYAML()
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	redactedJSON, err := json.Marshal(cfg.Redacted())
	if err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logBuf, nil))
	logger.Info("config", "cfg", cfg, "nats", cfg.NATS, "security", cfg.Security)
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("config", "cfg", *cfg)

	outputs := map[string]string{
		"%v":            fmt.Sprintf("%v", cfg),
		"%+v":           fmt.Sprintf("%+v", *cfg),
		"%#v":           fmt.Sprintf("%#v", *cfg),
		"json":          string(js),
		"Redacted":      string(redactedJSON),
		"RedactedYAML":  string(yml),
		"slog":          logBuf.String(),
		"Sources":       fmt.Sprint(cfg.Sources()),
		"Validate":      fmt.Sprint(cfg.ValidateFor(Production)),
		"ClientOptions": fmt.Sprintf("%+v", cfg.NATS.ClientOptions()),
	}
	for name, out := range outputs {
		for _, leak := range leaks {
			if strings.Contains(out, leak) {
				t.Errorf("%s shows a secret (%s):\n%s", name, leak, out)
			}
		}
	}

	// Redacted says whether each secret is set.
	red := cfg.Redacted()
	get := func(path string) any {
		var v any = red
		for _, p := range strings.Split(path, ".") {
			v = v.(map[string]any)[p]
		}
		return v
	}
	for key := range secrets {
		if got := get(key); got != SecretSet {
			t.Errorf("Redacted %s = %v, want %s", key, got, SecretSet)
		}
	}
	if got := get("webhook.url"); got != "https://hooks.example.com/…" {
		t.Errorf("Redacted webhook.url = %v", got)
	}
	if got := get("nats.url"); got != "nats://REDACTED@nats.internal:4222" {
		t.Errorf("Redacted nats.url = %v", got)
	}
	// The values are still there for the one place that needs them.
	if cfg.Security.APIKey.Reveal() != secrets["security.api_key"] {
		t.Error("Reveal lost the API key")
	}

	unset := mustLoad(t, LoadOptions{}).Redacted()
	if got := unset["security"].(map[string]any)["api_key"]; got != SecretUnset {
		t.Errorf("unset api_key shows %v, want %s", got, SecretUnset)
	}
}

func TestRedactedGolden(t *testing.T) {
	cfg := mustLoad(t, LoadOptions{Env: Staging, Environ: []string{"API_KEY=k"}})
	// Component defaults belong to their owners; pin only this package's sections.
	red := cfg.Redacted()
	mine := map[string]any{}
	for _, section := range []string{"env", "http", "log", "model", "nats", "security"} {
		mine[section] = red[section]
	}
	out, err := yaml.Marshal(mine)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "redacted_staging.golden", string(out))
}

func TestIsSecretKey(t *testing.T) {
	tests := map[string]bool{
		"security.api_key":        true,
		"security.monitoring_key": true,
		"webhook.secret":          true,
		"nats.token":              true,
		"x.db_password":           true,
		"nats.tls.key_file":       false,
		"nats.creds_file":         false,
		"scorer.max_ack_pending":  false,
		"monitor.keyspace":        false,
		"nats.url":                false,
	}
	for key, want := range tests {
		if got := isSecretKey(key); got != want {
			t.Errorf("isSecretKey(%s) = %v, want %v", key, got, want)
		}
	}
}

func TestLogHandler(t *testing.T) {
	tests := []struct {
		log       Log
		wantJSON  bool
		wantDebug bool
	}{
		{Log{Level: "debug", Format: "text"}, false, true},
		{Log{Level: "info", Format: "json"}, true, false},
		{Log{Level: "warn", Format: "json"}, true, false},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		h, err := tt.log.Handler(&buf)
		if err != nil {
			t.Fatal(err)
		}
		log := slog.New(h)
		log.Debug("d")
		log.Error("e")
		out := buf.String()
		if got := strings.HasPrefix(out, "{"); got != tt.wantJSON {
			t.Errorf("%+v: JSON = %v, want %v: %s", tt.log, got, tt.wantJSON, out)
		}
		if got := strings.Contains(out, "DEBUG"); got != tt.wantDebug {
			t.Errorf("%+v: debug shown = %v, want %v", tt.log, got, tt.wantDebug)
		}
	}
	if _, err := (Log{Format: "xml"}).Handler(&bytes.Buffer{}); err == nil {
		t.Error("Handler accepted format xml")
	}
}

func TestClientOptionsConnect(t *testing.T) {
	ns := natstest.RunServer(t)
	cfg := mustLoad(t, LoadOptions{Environ: []string{"CARDIOSTREAM_NATS__URL=" + ns.ClientURL(), "CARDIOSTREAM_NATS__NAME=config-test"}})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(cfg.NATS.URL, cfg.NATS.ClientOptions()...)
	if err != nil {
		t.Fatalf("connecting with ClientOptions: %v", err)
	}
	defer nc.Close()
	if got := nc.Opts.Name; got != "config-test" {
		t.Errorf("connection name = %q", got)
	}
	if nc.Opts.MaxReconnect != -1 || nc.Opts.Timeout != cfg.NATS.ConnectTimeout {
		t.Errorf("MaxReconnect=%d Timeout=%s, want -1 and %s", nc.Opts.MaxReconnect, nc.Opts.Timeout, cfg.NATS.ConnectTimeout)
	}
}
