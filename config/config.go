package config

import (
	_ "embed"
	"time"

	"github.com/cardiostream/cardiostream/ingest"
	"github.com/cardiostream/cardiostream/internal/natsserver"
	"github.com/cardiostream/cardiostream/internal/registry"
	"github.com/cardiostream/cardiostream/internal/secret"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/monitor"
	"github.com/cardiostream/cardiostream/monitor/webhook"
	"github.com/cardiostream/cardiostream/scorer"
)

// The deployment environments.
const (
	Development = "development"
	Staging     = "staging"
	Production  = "production"
)

// Environments returns the valid environment names, least strict first.
func Environments() []string { return []string{Development, Staging, Production} }

//go:embed environments.yml
var environmentsYAML []byte

// EnvironmentsYAML returns the embedded environments.yml (for
// "config environments"-style commands and for copying as a starting point).
func EnvironmentsYAML() []byte { return append([]byte(nil), environmentsYAML...) }

// Config is the whole configuration of a cardiostream process.
type Config struct {
	// Env is the deployment environment the configuration was loaded for.
	Env     string         `koanf:"env"`
	NATS    NATS           `koanf:"nats"`
	Streams streams.Config `koanf:"streams"`
	Scorer  scorer.Config  `koanf:"scorer"`
	Monitor monitor.Config `koanf:"monitor"`
	Webhook webhook.Config `koanf:"webhook"`
	Ingest  ingest.Config  `koanf:"ingest"`
	Model   Model          `koanf:"model"`
	// Registry configures the model registry (buckets, gates, public keys).
	Registry registry.Config `koanf:"registry"`
	HTTP     HTTP            `koanf:"http"`
	Log      Log             `koanf:"log"`
	// Security holds the credentials of cardiostream's own HTTP endpoints.
	Security Security `koanf:"security"`

	// sources maps a key to the layer that set its value; keys not in it
	// keep their built-in default.
	sources map[string]string
}

// NATS says how to reach NATS: an external server or cluster (URL), or,
// when URL is empty, the embedded server.
type NATS struct {
	// URL is one or more comma-separated nats://, tls://, ws:// or wss://
	// URLs. Empty runs the embedded server (Embedded).
	URL string `koanf:"url"`
	// Name is the client connection name shown by the server's monitoring.
	Name string `koanf:"name"`
	// ConnectTimeout bounds one connection attempt.
	ConnectTimeout time.Duration `koanf:"connect_timeout"`
	// ReconnectWait is the longest pause between reconnection attempts: they
	// start 100 ms apart and back off exponentially up to it (ReconnectDelay).
	ReconnectWait time.Duration `koanf:"reconnect_wait"`
	// MaxReconnects is how many reconnection attempts are made before the
	// connection gives up; -1 never gives up (a service should not).
	MaxReconnects int `koanf:"max_reconnects"`
	// Token authenticates to the server (token auth).
	Token secret.String `koanf:"token"`
	// CredsFile is a NATS .creds file (JWT + NKey seed) for decentralised auth.
	CredsFile string `koanf:"creds_file"`
	// TLS configures TLS to an external server.
	TLS TLS `koanf:"tls"`
	// Embedded configures the embedded server used when URL is empty.
	Embedded natsserver.Config `koanf:"embedded"`
}

// External reports whether an external NATS is configured (otherwise the
// embedded server runs).
func (n NATS) External() bool { return n.URL != "" }

// TLS holds PEM file paths for TLS to NATS.
type TLS struct {
	// CAFile verifies the server's certificate (instead of the system roots).
	CAFile string `koanf:"ca_file"`
	// CertFile and KeyFile are the client certificate for mutual TLS.
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
}

// Enabled reports whether any TLS setting is given.
func (t TLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Model says which model the scorer loads.
type Model struct {
	// Path is a model file; empty uses the model embedded in the binary.
	Path string `koanf:"path"`
}

// HTTP configures the HTTP server (metrics, health, readiness).
type HTTP struct {
	// Listen is host:port. The default is loopback only.
	Listen string `koanf:"listen"`
	// ReadHeaderTimeout bounds how long a client may take to send request
	// headers (a slow client cannot hold connections open forever).
	ReadHeaderTimeout time.Duration `koanf:"read_header_timeout"`
}

// Log configures the process logger.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `koanf:"level"`
	// Format is text (for people) or json (for log collectors).
	Format string `koanf:"format"`
}

// Security holds the credentials cardiostream's endpoints check.
type Security struct {
	// APIKey is the key clients present to cardiostream's API (API_KEY).
	APIKey secret.String `koanf:"api_key"`
	// MonitoringKey is the bearer token that protects /metrics when set
	// (MONITORING_KEY); unset leaves /metrics open.
	MonitoringKey secret.String `koanf:"monitoring_key"`
}

// Default returns the built-in defaults: every component's DefaultConfig()
// and this package's own sections, before any environment, file, variable or
// flag is applied. Env is development.
func Default() Config {
	return Config{
		Env: Development,
		NATS: NATS{
			Name:           "cardiostream",
			ConnectTimeout: 5 * time.Second,
			ReconnectWait:  2 * time.Second,
			MaxReconnects:  -1,
			Embedded: natsserver.Config{
				Listen:       "127.0.0.1:4222",
				DataDir:      "./cardiostream-data",
				SyncAlways:   false,
				ServerName:   "cardiostream",
				StartTimeout: 10 * time.Second,
			},
		},
		Streams:  streams.DefaultConfig(),
		Scorer:   scorer.DefaultConfig(),
		Monitor:  monitor.DefaultConfig(),
		Webhook:  webhook.DefaultConfig(),
		Ingest:   ingest.DefaultConfig(),
		Registry: registry.DefaultConfig(),
		HTTP: HTTP{
			Listen:            "127.0.0.1:9090",
			ReadHeaderTimeout: 5 * time.Second,
		},
		Log: Log{Level: "info", Format: "text"},
	}
}

// Source returns where key's value came from: "default", "environments.yml
// (production)", "file PATH", "env NAME" or "flag --NAME". Keys are koanf
// paths such as "scorer.batch_size".
func (c *Config) Source(key string) string {
	if s, ok := c.sources[key]; ok {
		return s
	}
	return sourceDefault
}

// Sources returns, for every key not at its built-in default, where its
// value came from.
func (c *Config) Sources() map[string]string {
	out := make(map[string]string, len(c.sources))
	for k, v := range c.sources {
		out[k] = v
	}
	return out
}
