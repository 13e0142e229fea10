package monitor

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// MaxWindowSize bounds window_size so that the checkpoint of the windows
// stays far below the 1 MiB default NATS message size.
const MaxWindowSize = 10000

// Metric names a rule can watch. Every one is computed over the sliding window.
const (
	MetricAccuracy   = "accuracy"
	MetricPrecision  = "precision"
	MetricRecall     = "recall"
	MetricF1         = "f1"
	MetricLatencyP50 = "latency_p50" // milliseconds
	MetricLatencyP95 = "latency_p95" // milliseconds
	MetricLatencyP99 = "latency_p99" // milliseconds
	MetricErrorRate  = "error_rate"  // dead-lettered / received
)

var metricNames = []string{MetricAccuracy, MetricPrecision, MetricRecall, MetricF1,
	MetricLatencyP50, MetricLatencyP95, MetricLatencyP99, MetricErrorRate}

// Config configures the monitor.
type Config struct {
	// WindowSize is the sliding window length in samples (joins for the
	// classification metrics, predictions for latency, predictions + dead
	// letters for the error rate).
	WindowSize int `koanf:"window_size"`
	// WindowDuration is the sliding window length in time. A sample leaves the
	// window when either WindowSize or WindowDuration excludes it.
	WindowDuration time.Duration `koanf:"window_duration"`
	// LabelDeadline is how long a prediction waits for its outcome (and an
	// outcome for its prediction) before the pending join expires. It is the
	// TTL of the pending bucket, so it bounds the bucket's size.
	LabelDeadline time.Duration `koanf:"label_deadline"`
	// EvaluationInterval is how often the alert rules are evaluated when no
	// update arrives (they are also evaluated right after each batch).
	EvaluationInterval time.Duration `koanf:"evaluation_interval"`
	// CheckpointInterval is how often the aggregates are saved to the state
	// bucket so a restart replays only the ledger written since.
	CheckpointInterval time.Duration `koanf:"checkpoint_interval"`
	// Rules are the alert rules.
	Rules []Rule `koanf:"rules"`

	// PendingBucket is the KV bucket holding the pending side of each join.
	PendingBucket string `koanf:"pending_bucket"`
	// StateBucket is the KV bucket holding the aggregate checkpoint.
	StateBucket string `koanf:"state_bucket"`
	// JoinedBucket is the KV bucket of "already resolved" markers, one small
	// value per joined (or unscorable) record, kept for JoinedTTL. It
	// recognises a duplicate prediction or outcome that arrives after the
	// record's pending entry expired with the label deadline.
	JoinedBucket string `koanf:"joined_bucket"`
	// JoinedTTL is how long a resolved record is remembered: a duplicate of
	// either side arriving later than this is counted again. Each remembered
	// record costs one key (≈ 150 bytes of server memory and disk), so it
	// bounds the bucket: records per day × days.
	JoinedTTL time.Duration `koanf:"joined_ttl"`
	// Ledger is the monitor's own event stream (see doc.go).
	Ledger LedgerConfig `koanf:"ledger"`
	// Replicas is the number of copies of the ledger and the buckets (1, 3 or
	// 5). The consumers on the shared streams have as many as their stream.
	Replicas int `koanf:"replicas"`

	// Consumer tunes the three durable input consumers.
	Consumer ConsumerConfig `koanf:"consumer"`
	// OpTimeout bounds one JetStream request (KV get/update, publish).
	OpTimeout time.Duration `koanf:"op_timeout"`
	// ShutdownTimeout bounds the drain on shutdown.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
}

// LedgerConfig configures the ledger stream.
type LedgerConfig struct {
	// Stream is the stream name.
	Stream string `koanf:"stream"`
	// MaxAge is the ledger's retention. The checkpoint makes restarts
	// independent of it, but a monitor stopped for longer loses the events
	// that expired meanwhile.
	MaxAge time.Duration `koanf:"max_age"`
	// DuplicateWindow is how long an event id is remembered. It must cover the
	// redelivery horizon of the input consumers (a message whose event was
	// stored but whose KV update was not): AckWait plus the NAK backoff.
	DuplicateWindow time.Duration `koanf:"duplicate_window"`
}

// ConsumerConfig tunes the durable pull consumers on PREDICTIONS, OUTCOMES and
// DEADLETTER.
type ConsumerConfig struct {
	// Workers is the number of concurrent Consume loops per consumer. A
	// loop only decodes its messages and queues them on the lanes, so one
	// or two suffice; the concurrency that matters is Lanes.
	Workers int `koanf:"workers"`
	// Lanes is how many inputs are recorded at once, across all inputs. An
	// input goes to the lane of its (source, record_id), so two inputs for
	// the same record are handled in order; the lanes overlap the JetStream
	// round trips of different records (each input costs several sequential
	// ones: KV get, ledger publish, KV compare-and-set), so joins per second
	// grow with the inputs in flight (see BENCHMARKS.md).
	Lanes int `koanf:"lanes"`
	// BatchSize is PullMaxMessages of each loop.
	BatchSize int `koanf:"batch_size"`
	// MaxAckPending bounds messages delivered but not yet acked; it must be at
	// least Workers × BatchSize or delivery stalls.
	MaxAckPending int `koanf:"max_ack_pending"`
	// AckWait is how long a delivered message may stay unacked before redelivery.
	AckWait time.Duration `koanf:"ack_wait"`
	// RetryDelay is the first NAK delay after a transient failure; it doubles
	// with each delivery up to 30 s.
	RetryDelay time.Duration `koanf:"retry_delay"`
}

// Rule is one alert rule. A rule fires once when its metric breaches the
// threshold (for at least For, with at least MinSamples samples) and resolves
// once when the metric recovers past RecoverThreshold.
type Rule struct {
	// Name is the rule's subject token (<prefix>.alerts.<name>).
	Name string `koanf:"name"`
	// Metric is one of accuracy, precision, recall, f1, latency_p50,
	// latency_p95, latency_p99 (ms) or error_rate.
	Metric string `koanf:"metric"`
	// Comparator is "<" (fire when the metric is below Threshold) or ">".
	Comparator string `koanf:"comparator"`
	// Threshold is the breach threshold.
	Threshold float64 `koanf:"threshold"`
	// RecoverThreshold is the value the metric must cross back to resolve
	// (hysteresis). Nil means Threshold.
	RecoverThreshold *float64 `koanf:"recover_threshold"`
	// MinSamples is the number of window samples needed to evaluate the rule.
	MinSamples int `koanf:"min_samples"`
	// For is how long the breach must last before the rule fires.
	For time.Duration `koanf:"for"`
	// RepeatInterval re-notifies while firing; 0 means never.
	RepeatInterval time.Duration `koanf:"repeat_interval"`
	// Severity is passed through to the alert ("critical", "warning", ...).
	Severity string `koanf:"severity"`
}

// Recover returns the effective recover threshold.
func (r Rule) Recover() float64 {
	if r.RecoverThreshold != nil {
		return *r.RecoverThreshold
	}
	return r.Threshold
}

// DefaultRules returns the rules of the deployment guide.
func DefaultRules() []Rule {
	return []Rule{
		{Name: "accuracy", Metric: MetricAccuracy, Comparator: "<", Threshold: 0.80, MinSamples: 50, Severity: "critical"},
		{Name: "latency_p95", Metric: MetricLatencyP95, Comparator: ">", Threshold: 200, MinSamples: 50, Severity: "warning"},
		{Name: "error_rate", Metric: MetricErrorRate, Comparator: ">", Threshold: 0.01, MinSamples: 100, Severity: "warning"},
	}
}

// DefaultConfig returns the built-in defaults.
func DefaultConfig() Config {
	return Config{
		WindowSize:         500,
		WindowDuration:     time.Hour,
		LabelDeadline:      24 * time.Hour,
		EvaluationInterval: time.Second,
		CheckpointInterval: 30 * time.Second,
		Rules:              DefaultRules(),
		PendingBucket:      "CARDIO_MONITOR_PENDING",
		StateBucket:        "CARDIO_MONITOR_STATE",
		JoinedBucket:       "CARDIO_MONITOR_JOINED",
		JoinedTTL:          7 * 24 * time.Hour,
		Ledger: LedgerConfig{
			Stream:          "MONITOR_LEDGER",
			MaxAge:          30 * 24 * time.Hour,
			DuplicateWindow: time.Hour,
		},
		Replicas: 1,
		Consumer: ConsumerConfig{
			Workers:       2,
			Lanes:         256,
			BatchSize:     500,
			MaxAckPending: 5000,
			AckWait:       30 * time.Second,
			RetryDelay:    500 * time.Millisecond,
		},
		OpTimeout:       5 * time.Second,
		ShutdownTimeout: 10 * time.Second,
	}
}

// Validate checks the configuration; it reports every problem, one per line.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.WindowSize < 1 || c.WindowSize > MaxWindowSize {
		add("monitor.window_size: %d is outside 1..%d", c.WindowSize, MaxWindowSize)
	}
	if c.WindowDuration <= 0 {
		add("monitor.window_duration: %s must be positive", c.WindowDuration)
	}
	if c.LabelDeadline < time.Second {
		add("monitor.label_deadline: %s must be at least 1s", c.LabelDeadline)
	}
	if c.EvaluationInterval < 10*time.Millisecond || c.EvaluationInterval > time.Hour {
		add("monitor.evaluation_interval: %s is outside 10ms..1h", c.EvaluationInterval)
	}
	if c.CheckpointInterval < 100*time.Millisecond {
		add("monitor.checkpoint_interval: %s must be at least 100ms", c.CheckpointInterval)
	}
	if !validBucket(c.PendingBucket) {
		add("monitor.pending_bucket: %q must be 1-64 letters, digits, '_' or '-'", c.PendingBucket)
	}
	if !validBucket(c.StateBucket) {
		add("monitor.state_bucket: %q must be 1-64 letters, digits, '_' or '-'", c.StateBucket)
	}
	if c.PendingBucket == c.StateBucket && c.PendingBucket != "" {
		add("monitor.state_bucket: %q must differ from monitor.pending_bucket", c.StateBucket)
	}
	if !validBucket(c.JoinedBucket) {
		add("monitor.joined_bucket: %q must be 1-64 letters, digits, '_' or '-'", c.JoinedBucket)
	} else if c.JoinedBucket == c.PendingBucket || c.JoinedBucket == c.StateBucket {
		add("monitor.joined_bucket: %q must differ from monitor.pending_bucket and monitor.state_bucket", c.JoinedBucket)
	}
	if c.JoinedTTL < c.LabelDeadline {
		add("monitor.joined_ttl: %s must be at least monitor.label_deadline (%s), or a duplicate arriving after the deadline is counted again", c.JoinedTTL, c.LabelDeadline)
	}
	if !validBucket(c.Ledger.Stream) {
		add("monitor.ledger.stream: %q must be 1-64 letters, digits, '_' or '-'", c.Ledger.Stream)
	}
	if c.Ledger.MaxAge < c.WindowDuration || c.Ledger.MaxAge <= 0 {
		add("monitor.ledger.max_age: %s must be positive and at least monitor.window_duration (%s)", c.Ledger.MaxAge, c.WindowDuration)
	}
	if min := c.Consumer.AckWait + 30*time.Second; c.Ledger.DuplicateWindow < min {
		add("monitor.ledger.duplicate_window: %s must be at least consumer.ack_wait + 30s (%s) to cover redeliveries", c.Ledger.DuplicateWindow, min)
	}
	if c.Replicas != 1 && c.Replicas != 3 && c.Replicas != 5 {
		add("monitor.replicas: %d is not 1, 3 or 5", c.Replicas)
	}
	cc := c.Consumer
	if cc.Workers < 1 || cc.Workers > 64 {
		add("monitor.consumer.workers: %d is outside 1..64", cc.Workers)
	}
	if cc.Lanes < 1 || cc.Lanes > 4096 {
		add("monitor.consumer.lanes: %d is outside 1..4096", cc.Lanes)
	}
	if cc.BatchSize < 1 || cc.BatchSize > 10000 {
		add("monitor.consumer.batch_size: %d is outside 1..10000", cc.BatchSize)
	}
	if cc.MaxAckPending < cc.Workers*cc.BatchSize {
		add("monitor.consumer.max_ack_pending: %d must be at least workers × batch_size (%d) or delivery stalls", cc.MaxAckPending, cc.Workers*cc.BatchSize)
	}
	if cc.AckWait < time.Second {
		add("monitor.consumer.ack_wait: %s must be at least 1s", cc.AckWait)
	}
	if cc.RetryDelay <= 0 || cc.RetryDelay > 30*time.Second {
		add("monitor.consumer.retry_delay: %s is outside (0, 30s]", cc.RetryDelay)
	}
	if c.OpTimeout < 100*time.Millisecond || c.OpTimeout >= cc.AckWait {
		add("monitor.op_timeout: %s must be at least 100ms and below consumer.ack_wait (%s)", c.OpTimeout, cc.AckWait)
	}
	if c.ShutdownTimeout <= 0 {
		add("monitor.shutdown_timeout: %s must be positive", c.ShutdownTimeout)
	}
	seen := map[string]bool{}
	for i, r := range c.Rules {
		errs = append(errs, r.validate(fmt.Sprintf("monitor.rules[%d]", i))...)
		if seen[r.Name] {
			add("monitor.rules[%d].name: %q is used by an earlier rule", i, r.Name)
		}
		seen[r.Name] = true
	}
	return errors.Join(errs...)
}

func (r Rule) validate(field string) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(field+"."+format, a...)) }
	if !schemas.ValidToken(r.Name) {
		add("name: %q must be 1-64 letters, digits, '_' or '-'", r.Name)
	}
	known := false
	for _, m := range metricNames {
		known = known || m == r.Metric
	}
	if !known {
		add("metric: %q is not one of %v", r.Metric, metricNames)
	}
	if r.Comparator != "<" && r.Comparator != ">" {
		add("comparator: %q is not \"<\" or \">\"", r.Comparator)
	}
	if math.IsNaN(r.Threshold) || math.IsInf(r.Threshold, 0) {
		add("threshold: %v must be a finite number", r.Threshold)
	}
	if rt := r.Recover(); r.RecoverThreshold != nil && (math.IsNaN(rt) || math.IsInf(rt, 0)) {
		add("recover_threshold: %v must be a finite number", rt)
	} else if r.Comparator == "<" && rt < r.Threshold {
		add("recover_threshold: %v must be >= threshold %v for comparator \"<\"", rt, r.Threshold)
	} else if r.Comparator == ">" && rt > r.Threshold {
		add("recover_threshold: %v must be <= threshold %v for comparator \">\"", rt, r.Threshold)
	}
	if r.MinSamples < 0 || r.MinSamples > MaxWindowSize {
		add("min_samples: %d is outside 0..%d", r.MinSamples, MaxWindowSize)
	}
	if r.For < 0 {
		add("for: %s must not be negative", r.For)
	}
	if r.RepeatInterval < 0 {
		add("repeat_interval: %s must not be negative (0 = never)", r.RepeatInterval)
	}
	if len(r.Severity) > 64 {
		add("severity: %d characters, at most 64", len(r.Severity))
	}
	return errs
}

func validBucket(s string) bool { return schemas.ValidToken(s) }
