package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardiostream/cardiostream/schemas"
)

// Option customises a Monitor.
type Option func(*Monitor)

// WithClock replaces time.Now: it stamps the folded inputs, ages the windows
// and the pending joins, and times the alert rules.
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
	ready       atomic.Bool  // every reader has reached its stream's start-up end
	consuming   atomic.Bool  // the readers and the audit consumer are running
	evaluations atomic.Int64 // completed rule evaluations (tests wait on it)

	// Set by setup, before any goroutine that uses them starts.
	state  jetstream.ObjectStore
	alerts jetstream.Stream

	// mu guards the fold (aggregates and joins) and the rule states (read
	// by Snapshot).
	mu    sync.Mutex
	agg   *aggregator
	join  *joiner
	rules []*ruleRun

	// updated is signalled by a reader when it has caught up with its
	// stream, so the rules are evaluated right after each batch.
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
		join:     newJoiner(cfg),
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

// Ready returns nil once the state bucket and the audit consumer exist, each
// input stream has been folded up to where it stood at start-up, and the
// inputs are being read.
func (m *Monitor) Ready() error {
	if !m.ready.Load() || !m.consuming.Load() {
		return ErrNotReady
	}
	return nil
}

// Run sets up the JetStream resources (retrying until ctx ends), loads the
// checkpoint, then folds the input streams from its positions until ctx
// ends. On shutdown it stops the readers, lets the audit consumer's
// in-flight messages finish (bounded by ShutdownTimeout), and saves a
// checkpoint. It returns nil on a clean shutdown.
func (m *Monitor) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	targets, err := m.setupWithRetry(ctx)
	if err != nil {
		return nil // ctx ended during setup: a clean shutdown
	}

	// In-flight work gets its own context so that shutdown can let it finish.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	readers, err := m.startReaders(ctx, targets)
	if err != nil {
		if ctx.Err() != nil {
			return nil // ctx ended during start-up: a clean shutdown
		}
		return err
	}
	stopReaders := func() {
		for _, cc := range readers {
			cc.Stop()
		}
		for _, cc := range readers {
			<-cc.Closed()
		}
	}
	consumers, err := m.startAudit(ctx, workCtx)
	if err != nil {
		stopReaders()
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
	wg.Wait()
	stopReaders()
	if err := m.checkpoint(workCtx); err != nil {
		m.log.Warn("final checkpoint failed; the next start reads more of the input streams again", "err", err)
	}
	m.ready.Store(false)
	m.consuming.Store(false)
	m.log.Info("monitor stopped")
	return nil
}

// setupWithRetry creates the state bucket and the audit consumer, loads the
// checkpoint and the alert states. It returns each input stream's last
// sequence at start-up: the fold's target for readiness.
func (m *Monitor) setupWithRetry(ctx context.Context) (map[string]uint64, error) {
	errs := newErrorLog(m.log, "monitor setup")
	delay := 100 * time.Millisecond
	for {
		targets, err := m.setup(ctx)
		if err == nil {
			errs.ok()
			return targets, nil
		}
		errs.failed(err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func (m *Monitor) setup(ctx context.Context) (map[string]uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*m.cfg.OpTimeout)
	defer cancel()
	var err error
	m.state, err = m.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      m.cfg.StateBucket,
		Description: "cardiostream monitor: checkpoint of the aggregates and open joins",
		Storage:     jetstream.FileStorage,
		Replicas:    m.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("creating state bucket %s: %w", m.cfg.StateBucket, err)
	}
	audit := m.auditInput()
	if _, err := m.js.CreateOrUpdateConsumer(ctx, audit.stream, m.consumerConfig(audit)); err != nil {
		return nil, fmt.Errorf("creating consumer %s on %s: %w", audit.consumer, audit.stream, err)
	}
	for _, c := range legacyConsumers {
		if err := m.js.DeleteConsumer(ctx, c.stream, c.name); err == nil {
			m.log.Info("removed the durable consumer of an earlier monitor version", "stream", c.stream, "consumer", c.name)
		}
	}
	if m.alerts, err = m.js.Stream(ctx, schemas.StreamAlerts); err != nil {
		return nil, fmt.Errorf("looking up stream %s: %w", schemas.StreamAlerts, err)
	}
	for _, r := range m.rules {
		st, err := m.loadRuleState(ctx, r.rule)
		if err != nil {
			return nil, err
		}
		m.mu.Lock() // Snapshot (a /metrics scrape) may read it already
		r.st = st
		m.mu.Unlock()
	}
	if err := m.loadCheckpoint(ctx); err != nil {
		return nil, err
	}
	targets := map[string]uint64{}
	for _, r := range m.readers() {
		st, err := m.js.Stream(ctx, r.stream)
		if err != nil {
			return nil, fmt.Errorf("looking up stream %s: %w", r.stream, err)
		}
		targets[r.name] = st.CachedInfo().State.LastSeq
	}
	return targets, nil
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

// startReaders reads each input stream with an ordered consumer from the
// checkpoint's position and folds every message. The monitor is ready once
// every reader has reached its stream's last sequence at start-up (or has
// nothing pending).
func (m *Monitor) startReaders(ctx context.Context, targets map[string]uint64) ([]jetstream.ConsumeContext, error) {
	var out []jetstream.ConsumeContext
	stopAll := func() {
		for _, cc := range out {
			cc.Stop()
		}
	}
	readers := m.readers()
	caughtUp := make([]atomic.Bool, len(readers))
	markCaughtUp := func(i int) {
		if caughtUp[i].Swap(true) {
			return
		}
		for k := range caughtUp {
			if !caughtUp[k].Load() {
				return
			}
		}
		if !m.ready.Swap(true) {
			m.mu.Lock()
			pos := maps.Clone(m.agg.st.Positions)
			m.mu.Unlock()
			m.log.Info("input streams folded up to their start-up end; monitor ready", "positions", pos)
		}
	}
	for i, r := range readers {
		r.sources, r.dec = map[string]subjectKind{}, newInputDecoder()
		m.mu.Lock()
		from := m.agg.st.Positions[r.name]
		m.mu.Unlock()
		target := targets[r.name]
		occ := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
		if from > 0 {
			occ.DeliverPolicy, occ.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from+1
		}
		octx, cancel := context.WithTimeout(ctx, 2*m.cfg.OpTimeout)
		stream, err := m.js.Stream(octx, r.stream)
		if err == nil {
			var cons jetstream.Consumer
			if cons, err = stream.OrderedConsumer(octx, occ); err == nil {
				if from >= target || cons.CachedInfo().NumPending == 0 {
					markCaughtUp(i)
				}
				errs := newErrorLog(m.log, "input reader", "input", r.name)
				var cc jetstream.ConsumeContext
				cc, err = cons.Consume(func(msg jetstream.Msg) {
					if m.fold(r, msg, errs, target) {
						markCaughtUp(i)
					}
				}, jetstream.PullMaxMessages(m.cfg.Consumer.BatchSize),
					jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { errs.failed(err) }))
				if err == nil {
					out = append(out, cc)
				}
			}
		}
		cancel()
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("reading %s: %w", r.stream, err)
		}
	}
	return out, nil
}

// fold decodes one input message and folds it, with the stream position,
// under the lock: a checkpoint always holds a position together with
// exactly the inputs up to it. It reports whether the reader has caught up
// with its stream (the start-up target, or nothing pending).
func (m *Monitor) fold(r reader, msg jetstream.Msg, errs *errorLog, target uint64) bool {
	// The reply subject's sequence, timestamp and pending count, read
	// without jetstream's Metadata (which allocates and parses every token).
	meta, err := parseAckReply(msg.Reply())
	if err != nil {
		errs.failed(err)
		return false
	}
	ev, label, derr := m.decodeInput(r, msg)
	late := false
	m.mu.Lock()
	if derr == nil {
		ev.At, ev.Ord = m.now(), meta.timestamp
		late = !m.join.fold(m.agg, ev)
	}
	m.agg.st.Positions[r.name] = meta.streamSeq
	m.mu.Unlock()
	switch {
	case errors.Is(derr, errNotInput):
		m.log.Debug("message on an input stream with a subject the monitor does not read; skipped", "input", label, "stream_sequence", meta.streamSeq, "err", derr)
	case derr != nil:
		m.metrics.invalid[label].Inc()
		m.log.Warn("invalid input message; not counted", "input", label, "stream_sequence", meta.streamSeq, "err", derr)
	case late:
		m.metrics.lateDuplicates.Inc()
	}
	if meta.pending == 0 {
		select {
		case m.updated <- struct{}{}:
		default:
		}
	}
	return meta.pending == 0 || meta.streamSeq >= target
}

// startAudit starts the consume loop of the audit consumer.
func (m *Monitor) startAudit(ctx, workCtx context.Context) ([]jetstream.ConsumeContext, error) {
	in := m.auditInput()
	octx, cancel := context.WithTimeout(ctx, 2*m.cfg.OpTimeout)
	cons, err := m.js.Consumer(octx, in.stream, in.consumer)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("looking up consumer %s: %w", in.consumer, err)
	}
	errs := newErrorLog(m.log, "input", "input", in.name)
	// Pull expiry of a few seconds with heartbeats rather than the 30 s
	// default, so a lost pull request stalls the input briefly.
	cc, err := cons.Consume(func(msg jetstream.Msg) { m.handle(workCtx, in, msg, errs) },
		jetstream.PullMaxMessages(100),
		jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { errs.failed(err) }))
	if err != nil {
		return nil, fmt.Errorf("consuming %s: %w", in.consumer, err)
	}
	return []jetstream.ConsumeContext{cc}, nil
}

// evaluateLoop evaluates the rules every EvaluationInterval and after each
// input batch, and saves a checkpoint every CheckpointInterval, until ctx
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
		// Rules run only once the inputs are folded up to their start-up
		// end: evaluating a partial replay would fire on numbers that
		// never existed.
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
