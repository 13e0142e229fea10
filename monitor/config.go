package monitor

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// MaxWindowSize bounds window_size, so that evaluating the windows (every
// evaluation_interval and every /metrics scrape) stays cheap.
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
	// outcome for its prediction) before the pending join expires, counted
	// from the join entry's last change. It bounds the open joins held in
	// memory (and in the checkpoint).
	LabelDeadline time.Duration `koanf:"label_deadline"`
	// EvaluationInterval is how often the alert rules are evaluated when no
	// update arrives (they are also evaluated right after each batch).
	EvaluationInterval time.Duration `koanf:"evaluation_interval"`
	// CheckpointInterval is how often the aggregates, the open joins and the
	// input positions are saved to the state bucket, so a restart reads only
	// the inputs written since.
	CheckpointInterval time.Duration `koanf:"checkpoint_interval"`
	// Rules are the alert rules.
	Rules []Rule `koanf:"rules"`

	// StateBucket is the object store bucket holding the checkpoint.
	StateBucket string `koanf:"state_bucket"`
	// JoinedTTL is how long a resolved (joined or unscorable) record is
	// remembered: another input of it arriving later than this is counted
	// again. Each remembered record costs ≈ 130 bytes of memory and ≈ 50 of
	// checkpoint: records per day × days. The default, 48h, is twice the
	// default label deadline.
	JoinedTTL time.Duration `koanf:"joined_ttl"`
	// Replicas is the number of copies of the state bucket (1, 3 or 5). The
	// audit consumer has as many as its stream.
	Replicas int `koanf:"replicas"`

	// Consumer tunes the input readers and the audit consumer.
	Consumer ConsumerConfig `koanf:"consumer"`
	// GCPercent is the Go garbage collector's target (GOGC) for a
	// `cardiostream monitor` process. The monitor allocates a little per
	// input and keeps a live heap that grows with its state, so at Go's
	// default of 100 it collects often while folding a backlog; 400 cut its
	// CPU per join by about 15% and raised joins/s in 8 of 10 alternated
	// runs (BENCHMARKS.md, optimisation 4). 0
	// leaves the runtime's own setting; the GOGC environment variable, when
	// set, wins. Not applied by standalone (one process with the server).
	GCPercent int `koanf:"gc_percent"`
	// GCMemoryLimitMB is the soft memory limit (GOMEMLIMIT) of a monitor
	// process in MiB, 0 for none (the default: the monitor's live heap grows
	// with its open joins and remembered records, and a limit below it would
	// make the collector run without end). The GOMEMLIMIT environment
	// variable, when set, wins.
	GCMemoryLimitMB int `koanf:"gc_memory_limit_mb"`
	// OpTimeout bounds one JetStream request (checkpoint, alert publish).
	OpTimeout time.Duration `koanf:"op_timeout"`
	// ShutdownTimeout bounds the drain on shutdown.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
}

// ConsumerConfig tunes the ordered readers of PREDICTIONS, OUTCOMES and
// DEADLETTER and the durable audit consumer.
type ConsumerConfig struct {
	// BatchSize is PullMaxMessages of each reader.
	BatchSize int `koanf:"batch_size"`
	// MaxAckPending bounds the audit entries delivered but not yet acked.
	MaxAckPending int `koanf:"max_ack_pending"`
	// AckWait is how long a delivered audit entry may stay unacked before
	// redelivery.
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
		StateBucket:        "CARDIO_MONITOR_STATE",
		JoinedTTL:          48 * time.Hour,
		Replicas:           1,
		Consumer: ConsumerConfig{
			BatchSize:     1000,
			MaxAckPending: 1000,
			AckWait:       30 * time.Second,
			RetryDelay:    500 * time.Millisecond,
		},
		GCPercent:       400,
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
	if !validBucket(c.StateBucket) {
		add("monitor.state_bucket: %q must be 1-64 letters, digits, '_' or '-'", c.StateBucket)
	}
	if c.JoinedTTL < c.LabelDeadline {
		add("monitor.joined_ttl: %s must be at least monitor.label_deadline (%s), or a duplicate arriving after the deadline is counted again", c.JoinedTTL, c.LabelDeadline)
	}
	if c.Replicas != 1 && c.Replicas != 3 && c.Replicas != 5 {
		add("monitor.replicas: %d is not 1, 3 or 5", c.Replicas)
	}
	cc := c.Consumer
	if cc.BatchSize < 1 || cc.BatchSize > 10000 {
		add("monitor.consumer.batch_size: %d is outside 1..10000", cc.BatchSize)
	}
	if cc.MaxAckPending < 100 {
		add("monitor.consumer.max_ack_pending: %d must be at least 100 (the audit consumer pulls 100 at a time)", cc.MaxAckPending)
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
	if c.GCPercent != 0 && (c.GCPercent < 25 || c.GCPercent > 10_000) {
		add("monitor.gc_percent: %d is out of range [25, 10000] (or 0: the Go runtime's own setting)", c.GCPercent)
	}
	if c.GCMemoryLimitMB != 0 && (c.GCMemoryLimitMB < 32 || c.GCMemoryLimitMB > 1<<20) {
		add("monitor.gc_memory_limit_mb: %d is out of range [32, 1048576] (or 0: no limit)", c.GCMemoryLimitMB)
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
