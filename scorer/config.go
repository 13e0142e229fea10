package scorer

import "time"

// Config configures a scorer process. (Skeleton: the scorer owner extends it.)
type Config struct {
	// Consumer is the durable pull consumer on RECORDS shared by every scorer.
	Consumer string `koanf:"consumer"`
	// BatchSize is the pull batch (PullMaxMessages).
	BatchSize int `koanf:"batch_size"`
	// MaxAckPending bounds records delivered but not yet acked across all scorers.
	MaxAckPending int `koanf:"max_ack_pending"`
	// AckWait is how long a delivered record may stay unacked before redelivery.
	AckWait time.Duration `koanf:"ack_wait"`
	// MaxDeliver is how many deliveries a record gets before it is dead-lettered.
	MaxDeliver int `koanf:"max_deliver"`
	// ShutdownTimeout bounds the drain on shutdown.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
}
