package webhook

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/cardiostream/cardiostream/internal/secret"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

// Where a new delivery consumer starts (Config.StartFrom).
const (
	// StartAll delivers every alert still in ALERTS, including those raised
	// before the notifier first ran.
	StartAll = "all"
	// StartNew delivers only alerts published after the consumer is created.
	StartNew = "new"
)

// DefaultSignatureTolerance is how old a signed request may be before
// Verify rejects it, when no tolerance is given.
const DefaultSignatureTolerance = 5 * time.Minute

// Config configures alert delivery. The zero URL disables delivery: alerts
// still land in ALERTS and are sent once a URL is configured (from where
// StartFrom says, the first time).
type Config struct {
	// URL is the http(s) endpoint alerts are POSTed to; empty disables delivery.
	// Many hosted webhook URLs embed a token in the path, so only the scheme
	// and host are ever logged.
	URL string `koanf:"url"`
	// Secret is the HMAC-SHA256 key of the X-Cardiostream-Signature header
	// (ALERT_WEBHOOK_SECRET). Empty sends unsigned requests, with a warning.
	Secret secret.String `koanf:"secret"`
	// Timeout bounds one HTTP attempt (connect, send, response headers and body).
	Timeout time.Duration `koanf:"timeout"`
	// InitialBackoff is the wait after the first failed attempt; each further
	// failure doubles it (with jitter) up to MaxBackoff.
	InitialBackoff time.Duration `koanf:"initial_backoff"`
	// MaxBackoff caps the wait between attempts, including a receiver's Retry-After.
	MaxBackoff time.Duration `koanf:"max_backoff"`
	// MaxAttempts gives up on an alert (terminates it) after that many failed
	// attempts in one process. 0 retries until delivered: the stream is the
	// outbox, and later alerts wait behind the failing one to keep order.
	MaxAttempts int `koanf:"max_attempts"`
	// Consumer is the durable consumer's name on ALERTS. Every notifier
	// process sharing it shares one delivery queue (one alert in flight).
	Consumer string `koanf:"consumer"`
	// StartFrom is where a newly created consumer begins: "all" (default,
	// nothing raised before the first start is lost) or "new". It has no
	// effect on an existing consumer.
	StartFrom string `koanf:"start_from"`
	// AckWait is how long the server waits for a sign of life before it hands
	// the alert in flight to another notifier. While retrying, the notifier
	// renews it (every AckWait/3), so it only matters when a process dies.
	AckWait time.Duration `koanf:"ack_wait"`
	// SignatureTolerance is the replay window receivers are expected to apply
	// (Verify's tolerance). The notifier signs every attempt afresh, so an
	// attempt never arrives older than Timeout; it must be well below this.
	SignatureTolerance time.Duration `koanf:"signature_tolerance"`
}

// DefaultConfig returns the defaults: delivery disabled until URL is set.
func DefaultConfig() Config {
	return Config{
		Timeout:            5 * time.Second,
		InitialBackoff:     500 * time.Millisecond,
		MaxBackoff:         time.Minute,
		MaxAttempts:        0,
		Consumer:           streams.ConsumerAlertWebhook,
		StartFrom:          StartAll,
		AckWait:            30 * time.Second,
		SignatureTolerance: DefaultSignatureTolerance,
	}
}

// Enabled reports whether a URL is configured.
func (c Config) Enabled() bool { return c.URL != "" }

// Validate checks the configuration and reports every problem, one per line.
func (c Config) Validate() error {
	var errs []error
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		switch {
		case err != nil:
			// url.Parse's error quotes the URL, which may embed a token.
			errs = append(errs, errors.New("webhook.url: is not a valid URL"))
		case u.Scheme != "http" && u.Scheme != "https":
			errs = append(errs, fmt.Errorf("webhook.url: scheme %q is not http or https", u.Scheme))
		case u.Host == "":
			errs = append(errs, errors.New("webhook.url: has no host"))
		}
	}
	if c.Timeout <= 0 || c.Timeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("webhook.timeout: %s is outside (0, 5m]", c.Timeout))
	}
	if c.InitialBackoff <= 0 {
		errs = append(errs, fmt.Errorf("webhook.initial_backoff: %s must be positive", c.InitialBackoff))
	}
	if c.MaxBackoff < c.InitialBackoff || c.MaxBackoff > time.Hour {
		errs = append(errs, fmt.Errorf("webhook.max_backoff: %s must be between webhook.initial_backoff (%s) and 1h", c.MaxBackoff, c.InitialBackoff))
	}
	if c.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("webhook.max_attempts: %d must be 0 (unlimited) or more", c.MaxAttempts))
	}
	if !schemas.ValidToken(c.Consumer) {
		errs = append(errs, fmt.Errorf("webhook.consumer: %q must be 1-64 letters, digits, '_' or '-'", c.Consumer))
	}
	if c.StartFrom != StartAll && c.StartFrom != StartNew {
		errs = append(errs, fmt.Errorf("webhook.start_from: %q is not %q or %q", c.StartFrom, StartAll, StartNew))
	}
	// An attempt starts right after a progress signal and lasts at most
	// Timeout; AckWait must outlast it with room to spare or the server would
	// redeliver an alert that is still being sent.
	if c.AckWait < time.Second || c.AckWait < 2*c.Timeout || c.AckWait > time.Hour {
		errs = append(errs, fmt.Errorf("webhook.ack_wait: %s must be between 1s and 1h and at least twice webhook.timeout (%s)", c.AckWait, c.Timeout))
	}
	if c.SignatureTolerance < 2*c.Timeout || c.SignatureTolerance > 24*time.Hour {
		errs = append(errs, fmt.Errorf("webhook.signature_tolerance: %s must be between twice webhook.timeout (%s) and 24h", c.SignatureTolerance, c.Timeout))
	}
	return errors.Join(errs...)
}
