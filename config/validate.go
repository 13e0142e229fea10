package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cardiostream/cardiostream/internal/secret"
)

// Minimum secret lengths production requires.
const (
	// MinWebhookSecretBytes: an HMAC-SHA256 key shorter than 32 bytes is
	// weaker than the hash.
	MinWebhookSecretBytes = 32
	// MinKeyBytes: API and monitoring keys shorter than this are guessable.
	MinKeyBytes = 16
)

// Validate checks the configuration for the environment it was loaded for
// (c.Env). Every problem is one line naming its key.
func (c *Config) Validate() error { return c.ValidateFor(c.Env) }

// ValidateFor checks the configuration against what env requires, whatever
// c.Env says (e.g. "would this configuration pass in production?").
//
// All environments: every component's Validate, well-formed NATS, HTTP, log
// and model settings, readable files, and cross-checks between components.
// Production also requires an https alert webhook with a signing secret of at
// least MinWebhookSecretBytes, durable NATS (nats.embedded.sync_always, or an
// external NATS), an embedded server on loopback only, file storage, API and
// monitoring keys of at least MinKeyBytes that differ, and JSON logs.
// Staging has the checks of every environment.
func (c *Config) ValidateFor(env string) error {
	var ps problems
	if !slices.Contains(Environments(), env) {
		ps.add(ErrUnknownEnvironment, "env", fmt.Sprintf("%q is not an environment; valid environments are %s", env, strings.Join(Environments(), ", ")))
	}
	if !c.NATS.External() {
		ps.addComponent("nats.embedded", c.NATS.Embedded.Validate())
	}
	ps.addComponent("streams", c.Streams.Validate())
	ps.addComponent("scorer", c.Scorer.Validate())
	ps.addComponent("monitor", c.Monitor.Validate())
	ps.addComponent("webhook", c.Webhook.Validate())
	ps.addComponent("ingest", c.Ingest.Validate())
	ps.addComponent("registry", c.RegistryConfig().Validate())
	c.validateNATS(&ps)
	c.validateOwn(&ps)
	c.crossCheck(&ps)
	if env == Production {
		c.validateProduction(&ps)
	}
	return ps.err()
}

func (c *Config) validateNATS(ps *problems) {
	n := c.NATS
	if n.External() {
		for _, raw := range strings.Split(n.URL, ",") {
			raw = strings.TrimSpace(raw)
			u, err := url.Parse(raw)
			switch {
			case err != nil:
				// url.Parse's error quotes the URL, which may hold a password.
				ps.add(ErrInvalid, "nats.url", "is not a valid URL (comma-separated nats://, tls://, ws:// or wss:// URLs)")
			case !slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme):
				ps.add(ErrInvalid, "nats.url", fmt.Sprintf("%q: scheme must be nats, tls, ws or wss", redactURL(raw)))
			case u.Hostname() == "":
				ps.add(ErrInvalid, "nats.url", fmt.Sprintf("%q has no host", redactURL(raw)))
			}
		}
	} else {
		const why = "applies only to an external NATS (nats.url); the embedded server has no authentication or TLS"
		if n.TLS.Enabled() {
			ps.add(ErrInvalid, "nats.tls", why)
		}
		if n.CredsFile != "" {
			ps.add(ErrInvalid, "nats.creds_file", why)
		}
		if n.Token.IsSet() {
			ps.add(ErrInvalid, "nats.token", why)
		}
		if c.Streams.Replicas > 1 {
			ps.add(ErrInvalid, "streams.replicas", fmt.Sprintf("%d needs a NATS cluster (nats.url); the embedded server is a single node, use 1", c.Streams.Replicas))
		}
		if c.Monitor.Replicas > 1 {
			ps.add(ErrInvalid, "monitor.replicas", fmt.Sprintf("%d needs a NATS cluster (nats.url); the embedded server is a single node, use 1", c.Monitor.Replicas))
		}
	}
	if n.ConnectTimeout <= 0 || n.ConnectTimeout > 5*time.Minute {
		ps.add(ErrInvalid, "nats.connect_timeout", fmt.Sprintf("%s is outside (0, 5m]", n.ConnectTimeout))
	}
	if n.ReconnectWait <= 0 || n.ReconnectWait > 5*time.Minute {
		ps.add(ErrInvalid, "nats.reconnect_wait", fmt.Sprintf("%s is outside (0, 5m]", n.ReconnectWait))
	}
	if n.MaxReconnects < -1 {
		ps.add(ErrInvalid, "nats.max_reconnects", fmt.Sprintf("%d must be -1 (never give up) or 0 or more", n.MaxReconnects))
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		ps.add(ErrInvalid, "nats.tls.cert_file", "and nats.tls.key_file must be given together (mutual TLS)")
	}
	checkFile(ps, "nats.tls.ca_file", n.TLS.CAFile)
	checkFile(ps, "nats.tls.cert_file", n.TLS.CertFile)
	checkFile(ps, "nats.tls.key_file", n.TLS.KeyFile)
	checkFile(ps, "nats.creds_file", n.CredsFile)
}

func (c *Config) validateOwn(ps *problems) {
	checkModelPath(ps, c.Model.Path)

	if _, err := checkListen(c.HTTP.Listen); err != nil {
		ps.add(ErrInvalid, "http.listen", err.Error())
	}
	if c.HTTP.ReadHeaderTimeout <= 0 || c.HTTP.ReadHeaderTimeout > time.Minute {
		ps.add(ErrInvalid, "http.read_header_timeout", fmt.Sprintf("%s is outside (0, 1m]", c.HTTP.ReadHeaderTimeout))
	}

	if !slices.Contains(logLevels, c.Log.Level) {
		ps.add(ErrInvalid, "log.level", fmt.Sprintf("%q is not one of %s", c.Log.Level, strings.Join(logLevels, ", ")))
	}
	if !slices.Contains(logFormats, c.Log.Format) {
		ps.add(ErrInvalid, "log.format", fmt.Sprintf("%q is not one of %s", c.Log.Format, strings.Join(logFormats, ", ")))
	}

	for key, s := range c.secrets() {
		if v := s.Reveal(); v != strings.TrimSpace(v) {
			ps.add(ErrInvalid, key, "has leading or trailing whitespace (a newline from a secret file?); remove it")
		}
	}
}

// crossCheck checks settings that must agree across components.
func (c *Config) crossCheck(ps *problems) {
	// A record redelivered after the PREDICTIONS dedup window forgot its
	// message id would store a second prediction.
	horizon := c.Scorer.AckWait * time.Duration(c.Scorer.MaxDeliver)
	if c.Scorer.AckWait > 0 && c.Scorer.MaxDeliver > 0 && c.Streams.DuplicateWindow < horizon {
		ps.add(ErrInvalid, "streams.duplicate_window", fmt.Sprintf(
			"%s is shorter than scorer.ack_wait × scorer.max_deliver (%s × %d = %s): a redelivered record could store a second prediction",
			c.Streams.DuplicateWindow, c.Scorer.AckWait, c.Scorer.MaxDeliver, horizon))
	}
}

func (c *Config) validateProduction(ps *problems) {
	const req = "production requires "

	switch u, err := url.Parse(c.Webhook.URL); {
	case c.Webhook.URL == "":
		ps.add(ErrInvalid, "webhook.url", req+"an https alert webhook (ALERT_WEBHOOK); none is set")
	case err == nil && u.Scheme != "https":
		ps.add(ErrInvalid, "webhook.url", fmt.Sprintf(req+"https, got %q", redactURL(c.Webhook.URL)))
	}
	if n := len(c.Webhook.Secret.Reveal()); n == 0 {
		ps.add(ErrInvalid, "webhook.secret", fmt.Sprintf(req+"a signing secret (ALERT_WEBHOOK_SECRET) of at least %d bytes; none is set", MinWebhookSecretBytes))
	} else if n < MinWebhookSecretBytes {
		ps.add(ErrInvalid, "webhook.secret", fmt.Sprintf(req+"at least %d bytes, got %d (e.g. openssl rand -hex 32)", MinWebhookSecretBytes, n))
	}

	if !c.NATS.External() {
		if !c.NATS.Embedded.SyncAlways {
			ps.add(ErrInvalid, "nats.embedded.sync_always", req+"true (fsync before acknowledging: lazy fsync loses acknowledged records on power loss) or an external NATS (nats.url)")
		}
		if host, err := checkListen(c.NATS.Embedded.Listen); err == nil && !isLoopback(host) {
			ps.add(ErrInvalid, "nats.embedded.listen", fmt.Sprintf(req+"a loopback address for the embedded server, which has no authentication or TLS; got %q", c.NATS.Embedded.Listen))
		}
	}
	if c.Streams.Storage == "memory" {
		ps.add(ErrInvalid, "streams.storage", req+`"file" (memory storage loses every stream on restart), got "memory"`)
	}

	for _, k := range []struct {
		key, env string
		val      secret.String
	}{
		{"security.api_key", "API_KEY", c.Security.APIKey},
		{"security.monitoring_key", "MONITORING_KEY", c.Security.MonitoringKey},
	} {
		if n := len(k.val.Reveal()); n == 0 {
			ps.add(ErrInvalid, k.key, fmt.Sprintf(req+"a key (%s) of at least %d bytes; none is set", k.env, MinKeyBytes))
		} else if n < MinKeyBytes {
			ps.add(ErrInvalid, k.key, fmt.Sprintf(req+"at least %d bytes, got %d", MinKeyBytes, n))
		}
	}
	if c.Security.APIKey.IsSet() && c.Security.APIKey == c.Security.MonitoringKey {
		ps.add(ErrInvalid, "security.monitoring_key", "must differ from security.api_key (whoever scrapes /metrics must not hold the API key)")
	}

	if c.Log.Format != "json" {
		ps.add(ErrInvalid, "log.format", fmt.Sprintf(req+"json, got %q", c.Log.Format))
	}
}

// secrets returns every secret field by key.
func (c *Config) secrets() map[string]secret.String {
	return map[string]secret.String{
		"nats.token":              c.NATS.Token,
		"webhook.secret":          c.Webhook.Secret,
		"security.api_key":        c.Security.APIKey,
		"security.monitoring_key": c.Security.MonitoringKey,
	}
}

// checkFile reports a set path that is not a readable regular file.
func checkFile(ps *problems, key, path string) {
	if path == "" {
		return
	}
	st, err := os.Stat(path)
	switch {
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		ps.add(ErrInvalid, key, fmt.Sprintf("%q: %v", path, err))
	case !st.Mode().IsRegular():
		ps.add(ErrInvalid, key, fmt.Sprintf("%q is not a regular file", path))
	}
}

// checkModelPath reports a set model path that is neither an artifact
// directory with a manifest.json nor a readable manifest file.
func checkModelPath(ps *problems, path string) {
	if path == "" {
		return
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		checkFile(ps, "model.path", filepath.Join(path, "manifest.json"))
		return
	}
	checkFile(ps, "model.path", path)
}

// checkListen checks a host:port listen address and returns the host.
func checkListen(listen string) (string, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port", listen)
	}
	if port, err := strconv.Atoi(p); err != nil || port < 0 || port > 65535 {
		return "", fmt.Errorf("%q: port must be 0-65535", listen)
	}
	return host, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RedactURLs is redactURL over a comma-separated list of URLs (a NATS
// server list): what logs and errors may show of a configured URL.
func RedactURLs(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		parts[i] = redactURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// redactURL drops a URL's credentials and path (webhook URLs often carry a
// token in the path) for messages and Redacted.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "<unparsable URL>"
	}
	out := u.Scheme + "://" + u.Host
	if u.User != nil {
		out = u.Scheme + "://REDACTED@" + u.Host
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		out += "/…"
	}
	return out
}
