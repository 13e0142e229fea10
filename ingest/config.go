package ingest

import "time"

// Config configures a replay. (Skeleton: the ingest owner extends it.)
type Config struct {
	Rate       float64       `koanf:"rate"`
	Repeat     int           `koanf:"repeat"`
	Outcomes   bool          `koanf:"outcomes"`
	LabelDelay time.Duration `koanf:"label_delay"`
}
