package registry

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"time"

	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

// Default bucket names.
const (
	DefaultModelsBucket   = "CARDIO_MODELS"
	DefaultPointersBucket = "CARDIO_MODEL_REGISTRY"
)

// Gates are the floors a version must reach on the evaluation set.
type Gates struct {
	// MinAccuracy is the lowest accepted accuracy at the manifest's threshold.
	MinAccuracy float64 `koanf:"min_accuracy"`
	// MinAUC is the lowest accepted ROC AUC.
	MinAUC float64 `koanf:"min_auc"`
	// MaxBrier is the highest accepted Brier score.
	MaxBrier float64 `koanf:"max_brier"`
	// EvalSet is a CSV evaluation set (the 13 features, then label);
	// empty uses the bundled models/heart-xgb/heldout.csv.
	EvalSet string `koanf:"eval_set"`
}

// Config configures the registry.
type Config struct {
	// ModelsBucket is the Object Store bucket of the artifacts.
	ModelsBucket string `koanf:"models_bucket"`
	// PointersBucket is the KV bucket of version metadata and pointers.
	PointersBucket string `koanf:"pointers_bucket"`
	// PublicKeys are ed25519 public keys (base64 of the 32 raw bytes, or a
	// PEM "PUBLIC KEY" block) that artifact signatures are verified against.
	PublicKeys []string `koanf:"public_keys"`
	// Gates are the evaluation floors.
	Gates Gates `koanf:"gates"`
	// Timeout bounds one registry operation.
	Timeout time.Duration `koanf:"timeout"`
	// PointerPoll is how often Watch also reads the pointers directly. The
	// KV watch delivers changes in milliseconds, but after a server restart
	// it takes ~20 s to notice its consumer is gone (measured,
	// TestRegistrySurvivesServerRestart); the poll bounds that to about one
	// interval.
	PointerPoll time.Duration `koanf:"pointer_poll"`

	// The fields below are not configuration keys: cmd sets them from the
	// streams configuration and the deployment environment.

	// Streams gives the subject prefix, replicas and storage of the buckets;
	// the zero value means streams.DefaultConfig().
	Streams streams.Config `koanf:"-"`
	// Production refuses force and, when PublicKeys are set, unsigned artifacts.
	Production bool `koanf:"-"`
}

// DefaultConfig returns the defaults. The floors sit below the committed
// models' held-out figures (heart-xgb 1.0.0: accuracy 0.837, AUC 0.909,
// Brier 0.124) and far above a model that learnt nothing (AUC ≈ 0.5).
func DefaultConfig() Config {
	return Config{
		ModelsBucket:   DefaultModelsBucket,
		PointersBucket: DefaultPointersBucket,
		Gates:          Gates{MinAccuracy: 0.80, MinAUC: 0.85, MaxBrier: 0.20},
		Timeout:        30 * time.Second,
		PointerPoll:    time.Second,
	}
}

var bucketRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// versionRE: valid KV key characters, starting with a letter or digit.
var versionRE = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$`)

// ValidVersion reports whether v can name a version.
func ValidVersion(v string) error {
	if !versionRE.MatchString(v) || v[len(v)-1] == '.' || containsDoubleDot(v) {
		return fmt.Errorf("%w: %s must be 1-64 letters, digits, '.', '_' or '-', start with a letter or digit, and have no empty dot-separated part (e.g. 1.1.0)", ErrInvalidVersion, schemas.Quote(v))
	}
	return nil
}

func containsDoubleDot(s string) bool {
	for i := 1; i < len(s); i++ {
		if s[i] == '.' && s[i-1] == '.' {
			return true
		}
	}
	return false
}

// Validate checks the configuration; every problem names its key.
func (c Config) Validate() error {
	var errs []error
	if !bucketRE.MatchString(c.ModelsBucket) {
		errs = append(errs, fmt.Errorf("registry.models_bucket: %q must be 1-64 letters, digits, '_' or '-'", c.ModelsBucket))
	}
	if !bucketRE.MatchString(c.PointersBucket) {
		errs = append(errs, fmt.Errorf("registry.pointers_bucket: %q must be 1-64 letters, digits, '_' or '-'", c.PointersBucket))
	}
	if c.ModelsBucket == c.PointersBucket {
		errs = append(errs, fmt.Errorf("registry.pointers_bucket: must differ from registry.models_bucket (%q)", c.ModelsBucket))
	}
	for i, k := range c.PublicKeys {
		if _, err := parsePublicKey(k); err != nil {
			// Public keys are not secret, but the message names only the index.
			errs = append(errs, fmt.Errorf("registry.public_keys[%d]: %v", i, err))
		}
	}
	in01 := func(v float64) bool { return !math.IsNaN(v) && v >= 0 && v <= 1 }
	if !in01(c.Gates.MinAccuracy) {
		errs = append(errs, fmt.Errorf("registry.gates.min_accuracy: %v is outside [0, 1]", c.Gates.MinAccuracy))
	}
	if !in01(c.Gates.MinAUC) {
		errs = append(errs, fmt.Errorf("registry.gates.min_auc: %v is outside [0, 1]", c.Gates.MinAUC))
	}
	if !in01(c.Gates.MaxBrier) {
		errs = append(errs, fmt.Errorf("registry.gates.max_brier: %v is outside [0, 1]", c.Gates.MaxBrier))
	}
	if c.Timeout <= 0 || c.Timeout > 10*time.Minute {
		errs = append(errs, fmt.Errorf("registry.timeout: %s is outside (0, 10m]", c.Timeout))
	}
	if c.PointerPoll <= 0 || c.PointerPoll > time.Minute {
		errs = append(errs, fmt.Errorf("registry.pointer_poll: %s is outside (0, 1m]", c.PointerPoll))
	}
	if err := schemas.NewSubjects(c.Streams.Prefix).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("streams.prefix: %w", err))
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero Streams with the defaults.
func (c Config) withDefaults() Config {
	if c.Streams.Prefix == "" && c.Streams.Storage == "" {
		c.Streams = streams.DefaultConfig()
	}
	return c
}

// signaturesRequired: in production, once keys are configured, every
// artifact must carry a valid signature.
func (c Config) signaturesRequired() bool { return c.Production && len(c.PublicKeys) > 0 }
