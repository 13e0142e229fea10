package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/schemas"
)

// Durable consumer names. Each is shared by every process of its role, so
// scaling out is running more processes. (The monitor reads its inputs with
// ordered consumers: every monitor process reads all of them.)
const (
	ConsumerScorer       = "scorer"
	ConsumerAlertWebhook = "alert-webhook"
)

// Limits are one stream's retention limits. Zero MaxBytes or MaxMsgs means
// unlimited; MaxAge must be set.
type Limits struct {
	MaxAge   time.Duration `koanf:"max_age"`
	MaxBytes int64         `koanf:"max_bytes"`
	MaxMsgs  int64         `koanf:"max_msgs"`
}

// Config describes the topology.
type Config struct {
	// Prefix is the first subject token (default "cardio").
	Prefix string `koanf:"prefix"`
	// Replicas is the number of copies of every stream (1, or 3 on a cluster).
	Replicas int `koanf:"replicas"`
	// Storage is "file" or "memory".
	Storage string `koanf:"storage"`
	// DuplicateWindow is how long a message id is remembered. It must cover
	// the redelivery horizon (AckWait × MaxDeliver of the scorer) so that a
	// redelivered record cannot store a second prediction.
	DuplicateWindow time.Duration `koanf:"duplicate_window"`
	// MaxMsgSize bounds one message on RECORDS (larger publishes are refused).
	MaxMsgSize int32 `koanf:"max_msg_size"`

	Records     Limits `koanf:"records"`
	Predictions Limits `koanf:"predictions"`
	Outcomes    Limits `koanf:"outcomes"`
	DeadLetter  Limits `koanf:"deadletter"`
	Alerts      Limits `koanf:"alerts"`
	Audit       Limits `koanf:"audit"`
}

// DefaultConfig returns the built-in topology defaults.
func DefaultConfig() Config {
	return Config{
		Prefix:          schemas.DefaultPrefix,
		Replicas:        1,
		Storage:         "file",
		DuplicateWindow: 10 * time.Minute,
		MaxMsgSize:      1 << 20,
		Records:         Limits{MaxAge: 7 * 24 * time.Hour},
		Predictions:     Limits{MaxAge: 30 * 24 * time.Hour},
		Outcomes:        Limits{MaxAge: 30 * 24 * time.Hour},
		DeadLetter:      Limits{MaxAge: 30 * 24 * time.Hour},
		Alerts:          Limits{MaxAge: 90 * 24 * time.Hour},
		// The model audit trail is small and kept for years.
		Audit: Limits{MaxAge: 5 * 365 * 24 * time.Hour},
	}
}

// Subjects returns the subjects of this topology.
func (c Config) Subjects() schemas.Subjects { return schemas.NewSubjects(c.Prefix) }

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if err := c.Subjects().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("streams.prefix: %w", err))
	}
	if c.Replicas != 1 && c.Replicas != 3 && c.Replicas != 5 {
		errs = append(errs, fmt.Errorf("streams.replicas: %d is not 1, 3 or 5", c.Replicas))
	}
	if c.Storage != "file" && c.Storage != "memory" {
		errs = append(errs, fmt.Errorf("streams.storage: %q is not \"file\" or \"memory\"", c.Storage))
	}
	if c.DuplicateWindow <= 0 {
		errs = append(errs, errors.New("streams.duplicate_window: must be positive"))
	}
	if c.MaxMsgSize <= 0 {
		errs = append(errs, errors.New("streams.max_msg_size: must be positive"))
	}
	for name, l := range map[string]Limits{"records": c.Records, "predictions": c.Predictions,
		"outcomes": c.Outcomes, "deadletter": c.DeadLetter, "alerts": c.Alerts, "audit": c.Audit} {
		if l.MaxAge <= 0 {
			errs = append(errs, fmt.Errorf("streams.%s.max_age: must be positive (explicit retention)", name))
		}
		if l.MaxBytes < 0 || l.MaxMsgs < 0 {
			errs = append(errs, fmt.Errorf("streams.%s: max_bytes and max_msgs must not be negative (0 = unlimited)", name))
		}
	}
	return errors.Join(errs...)
}

// StreamConfigs returns the six stream configurations.
func (c Config) StreamConfigs() []jetstream.StreamConfig {
	s := c.Subjects()
	storage := jetstream.FileStorage
	if c.Storage == "memory" {
		storage = jetstream.MemoryStorage
	}
	mk := func(name, desc, subject string, l Limits, discard jetstream.DiscardPolicy) jetstream.StreamConfig {
		sc := jetstream.StreamConfig{
			Name:              name,
			Description:       desc,
			Subjects:          []string{subject},
			Retention:         jetstream.LimitsPolicy,
			Storage:           storage,
			Replicas:          c.Replicas,
			MaxAge:            l.MaxAge,
			MaxBytes:          orUnlimited(l.MaxBytes),
			MaxMsgs:           orUnlimited(l.MaxMsgs),
			Discard:           discard,
			Duplicates:        c.DuplicateWindow,
			MaxMsgSize:        c.MaxMsgSize,
			MaxMsgsPerSubject: -1,
		}
		return sc
	}
	return []jetstream.StreamConfig{
		// Records are refused, not silently discarded, when RECORDS is full:
		// the publisher sees the error and can retry.
		mk(schemas.StreamRecords, "cardiostream patient records awaiting scoring", s.AllRecords(), c.Records, jetstream.DiscardNew),
		mk(schemas.StreamPredictions, "cardiostream predictions", s.AllPredictions(), c.Predictions, jetstream.DiscardNew),
		mk(schemas.StreamOutcomes, "cardiostream labelled outcomes", s.AllOutcomes(), c.Outcomes, jetstream.DiscardNew),
		mk(schemas.StreamDeadLetter, "cardiostream records that could not be scored, with reasons", s.AllDeadLetter(), c.DeadLetter, jetstream.DiscardNew),
		mk(schemas.StreamAlerts, "cardiostream alert transitions (the webhook outbox)", s.AllAlerts(), c.Alerts, jetstream.DiscardNew),
		// Audit entries are refused, never dropped, when AUDIT is full.
		mk(schemas.StreamAudit, "cardiostream model lifecycle audit trail", s.AllAudit(), c.Audit, jetstream.DiscardNew),
	}
}

func orUnlimited(v int64) int64 {
	if v == 0 {
		return -1
	}
	return v
}

// Ensure creates every stream, or updates the ones whose configuration
// differs. It is idempotent and safe to call from many processes at once.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	for _, sc := range cfg.StreamConfigs() {
		if _, err := EnsureStream(ctx, js, sc); err != nil {
			return err
		}
	}
	return nil
}
