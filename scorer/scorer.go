package scorer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/cardiostream/cardiostream/schemas"
)

// Option changes an optional behaviour of New.
type Option func(*options)

type options struct {
	now func() time.Time
	// beforeSettle, when set, is called by the acker with every batch after
	// its publishes were sent and before their acks are awaited; tests use
	// it to hold a batch in flight.
	beforeSettle func(n int)
	// intake, when set, is called by the consume handler after each record
	// was queued for the workers; tests use it to know what is buffered.
	intake func()
	// instance, when set, names this scorer in the ScorerHeader of every
	// output it publishes.
	instance string
}

// WithClock sets the clock used for scored_at, latency and dead_lettered_at.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithInstance names this scorer (e.g. "cardiostream-scorer@host pid 42"):
// every prediction, shadow prediction and dead letter it publishes carries
// the name in the schemas.ScorerHeader header, so an operator (or a test)
// can tell which of several scorers sharing the consumer made an output.
// Empty (the default) adds no header.
func WithInstance(name string) Option {
	return func(o *options) { o.instance = name }
}

// Stats counts what this process did since New.
type Stats struct {
	Received     uint64 // deliveries received, redeliveries included
	Scored       uint64 // records acked after their prediction was stored
	DeadLettered uint64 // records terminated after their dead letter was stored
	Retried      uint64 // NAKs with delay after a transient failure
	Duplicates   uint64 // outputs already stored by an earlier delivery (redeliveries)
}

// Scorer scores records from the shared durable consumer. Create it with New
// and call Run once.
type Scorer struct {
	cfg      Config
	js       jetstream.JetStream // consumer management and consumption (cmd's)
	pub      jetstream.JetStream // publishing: our own context, see doc.go
	subjects schemas.Subjects
	m        *metrics
	log      *slog.Logger
	now      func() time.Time
	opts     options

	// models is the active and shadow model; SetModels swaps it (under mu,
	// so the model_info metrics follow the order of the swaps).
	models atomic.Pointer[modelSet]
	mu     sync.Mutex

	started atomic.Bool
	state   atomic.Pointer[string] // nil while consuming, else why not ready

	received, scored, deadLettered, retried, duplicates atomic.Uint64

	// abort is closed when the shutdown timeout expires (set by Run before
	// any worker starts).
	abort <-chan struct{}

	// dupWindow is the shortest duplicate window of PREDICTIONS and
	// DEADLETTER (nanoseconds; 0 while unknown), see stored.go.
	dupWindow atomic.Int64

	// instanceHdr is the ScorerHeader value (WithInstance), nil for none;
	// shared by every output's header, never modified (cap 1).
	instanceHdr []string

	errLog  changeLogger
	batches sync.Pool           // *batch
	budget  *semaphore.Weighted // maxBufferedBytes: payload bytes between delivery and settlement

	predSubjects     sync.Map // source → prediction subject
	predSubjectCount atomic.Int64
}

// New checks its arguments and returns a Scorer. It creates its own
// JetStream publishing context on js.Conn() (see doc.go) and registers the
// metrics on reg (nil: not registered).
func New(cfg Config, js jetstream.JetStream, subjects schemas.Subjects, model Model, reg prometheus.Registerer, log *slog.Logger, opts ...Option) (*Scorer, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := subjects.Validate(); err != nil {
		errs = append(errs, err)
	}
	if js == nil || js.Conn() == nil {
		errs = append(errs, errors.New("js: a JetStream on a connection is required"))
	}
	set, err := newModelSet(model, nil)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	pub, err := newPublisher(js, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the publishing context: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	m.setModels(nil, set)
	s := &Scorer{
		cfg: cfg, js: js, pub: pub, subjects: subjects, m: m, now: o.now, opts: o,
		log:    log.With("component", "scorer", "consumer", cfg.Consumer),
		budget: semaphore.NewWeighted(maxBufferedBytes),
	}
	if o.instance != "" {
		s.instanceHdr = []string{o.instance}[:1:1]
	}
	s.models.Store(set)
	s.errLog.log = s.log
	s.setNotReady("not started")
	return s, nil
}

// newPublisher returns a JetStream context on js's connection, with js's API
// prefix or domain, whose async publishes are bounded and time out.
func newPublisher(js jetstream.JetStream, cfg Config) (jetstream.JetStream, error) {
	o := js.Options()
	// Every record in this process has at most two publishes outstanding
	// (its prediction and, with a shadow model, its shadow prediction), and
	// at most MaxAckPending records are delivered unacked.
	jsOpts := []jetstream.JetStreamOpt{
		jetstream.WithPublishAsyncMaxPending(2 * (cfg.MaxAckPending + cfg.BatchSize)),
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout),
	}
	if o.DefaultTimeout > 0 {
		jsOpts = append(jsOpts, jetstream.WithDefaultTimeout(o.DefaultTimeout))
	}
	if o.ClientTrace != nil {
		jsOpts = append(jsOpts, jetstream.WithClientTrace(o.ClientTrace))
	}
	switch {
	case o.Domain != "":
		return jetstream.NewWithDomain(js.Conn(), o.Domain, jsOpts...)
	case o.APIPrefix != "":
		return jetstream.NewWithAPIPrefix(js.Conn(), o.APIPrefix, jsOpts...)
	default:
		return jetstream.New(js.Conn(), jsOpts...)
	}
}

// Ready returns nil while the consumer exists and the scorer is consuming.
func (s *Scorer) Ready() error {
	if why := s.state.Load(); why != nil {
		return fmt.Errorf("%w: %s", ErrNotReady, *why)
	}
	return nil
}

func (s *Scorer) setReady()              { s.state.Store(nil) }
func (s *Scorer) setNotReady(why string) { s.state.Store(&why) }

// Stats returns this process's counters.
func (s *Scorer) Stats() Stats {
	return Stats{
		Received:     s.received.Load(),
		Scored:       s.scored.Load(),
		DeadLettered: s.deadLettered.Load(),
		Retried:      s.retried.Load(),
		Duplicates:   s.duplicates.Load(),
	}
}

// ConsumerConfig is the durable consumer every scorer creates or updates.
//
// MaxDeliver on the server is unlimited on purpose: the scorer enforces
// Config.MaxDeliver itself by dead-lettering a record on its last allowed
// delivery. A server-side limit would silently drop a record whose last
// delivery could not be dead-lettered (DEADLETTER unavailable, scorer
// killed); this way it is redelivered until its dead letter is stored.
func (s *Scorer) ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       s.cfg.Consumer,
		Description:   "cardiostream scorers: records to predictions (max_deliver enforced by the scorer)",
		FilterSubject: s.subjects.AllRecords(),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: s.cfg.MaxAckPending,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
		// Replicas 0: inherit the stream's.
	}
}

// backoff is the NAK delay after a failure on delivery n: NakDelay doubled
// per delivery, capped at AckWait, with ±10% jitter so records that failed
// together do not return together.
func (s *Scorer) backoff(n uint64) time.Duration {
	d := s.cfg.NakDelay
	for i := uint64(1); i < n && d < s.cfg.AckWait; i++ {
		d *= 2
	}
	d = min(d, s.cfg.AckWait)
	if d <= 0 {
		return 0
	}
	j := time.Duration(float64(d) * 0.1 * (2*rand.Float64() - 1))
	return d + j
}

// backPressureDelay caps the NAK delay of a record whose output stream was
// full or unavailable: short enough that scoring resumes within seconds of
// the stream taking messages again, long enough that MaxAckPending records
// retried in a loop stay a light load.
func (s *Scorer) backPressureDelay() time.Duration {
	return min(s.cfg.AckWait, max(s.cfg.NakDelay, maxBackPressureDelay))
}

// maxBackPressureDelay: see backPressureDelay.
const maxBackPressureDelay = 2 * time.Second

// changeLogger logs an error for a key only when it differs from the last
// one logged for that key, and logs the recovery once.
type changeLogger struct {
	log  *slog.Logger
	mu   sync.Mutex
	last map[string]string
}

func (c *changeLogger) failed(key string, err error, attrs ...any) {
	msg := err.Error()
	c.mu.Lock()
	if c.last == nil {
		c.last = make(map[string]string)
	}
	same := c.last[key] == msg
	c.last[key] = msg
	c.mu.Unlock()
	if !same {
		c.log.Warn(key+" failed", append([]any{"err", err}, attrs...)...)
	}
}

func (c *changeLogger) ok(key string) {
	c.mu.Lock()
	_, was := c.last[key]
	delete(c.last, key)
	c.mu.Unlock()
	if was {
		c.log.Info(key + " recovered")
	}
}

// checkDuplicateWindow warns when PREDICTIONS forgets message ids sooner
// than a record can be redelivered.
func (s *Scorer) checkDuplicateWindow(ctx context.Context) {
	st, err := s.js.Stream(ctx, schemas.StreamPredictions)
	if err != nil {
		s.log.Warn("cannot read the PREDICTIONS stream to check its duplicate window", "err", err)
		return
	}
	info := st.CachedInfo()
	window := info.Config.Duplicates
	if dl, err := s.js.Stream(ctx, schemas.StreamDeadLetter); err == nil {
		window = min(window, dl.CachedInfo().Config.Duplicates)
	}
	s.setDuplicateWindow(window)
	if h := s.cfg.RedeliveryHorizon(); info.Config.Duplicates < h {
		s.log.Warn("PREDICTIONS duplicate window is shorter than the redelivery horizon: a late redelivery can store a second prediction",
			"duplicate_window", info.Config.Duplicates, "redelivery_horizon", h)
	}
}

// withIntake is a test hook: f runs after each delivered record was queued
// for the workers.
func withIntake(f func()) Option {
	return func(o *options) { o.intake = f }
}

// withBeforeSettle is a test hook: f runs in the acker before each batch's
// publish acks are awaited.
func withBeforeSettle(f func(n int)) Option {
	return func(o *options) { o.beforeSettle = f }
}

// header is an output's headers: its message id and, with WithInstance, the
// scorer's name.
func (s *Scorer) header(id []string) nats.Header {
	if s.instanceHdr == nil {
		return nats.Header{jetstream.MsgIDHeader: id}
	}
	return nats.Header{jetstream.MsgIDHeader: id, schemas.ScorerHeader: s.instanceHdr}
}
