package monitor

import "time"

// Config configures the monitor. (Skeleton: the monitor owner extends it.)
type Config struct {
	// Window is the sliding window size in joined records.
	WindowSize int `koanf:"window_size"`
	// WindowDuration is the sliding window length in time.
	WindowDuration time.Duration `koanf:"window_duration"`
	// LabelDeadline is how long a prediction waits for its outcome (and an
	// outcome for its prediction) before the pending join expires.
	LabelDeadline time.Duration `koanf:"label_deadline"`
}
