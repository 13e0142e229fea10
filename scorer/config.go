package scorer

import (
	"errors"
	"fmt"
	"time"

	"github.com/cardiostream/cardiostream/internal/streams"
)

// Config configures a scorer process. Every scorer process of a deployment
// should use the same values: the consumer settings are shared on the server
// and the last process to start wins.
type Config struct {
	// Consumer is the durable pull consumer on RECORDS shared by every scorer.
	Consumer string `koanf:"consumer"`
	// BatchSize is the pull batch (PullMaxMessages) and the largest number of
	// records scored and published together.
	BatchSize int `koanf:"batch_size"`
	// MaxAckPending bounds records delivered but not yet acked across all
	// scorers. It must be at least 4 × BatchSize × the number of scorer
	// processes, or delivery stalls while acks are outstanding.
	MaxAckPending int `koanf:"max_ack_pending"`
	// AckWait is how long a delivered record may stay unacked before the
	// server redelivers it.
	AckWait time.Duration `koanf:"ack_wait"`
	// MaxDeliver is how many deliveries a record gets to be scored. A record
	// still failing on delivery MaxDeliver is dead-lettered (stage "score").
	MaxDeliver int `koanf:"max_deliver"`
	// NakDelay is the redelivery delay after the first transient failure; it
	// doubles with every further delivery, capped at AckWait.
	NakDelay time.Duration `koanf:"nak_delay"`
	// PullExpiry is how long one pull request waits on the server; idle
	// heartbeats are sent every PullExpiry/4 so a lost pull is noticed.
	PullExpiry time.Duration `koanf:"pull_expiry"`
	// PublishTimeout bounds the wait for one prediction's or dead letter's
	// publish ack; a timeout is a transient failure.
	PublishTimeout time.Duration `koanf:"publish_timeout"`
	// ShutdownTimeout bounds the drain on shutdown.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
	// Workers is the number of goroutines scoring batches within this
	// process. 1 is right on small machines: the model is cheap next to the
	// NATS round trip (see doc.go).
	Workers int `koanf:"workers"`
	// GCPercent is the Go garbage collector's target (GOGC) for a
	// `cardiostream scorer` process: the heap may grow by this percentage of
	// the live heap before the next collection. The scorer's live heap is
	// small (2-4 MB), so at Go's default of 100 it collected about 7 times a
	// second at 5,000 records/s, and every cycle stops the world twice; on a
	// busy 2-core machine a stopped world waits until each of the process's
	// threads is scheduled again, which is where the pipeline's worst
	// latency spikes came from (BENCHMARKS.md, "Latency at 5,000/s, second
	// pass"). 400 cuts the collections about 8-fold for a heap a few MB
	// larger. 0 leaves the runtime's own setting. The GOGC environment
	// variable, when set, wins. It is not applied by standalone, whose
	// process also holds the embedded server's much larger heap.
	GCPercent int `koanf:"gc_percent"`
	// GCMemoryLimitMB is the soft memory limit (GOMEMLIMIT) of a
	// `cardiostream scorer` process, in MiB: the collector runs whenever the
	// process's memory reaches it, whatever GCPercent allows. It keeps a
	// large GCPercent from growing the heap with a deep backlog (the
	// scorer's peak RSS over a 1M-record backlog: 34 MB at Go's defaults,
	// 162 MB with 400 and no limit, 103 MB with 100 MiB, 72 MB with 64).
	// At 5,000 records/s it does not bind. Past the limit the process is
	// not stopped: the collector works harder, at most half the CPU. 0 sets
	// no limit; the GOMEMLIMIT environment variable, when set, wins. Not
	// applied by standalone either.
	GCMemoryLimitMB int `koanf:"gc_memory_limit_mb"`
}

// Limits of the configuration values; Validate names them.
const (
	minBatchSize       = 1
	maxBatchSize       = 10_000
	maxMaxAckPending   = 1_000_000
	minAckWait         = time.Second
	maxAckWait         = time.Hour
	minMaxDeliver      = 1
	maxMaxDeliver      = 100
	minPullExpiry      = 2 * time.Second // heartbeats are PullExpiry/4 and must be >= 500ms
	maxPullExpiry      = 2 * time.Minute
	minPublishTimeout  = 100 * time.Millisecond
	minShutdownTimeout = time.Second
	maxShutdownTimeout = 10 * time.Minute
	minWorkers         = 1
	maxWorkers         = 64
	minGCPercent       = 25
	maxGCPercent       = 10_000
	minGCMemoryLimitMB = 32
	maxGCMemoryLimitMB = 1 << 20
)

// DefaultConfig returns the built-in defaults.
func DefaultConfig() Config {
	return Config{
		Consumer:        streams.ConsumerScorer,
		BatchSize:       500,
		MaxAckPending:   10_000,
		AckWait:         30 * time.Second,
		MaxDeliver:      5,
		NakDelay:        500 * time.Millisecond,
		PullExpiry:      5 * time.Second,
		PublishTimeout:  5 * time.Second,
		ShutdownTimeout: 20 * time.Second,
		Workers:         1,
		GCPercent:       400,
		GCMemoryLimitMB: 64,
	}
}

// Validate checks every field and reports each problem on its own line.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("scorer.%s: "+format, append([]any{field}, args...)...))
	}
	if !validConsumerName(c.Consumer) {
		bad("consumer", "%q is not a valid durable name (1-64 letters, digits, '_' or '-')", c.Consumer)
	}
	if c.BatchSize < minBatchSize || c.BatchSize > maxBatchSize {
		bad("batch_size", "%d is out of range [%d, %d]", c.BatchSize, minBatchSize, maxBatchSize)
	}
	if c.MaxAckPending < 4*c.BatchSize || c.MaxAckPending > maxMaxAckPending {
		bad("max_ack_pending", "%d is out of range [4 × batch_size = %d, %d]; below 4 × batch_size delivery stalls while acks are outstanding",
			c.MaxAckPending, 4*c.BatchSize, maxMaxAckPending)
	}
	if c.AckWait < minAckWait || c.AckWait > maxAckWait {
		bad("ack_wait", "%s is out of range [%s, %s]", c.AckWait, minAckWait, maxAckWait)
	}
	if c.MaxDeliver < minMaxDeliver || c.MaxDeliver > maxMaxDeliver {
		bad("max_deliver", "%d is out of range [%d, %d]", c.MaxDeliver, minMaxDeliver, maxMaxDeliver)
	}
	if c.NakDelay < 0 || c.NakDelay > c.AckWait {
		bad("nak_delay", "%s is out of range [0, ack_wait = %s]", c.NakDelay, c.AckWait)
	}
	if c.PullExpiry < minPullExpiry || c.PullExpiry > maxPullExpiry {
		bad("pull_expiry", "%s is out of range [%s, %s]", c.PullExpiry, minPullExpiry, maxPullExpiry)
	}
	// A batch must be published and acked well within AckWait, or its records
	// are redelivered while still in flight.
	if c.PublishTimeout < minPublishTimeout || (c.AckWait >= minAckWait && c.PublishTimeout > c.AckWait/2) {
		bad("publish_timeout", "%s is out of range [%s, ack_wait/2 = %s]", c.PublishTimeout, minPublishTimeout, c.AckWait/2)
	}
	if c.ShutdownTimeout < minShutdownTimeout || c.ShutdownTimeout > maxShutdownTimeout {
		bad("shutdown_timeout", "%s is out of range [%s, %s]", c.ShutdownTimeout, minShutdownTimeout, maxShutdownTimeout)
	}
	if c.Workers < minWorkers || c.Workers > maxWorkers {
		bad("workers", "%d is out of range [%d, %d]", c.Workers, minWorkers, maxWorkers)
	}
	if c.GCPercent != 0 && (c.GCPercent < minGCPercent || c.GCPercent > maxGCPercent) {
		bad("gc_percent", "%d is out of range [%d, %d] (or 0: the Go runtime's own setting)", c.GCPercent, minGCPercent, maxGCPercent)
	}
	if c.GCMemoryLimitMB != 0 && (c.GCMemoryLimitMB < minGCMemoryLimitMB || c.GCMemoryLimitMB > maxGCMemoryLimitMB) {
		bad("gc_memory_limit_mb", "%d is out of range [%d, %d] (or 0: no limit)", c.GCMemoryLimitMB, minGCMemoryLimitMB, maxGCMemoryLimitMB)
	}
	return errors.Join(errs...)
}

// RedeliveryHorizon is the longest time between a record's first delivery
// and its last scoring attempt (AckWait per delivery, as NAK delays are
// capped at AckWait). The PREDICTIONS duplicate window must cover it, or a
// late redelivery could store a second prediction.
func (c Config) RedeliveryHorizon() time.Duration {
	return time.Duration(c.MaxDeliver) * c.AckWait
}

func validConsumerName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}
