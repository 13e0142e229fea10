package ingest

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/schemas"
)

// Limits enforced by Validate.
const (
	MaxRate           = 1_000_000 // records per second
	MaxRepeat         = 1_000_000
	MaxLabelDelay     = 24 * time.Hour
	MaxInFlightLimit  = 65536
	MinPublishTimeout = 100 * time.Millisecond
	MaxPublishTimeout = 5 * time.Minute
	MaxPublishRetries = 100
	MaxRetryBackoff   = time.Minute
)

// DefaultLabelColumn is the CSV label column used when Config.LabelColumn is
// empty (see Config.LabelColumn for the fallback to "label").
const DefaultLabelColumn = "num"

// Config configures a replay.
type Config struct {
	// Source is the source token every file is published under
	// (<prefix>.records.<source>). Empty means per file: the file's base
	// name without its extension, sanitised to a valid token
	// (processed.cleveland.data → processed-cleveland); see SourceFromPath.
	Source string `koanf:"source"`
	// Format forces the input format for every file; empty or "auto" detects
	// it from the extension (.data = uci, .csv = csv, .jsonl/.ndjson = jsonl).
	Format Format `koanf:"format"`
	// Rate is the record publish rate in records per second, spread evenly
	// (not in bursts); 0 publishes as fast as acks allow.
	Rate float64 `koanf:"rate"`
	// Repeat replays the files this many times (≥ 1). Repetition 0 uses the
	// plain record ids; repetition r ≥ 1 uses distinct ids (see Row.ID).
	Repeat int `koanf:"repeat"`
	// Outcomes publishes each labelled record's outcome LabelDelay after the
	// record's publish ack.
	Outcomes bool `koanf:"outcomes"`
	// LabelDelay is how long after a record is stored its outcome is published.
	LabelDelay time.Duration `koanf:"label_delay"`
	// LabelColumn names the CSV column holding the label. Empty means "num"
	// when the header has it, else "label" when the header has that. A value
	// greater than 0 is label 1 (disease) and 0 is label 0, so both UCI's
	// num (0–4) and a 0/1 column work; negative or non-numeric values make
	// the row a parse error, and an empty/"?" cell means "no outcome". A file
	// without the column replays records only (outcomes skipped and counted).
	LabelColumn string `koanf:"label_column"`
	// ZeroMeansMissing treats 0 in chol and trestbps of CSV files as missing,
	// as in UCI files (where it always applies): CSV files are mostly exports
	// of the UCI data, and 0 is not a possible cholesterol or blood
	// pressure. Off, the 0 is published and the scorer dead-letters it.
	// JSON Lines records are on the wire format and are never rewritten.
	ZeroMeansMissing bool `koanf:"zero_means_missing"`
	// MaxInFlight bounds the publishes awaiting their JetStream ack (per
	// message kind). Keep the JetStream context's PublishAsyncMaxPending at
	// least this large (see JetStreamOptions).
	MaxInFlight int `koanf:"max_in_flight"`
	// PublishTimeout bounds the wait for one publish ack; a publish not acked
	// in time is retried (its message id makes the retry safe).
	PublishTimeout time.Duration `koanf:"publish_timeout"`
	// PublishRetries is how many times a failed publish is retried before
	// the replay gives up with ErrPublishFailed. The default, 8, with the
	// default RetryBackoff waits about 25 s in all, which outlasts a
	// JetStream leader election after a cluster node is lost.
	PublishRetries int `koanf:"publish_retries"`
	// RetryBackoff is the wait before the first retry; it doubles per retry
	// up to MaxRetryBackoff.
	RetryBackoff time.Duration `koanf:"retry_backoff"`
	// ProgressInterval is how often a plain progress line is written when
	// the progress writer is not a terminal.
	ProgressInterval time.Duration `koanf:"progress_interval"`
}

// DefaultConfig returns the defaults: as fast as possible, once, with
// outcomes 5 s after their records.
func DefaultConfig() Config {
	return Config{
		Format:           FormatAuto,
		Rate:             0,
		Repeat:           1,
		Outcomes:         false,
		LabelDelay:       5 * time.Second,
		ZeroMeansMissing: true,
		MaxInFlight:      1000,
		PublishTimeout:   5 * time.Second,
		PublishRetries:   8,
		RetryBackoff:     100 * time.Millisecond,
		ProgressInterval: 5 * time.Second,
	}
}

// Validate reports every invalid field, one line each.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("ingest.%s: "+format, append([]any{field}, args...)...))
	}
	if c.Source != "" && (!schemas.ValidSource(c.Source) || !alnum(c.Source[0])) {
		bad("source", "%q is not a valid source token; allowed: 1-64 letters, digits, '_' or '-', starting with a letter or digit (record ids start with it), and not %q (reserved for shadow predictions)", c.Source, schemas.ShadowToken)
	}
	if _, err := ParseFormat(string(c.Format)); err != nil {
		bad("format", "%q is not a known format; allowed: auto, uci, csv, jsonl", c.Format)
	}
	if math.IsNaN(c.Rate) || c.Rate < 0 || c.Rate > MaxRate {
		bad("rate", "%v is out of range; allowed 0 (unlimited) to %d records/s", c.Rate, MaxRate)
	}
	if c.Repeat < 1 || c.Repeat > MaxRepeat {
		bad("repeat", "%d is out of range; allowed 1 to %d", c.Repeat, MaxRepeat)
	}
	if c.LabelDelay < 0 || c.LabelDelay > MaxLabelDelay {
		bad("label_delay", "%s is out of range; allowed 0s to %s", c.LabelDelay, MaxLabelDelay)
	}
	if strings.TrimSpace(c.LabelColumn) != c.LabelColumn || strings.ContainsAny(c.LabelColumn, ",\"\r\n") {
		bad("label_column", "%q must be a plain column name (no surrounding spaces, commas, quotes or newlines); empty means num, else label", c.LabelColumn)
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > MaxInFlightLimit {
		bad("max_in_flight", "%d is out of range; allowed 1 to %d", c.MaxInFlight, MaxInFlightLimit)
	}
	if c.PublishTimeout < MinPublishTimeout || c.PublishTimeout > MaxPublishTimeout {
		bad("publish_timeout", "%s is out of range; allowed %s to %s", c.PublishTimeout, MinPublishTimeout, MaxPublishTimeout)
	}
	if c.PublishRetries < 0 || c.PublishRetries > MaxPublishRetries {
		bad("publish_retries", "%d is out of range; allowed 0 to %d", c.PublishRetries, MaxPublishRetries)
	}
	if c.RetryBackoff < time.Millisecond || c.RetryBackoff > MaxRetryBackoff {
		bad("retry_backoff", "%s is out of range; allowed 1ms to %s", c.RetryBackoff, MaxRetryBackoff)
	}
	if c.ProgressInterval < 100*time.Millisecond || c.ProgressInterval > time.Hour {
		bad("progress_interval", "%s is out of range; allowed 100ms to 1h", c.ProgressInterval)
	}
	return errors.Join(errs...)
}

// JetStreamOptions are the options the JetStream context handed to Replay
// should be created with: an async publish ack timeout (a lost ack otherwise
// never resolves inside the client) and a pending-ack limit above the
// records' and outcomes' in-flight windows, so PublishAsync never stalls.
// Replay also enforces PublishTimeout itself, so it is safe without them.
func (c Config) JetStreamOptions() []jetstream.JetStreamOpt {
	return []jetstream.JetStreamOpt{
		jetstream.WithPublishAsyncTimeout(c.PublishTimeout),
		jetstream.WithPublishAsyncMaxPending(2*c.MaxInFlight + 64),
	}
}

func alnum(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// readOptions are the parts of a Config a Reader needs.
type readOptions struct {
	labelColumn string // lower-cased; "" = num, else label
	zeroMissing bool   // CSV: chol/trestbps 0 → missing
	idPrefix    string // default ids: <idPrefix>-<line>
}

func (c Config) readOptions(idPrefix string) readOptions {
	return readOptions{labelColumn: strings.ToLower(c.LabelColumn), zeroMissing: c.ZeroMeansMissing, idPrefix: idPrefix}
}
