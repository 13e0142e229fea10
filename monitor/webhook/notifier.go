package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardiostream/cardiostream/internal/ctxtime"
	"github.com/cardiostream/cardiostream/schemas"
)

// Option changes a Notifier's behaviour (mostly for tests).
type Option func(*Notifier)

// WithNow sets the clock used for request timestamps and the
// last-success gauge.
func WithNow(now func() time.Time) Option { return func(n *Notifier) { n.now = now } }

// WithVersion sets the version in the User-Agent ("cardiostream/<version>");
// by default it is the module version from the build info, or "dev".
func WithVersion(version string) Option {
	return func(n *Notifier) { n.userAgent = "cardiostream/" + version }
}

// Notifier delivers the alerts of the ALERTS stream to the configured webhook.
type Notifier struct {
	cfg       Config
	js        jetstream.JetStream
	subjects  schemas.Subjects
	client    *http.Client
	target    string // the URL with path and query hidden, for logs and errors
	userAgent string
	now       func() time.Time
	log       *slog.Logger
	m         *metrics

	running atomic.Bool

	mu       sync.Mutex
	notReady error // nil once consuming

	// lastErrKind is the kind of the last failed attempt ("" after a
	// success), so failures are logged when they change, not every attempt.
	// Only Run's goroutine touches it.
	lastErrKind string
}

// New returns a Notifier for cfg. client may be nil (a client with its own
// transport is made); the notifier never follows redirects, so it copies the
// client rather than change the caller's. Metrics are registered on reg.
// Nothing touches the network before Run.
func New(cfg Config, js jetstream.JetStream, subjects schemas.Subjects, client *http.Client, reg prometheus.Registerer, log *slog.Logger, opts ...Option) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webhook config: %w", err)
	}
	if err := subjects.Validate(); err != nil {
		return nil, fmt.Errorf("webhook subjects: %w", err)
	}
	if js == nil && cfg.Enabled() {
		return nil, errors.New("webhook: a JetStream context is required when webhook.url is set")
	}
	if reg == nil {
		reg = prometheus.NewRegistry() // metrics unobserved, but the code paths stay the same
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering webhook metrics: %w", err)
	}
	var c http.Client
	if client != nil {
		c = *client
	} else {
		c.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	// A redirect would re-send a signed alert somewhere the operator did not
	// configure (and turn the POST into a GET on 301-303): the 3xx is
	// reported instead, so the URL gets fixed.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	n := &Notifier{
		cfg:       cfg,
		js:        js,
		subjects:  subjects,
		client:    &c,
		target:    redactURL(cfg.URL),
		userAgent: "cardiostream/" + buildVersion(),
		now:       time.Now,
		log:       log.With("component", "webhook"),
		m:         m,
		notReady:  fmt.Errorf("%w: not started", ErrNotReady),
	}
	for _, o := range opts {
		o(n)
	}
	return n, nil
}

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Ready returns nil while the notifier is consuming ALERTS (or always, when
// delivery is disabled). It does not depend on the receiver: a receiver that
// is down is reported by metrics and logs, and alerts wait in the stream.
func (n *Notifier) Ready() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.notReady
}

func (n *Notifier) setReady(err error) {
	n.mu.Lock()
	n.notReady = err
	n.mu.Unlock()
}

// Run delivers alerts until ctx ends. It creates (or updates) the durable
// consumer, retrying while JetStream or the ALERTS stream is unavailable.
// When ctx ends, an HTTP attempt in flight is allowed to finish (bounded by
// Timeout) so a delivered alert is acknowledged; an alert not yet delivered
// is handed back to the server, to be delivered after a restart or by
// another notifier. It returns nil when ctx ends, or an error if called twice.
func (n *Notifier) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("webhook: Run called twice")
	}
	defer n.running.Store(false)

	if !n.cfg.Enabled() {
		n.log.Info("alert webhook delivery disabled (no webhook.url); alerts are kept in the ALERTS stream")
		n.setReady(nil)
		<-ctx.Done()
		return nil
	}
	if !n.cfg.Secret.IsSet() {
		n.log.Warn("alert webhook secret is not set: alerts are sent unsigned and receivers cannot authenticate them; set ALERT_WEBHOOK_SECRET", "url", n.target)
	}
	n.log.Info("alert webhook delivery starting", "url", n.target, "consumer", n.cfg.Consumer, "signed", n.cfg.Secret.IsSet())

	var failures int
	for {
		cons, err := n.ensureConsumer(ctx)
		if err != nil {
			return nil // ctx ended while setting up
		}
		err = n.consume(ctx, cons)
		if ctx.Err() != nil {
			n.log.Info("alert webhook delivery stopped")
			return nil
		}
		// The iterator ended on its own (consumer deleted, connection
		// closed): set it up again after a pause.
		failures++
		n.setReady(fmt.Errorf("%w: consuming ALERTS: %w", ErrNotReady, err))
		n.log.Warn("alert webhook consumer stopped; setting it up again", "err", err)
		if !ctxtime.Sleep(ctx, n.backoff(failures, nil)) {
			return nil
		}
	}
}
