package webhook

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(c *Config)
		wantErr []string // substrings, one per expected problem; nil = valid
	}{
		{name: "defaults (delivery disabled)", mod: func(*Config) {}},
		{name: "https URL", mod: func(c *Config) { c.URL = "https://alerts.example.org/cardio" }},
		{name: "http URL with port", mod: func(c *Config) { c.URL = "http://127.0.0.1:9000/hook" }},
		{name: "unlimited attempts", mod: func(c *Config) { c.URL = "https://x.example"; c.MaxAttempts = 0 }},
		{name: "start from new", mod: func(c *Config) { c.StartFrom = StartNew }},
		{name: "ftp URL", mod: func(c *Config) { c.URL = "ftp://example.org/x" }, wantErr: []string{`webhook.url: scheme "ftp" is not http or https`}},
		{name: "URL without scheme", mod: func(c *Config) { c.URL = "alerts.example.org" }, wantErr: []string{"webhook.url: scheme"}},
		{name: "URL without host", mod: func(c *Config) { c.URL = "https:///path" }, wantErr: []string{"webhook.url: has no host"}},
		{name: "unparsable URL does not echo it", mod: func(c *Config) { c.URL = "https://x.example/%zz-token" }, wantErr: []string{"webhook.url: is not a valid URL"}},
		{name: "zero timeout", mod: func(c *Config) { c.Timeout = 0 }, wantErr: []string{"webhook.timeout: 0s is outside (0, 5m]"}},
		{name: "backoffs inverted", mod: func(c *Config) { c.InitialBackoff = 2 * time.Minute }, wantErr: []string{"webhook.max_backoff: 1m0s must be between webhook.initial_backoff (2m0s) and 1h"}},
		{name: "zero initial backoff", mod: func(c *Config) { c.InitialBackoff = 0 }, wantErr: []string{"webhook.initial_backoff: 0s must be positive"}},
		{name: "negative attempts", mod: func(c *Config) { c.MaxAttempts = -1 }, wantErr: []string{"webhook.max_attempts: -1 must be 0 (unlimited) or more"}},
		{name: "bad consumer name", mod: func(c *Config) { c.Consumer = "alert.webhook" }, wantErr: []string{`webhook.consumer: "alert.webhook" must be 1-64`}},
		{name: "bad start", mod: func(c *Config) { c.StartFrom = "first" }, wantErr: []string{`webhook.start_from: "first" is not "all" or "new"`}},
		{name: "ack wait below twice the timeout", mod: func(c *Config) { c.AckWait = 8 * time.Second }, wantErr: []string{"webhook.ack_wait: 8s must be between 1s and 1h and at least twice webhook.timeout (5s)"}},
		{name: "tolerance below twice the timeout", mod: func(c *Config) { c.SignatureTolerance = 5 * time.Second }, wantErr: []string{"webhook.signature_tolerance: 5s must be between twice webhook.timeout (5s) and 24h"}},
		{name: "every problem reported", mod: func(c *Config) { c.URL = "ftp://x"; c.MaxAttempts = -2; c.Consumer = "" },
			wantErr: []string{"webhook.url", "webhook.max_attempts", "webhook.consumer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mod(&c)
			err := c.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.wantErr)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.wantErr) {
				t.Errorf("Validate() reported %d problems, want %d:\n%v", len(lines), len(tt.wantErr), err)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "token") {
				t.Errorf("Validate() echoes the URL: %v", err)
			}
		})
	}
}

func TestConfigNeverPrintsSecret(t *testing.T) {
	c := DefaultConfig()
	c.Secret = testSecret
	for _, s := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
		if strings.Contains(s, testSecret) {
			t.Errorf("config printing leaks the secret: %s", s)
		}
	}
}
