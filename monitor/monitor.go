package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

// Option customises a Monitor.
type Option func(*Monitor)

// WithClock replaces time.Now: it stamps ledger events, ages the windows and
// the pending joins, and times the alert rules.
func WithClock(now func() time.Time) Option {
	return func(m *Monitor) { m.now = now }
}

// Monitor joins predictions with outcomes, computes the live metrics and
// publishes alert transitions. Create it with New and start it with Run.
type Monitor struct {
	cfg      Config
	js       jetstream.JetStream
	subjects schemas.Subjects
	log      *slog.Logger
	now      func() time.Time
	metrics  *metrics

	running     atomic.Bool
	ready       atomic.Bool  // the ledger is replayed up to its start-up end
	consuming   atomic.Bool  // the input consumers are being read
	evaluations atomic.Int64 // completed rule evaluations (tests wait on it)

	// Set by setup, before any goroutine that uses them starts.
	pending jetstream.KeyValue
	joined  jetstream.KeyValue
	state   jetstream.KeyValue
	alerts  jetstream.Stream

	// mu guards the fold and the rule states (read by Snapshot).
	mu    sync.Mutex
	agg   *aggregator
	rules []*ruleRun

	// updated is signalled by the ledger reader when it has caught up with
	// the stream, so the rules are evaluated right after each batch.
	updated chan struct{}
}

type ruleRun struct {
	rule     Rule
	st       ruleState
	fired    int64
	resolved int64
	errs     *errorLog
}

// New validates cfg and builds a monitor; it does no I/O (Run does).
func New(cfg Config, js jetstream.JetStream, subjects schemas.Subjects, reg prometheus.Registerer, log *slog.Logger, opts ...Option) (*Monitor, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := subjects.Validate(); err != nil {
		errs = append(errs, err)
	}
	if js == nil {
		errs = append(errs, errors.New("jetstream: nil"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Monitor{
		cfg:      cfg,
		js:       js,
		subjects: subjects,
		log:      log.With("component", "monitor"),
		now:      time.Now,
		agg:      newAggregator(cfg),
		updated:  make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(m)
	}
	for _, r := range cfg.Rules {
		m.rules = append(m.rules, &ruleRun{rule: r, st: ruleState{Status: RuleInactive}, errs: newErrorLog(m.log, "alert rule", "rule", r.Name)})
	}
	mt, err := newMetrics(reg, m)
	if err != nil {
		return nil, fmt.Errorf("registering monitor metrics: %w", err)
	}
	m.metrics = mt
	return m, nil
}

// Ready returns nil once the consumers and buckets exist, the ledger has
// been replayed up to where it stood at start-up, and the inputs are being
// consumed.
func (m *Monitor) Ready() error {
	if !m.ready.Load() || !m.consuming.Load() {
		return ErrNotReady
	}
	return nil
}

// Run sets up the JetStream resources (retrying until ctx ends), rebuilds the
// aggregates, then consumes until ctx ends. On shutdown it drains the input
// consumers, lets in-flight messages finish (bounded by ShutdownTimeout),
// and saves a checkpoint. It returns nil on a clean shutdown.
func (m *Monitor) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	target, err := m.setupWithRetry(ctx)
	if err != nil {
		return nil // ctx ended during setup: a clean shutdown
	}

	// In-flight work gets its own context so that shutdown can let it finish.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	reader, err := m.startLedgerReader(ctx, target)
	if err != nil {
		if ctx.Err() != nil {
			return nil // ctx ended during start-up: a clean shutdown
		}
		return err
	}
	ln := m.startLanes(workCtx)
	consumers, err := m.startInputs(ctx, workCtx, ln)
	if err != nil {
		ln.stop()
		reader.Stop()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	m.consuming.Store(true)

	var wg sync.WaitGroup
	wg.Go(func() { m.evaluateLoop(ctx, workCtx) })
	<-ctx.Done()

	m.log.Info("monitor stopping")
	deadline := time.AfterFunc(m.cfg.ShutdownTimeout, cancelWork)
	defer deadline.Stop()
	for _, cc := range consumers {
		cc.Drain()
	}
	for _, cc := range consumers {
		select {
		case <-cc.Closed():
		case <-workCtx.Done():
			cc.Stop()
		}
	}
	ln.stop()
	wg.Wait()
	reader.Stop()
	<-reader.Closed()
	if err := m.checkpoint(workCtx); err != nil {
		m.log.Warn("final checkpoint failed; the next start replays more of the ledger", "err", err)
	}
	m.ready.Store(false)
	m.consuming.Store(false)
	m.log.Info("monitor stopped")
	return nil
}

// setupWithRetry creates the ledger, the buckets and the consumers, loads the
// checkpoint and the alert states. It returns the ledger's last sequence: the
// replay target that makes the monitor ready.
func (m *Monitor) setupWithRetry(ctx context.Context) (uint64, error) {
	errs := newErrorLog(m.log, "monitor setup")
	delay := 100 * time.Millisecond
	for {
		target, err := m.setup(ctx)
		if err == nil {
			errs.ok()
			return target, nil
		}
		errs.failed(err)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func (m *Monitor) setup(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*m.cfg.OpTimeout)
	defer cancel()
	ledger, err := streams.EnsureStream(ctx, m.js, ledgerStreamConfig(m.cfg, m.subjects))
	if err != nil {
		return 0, fmt.Errorf("creating ledger stream %s: %w", m.cfg.Ledger.Stream, err)
	}
	m.pending, err = streams.EnsureKeyValue(ctx, m.js, jetstream.KeyValueConfig{
		Bucket:      m.cfg.PendingBucket,
		Description: "cardiostream monitor: the side of each join that arrived first",
		History:     1,
		TTL:         m.cfg.LabelDeadline,
		Storage:     jetstream.FileStorage,
		Replicas:    m.cfg.Replicas,
	})
	if err != nil {
		return 0, fmt.Errorf("creating pending bucket %s: %w", m.cfg.PendingBucket, err)
	}
	m.joined, err = streams.EnsureKeyValue(ctx, m.js, jetstream.KeyValueConfig{
		Bucket:      m.cfg.JoinedBucket,
		Description: "cardiostream monitor: records already joined, to drop duplicates that outlive their pending entry",
		History:     1,
		TTL:         m.cfg.JoinedTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    m.cfg.Replicas,
	})
	if err != nil {
		return 0, fmt.Errorf("creating joined bucket %s: %w", m.cfg.JoinedBucket, err)
	}
	m.state, err = streams.EnsureKeyValue(ctx, m.js, jetstream.KeyValueConfig{
		Bucket:      m.cfg.StateBucket,
		Description: "cardiostream monitor: aggregate checkpoint",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    m.cfg.Replicas,
	})
	if err != nil {
		return 0, fmt.Errorf("creating state bucket %s: %w", m.cfg.StateBucket, err)
	}
	for _, in := range m.inputs() {
		if _, err := m.js.CreateOrUpdateConsumer(ctx, in.stream, m.consumerConfig(in)); err != nil {
			return 0, fmt.Errorf("creating consumer %s on %s: %w", in.consumer, in.stream, err)
		}
	}
	if m.alerts, err = m.js.Stream(ctx, schemas.StreamAlerts); err != nil {
		return 0, fmt.Errorf("looking up stream %s: %w", schemas.StreamAlerts, err)
	}
	for _, r := range m.rules {
		st, err := m.loadRuleState(ctx, r.rule)
		if err != nil {
			return 0, err
		}
		m.mu.Lock() // Snapshot (a /metrics scrape) may read it already
		r.st = st
		m.mu.Unlock()
	}
	if err := m.loadCheckpoint(ctx); err != nil {
		return 0, err
	}
	info, err := ledger.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading ledger info: %w", err)
	}
	return info.State.LastSeq, nil
}

// loadRuleState restores a rule from the last alert on its subject, so a
// restart neither re-fires nor forgets a firing alert.
func (m *Monitor) loadRuleState(ctx context.Context, r Rule) (ruleState, error) {
	raw, err := m.alerts.GetLastMsgForSubject(ctx, m.subjects.Alerts(r.Name))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return restoreState(nil, 0), nil
	}
	if err != nil {
		return ruleState{}, fmt.Errorf("reading the last alert of rule %s: %w", r.Name, err)
	}
	a, err := decodeAlert(raw.Data)
	if err != nil {
		m.log.Warn("last alert of rule unreadable; starting inactive", "rule", r.Name, "err", err)
		return restoreState(nil, raw.Sequence), nil
	}
	return restoreState(&a, raw.Sequence), nil
}

// startLedgerReader follows the ledger from the checkpoint with an ordered
// consumer and folds every event. It marks the monitor ready once it has
// reached target.
func (m *Monitor) startLedgerReader(ctx context.Context, target uint64) (jetstream.ConsumeContext, error) {
	m.mu.Lock()
	from := m.agg.st.Seq
	m.mu.Unlock()
	if from >= target {
		m.ready.Store(true)
	}
	occ := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 0 {
		occ = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from + 1}
	}
	octx, cancel := context.WithTimeout(ctx, 2*m.cfg.OpTimeout)
	defer cancel()
	stream, err := m.js.Stream(octx, m.cfg.Ledger.Stream)
	if err != nil {
		return nil, fmt.Errorf("looking up ledger: %w", err)
	}
	cons, err := stream.OrderedConsumer(octx, occ)
	if err != nil {
		return nil, fmt.Errorf("creating ledger reader: %w", err)
	}
	errs := newErrorLog(m.log, "ledger reader")
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		meta, err := msg.Metadata()
		if err != nil {
			return
		}
		seq := meta.Sequence.Stream
		ev, derr := decodeEvent(msg.Data())
		m.mu.Lock()
		if gap := seq - m.agg.st.Seq; m.agg.st.Seq > 0 && gap > 1 {
			m.log.Warn("ledger events expired before they were folded in; counts miss them", "missing", gap-1)
		}
		if derr != nil {
			m.agg.st.Seq = seq
		} else {
			m.agg.apply(seq, ev)
		}
		m.mu.Unlock()
		if derr != nil {
			m.metrics.errors[errOpLedger].Inc()
			errs.failed(derr, "ledger_sequence", seq)
		}
		if seq >= target && !m.ready.Load() {
			m.ready.Store(true)
			m.log.Info("ledger replayed; monitor ready", "ledger_sequence", seq)
		}
		if meta.NumPending == 0 {
			select {
			case m.updated <- struct{}{}:
			default:
			}
		}
	}, jetstream.PullMaxMessages(1000), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		errs.failed(err)
	}))
	if err != nil {
		return nil, fmt.Errorf("reading the ledger: %w", err)
	}
	return cc, nil
}

// startInputs starts Workers consume loops on each input consumer. Each
// callback decodes its message and queues it on its lane (see lanes), where
// it is recorded and then acked.
func (m *Monitor) startInputs(ctx, workCtx context.Context, ln *lanes) ([]jetstream.ConsumeContext, error) {
	var out []jetstream.ConsumeContext
	stopAll := func() {
		for _, cc := range out {
			cc.Stop()
		}
	}
	for _, in := range m.inputs() {
		octx, cancel := context.WithTimeout(ctx, 2*m.cfg.OpTimeout)
		cons, err := m.js.Consumer(octx, in.stream, in.consumer)
		cancel()
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("looking up consumer %s: %w", in.consumer, err)
		}
		errs := newErrorLog(m.log, "input", "input", in.name)
		for range m.cfg.Consumer.Workers {
			// Pull expiry of a few seconds with heartbeats rather than the
			// 30 s default, so a lost pull request stalls an input briefly.
			cc, err := cons.Consume(func(msg jetstream.Msg) { m.handle(workCtx, ln, in, msg, errs) },
				jetstream.PullMaxMessages(m.cfg.Consumer.BatchSize),
				jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second),
				jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { errs.failed(err) }))
			if err != nil {
				stopAll()
				return nil, fmt.Errorf("consuming %s: %w", in.consumer, err)
			}
			out = append(out, cc)
		}
	}
	return out, nil
}

// evaluateLoop evaluates the rules every EvaluationInterval and after each
// ledger batch, and saves a checkpoint every CheckpointInterval, until ctx
// ends.
func (m *Monitor) evaluateLoop(ctx, workCtx context.Context) {
	eval := time.NewTicker(m.cfg.EvaluationInterval)
	defer eval.Stop()
	ckpt := time.NewTicker(m.cfg.CheckpointInterval)
	defer ckpt.Stop()
	ckptErrs := newErrorLog(m.log, "checkpoint")
	for {
		select {
		case <-ctx.Done():
			return
		case <-eval.C:
		case <-m.updated:
		case <-ckpt.C:
			if err := m.checkpoint(ctx); err != nil {
				m.metrics.errors[errOpCheckpoint].Inc()
				ckptErrs.failed(err)
			} else {
				ckptErrs.ok()
			}
			continue
		}
		// Rules run only on a fully replayed ledger: evaluating a partial
		// replay would fire on numbers that never existed.
		if m.ready.Load() {
			m.evaluate(workCtx)
		}
	}
}

// evaluate steps every rule at the current clock and publishes the
// transitions. A rule's new state is committed only once its alert is stored
// in ALERTS; a failed publish is retried at the next evaluation.
func (m *Monitor) evaluate(ctx context.Context) {
	now := m.now()
	m.mu.Lock()
	w := m.agg.window(now)
	m.mu.Unlock()
	for _, r := range m.rules {
		mv := w.metric(r.rule.Metric)
		m.mu.Lock()
		cur := r.st
		m.mu.Unlock()
		next, t := r.rule.step(cur, mv, now)
		if t != noTransition {
			a := r.rule.alertFor(t, next, mv, now)
			seq, err := m.publishAlert(ctx, a, cur.LastSeq)
			if err != nil {
				m.metrics.errors[errOpAlertPublish].Inc()
				if isWrongLastSeq(err) {
					// Another monitor published on this rule since we last
					// looked: adopt its state instead of sending ours.
					if st, lerr := m.loadRuleState(ctx, r.rule); lerr == nil {
						m.mu.Lock()
						r.st = st
						m.mu.Unlock()
					}
					continue
				}
				r.errs.failed(err)
				continue
			}
			r.errs.ok()
			next.LastSeq = seq
			m.log.Info("alert transition", "rule", r.rule.Name, "status", a.Status, "alert_id", a.ID, "value", mv.Value, "samples", mv.Samples)
		}
		m.mu.Lock()
		r.st = next
		switch t {
		case transFire:
			r.fired++
		case transResolve:
			r.resolved++
		}
		m.mu.Unlock()
	}
	m.evaluations.Add(1)
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// errorLog logs a failure when it differs from the previous one, and a
// recovery once, so a retry loop does not flood the log.
type errorLog struct {
	log  *slog.Logger
	msg  string
	args []any
	mu   sync.Mutex
	last string
}

func newErrorLog(log *slog.Logger, msg string, args ...any) *errorLog {
	return &errorLog{log: log, msg: msg, args: args}
}

func (e *errorLog) failed(err error, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := err.Error(); s != e.last {
		e.last = s
		e.log.Warn(e.msg+" failed; retrying", append(append(append([]any{}, e.args...), args...), "err", err)...)
	}
}

func (e *errorLog) ok() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.last != "" {
		e.last = ""
		e.log.Info(e.msg+" recovered", e.args...)
	}
}
