package config

import (
	"fmt"
	"io"
	"log/slog"
)

var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

// SlogLevel returns the slog level of Level (info when it is not valid;
// Validate reports that).
func (l Log) SlogLevel() slog.Level {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.Level)); err != nil {
		return slog.LevelInfo
	}
	return lvl
}

// Handler returns the slog handler the configuration asks for, writing to w.
func (l Log) Handler(w io.Writer) (slog.Handler, error) {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	switch l.Format {
	case "text":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	default:
		return nil, fmt.Errorf("log.format: %q is not text or json", l.Format)
	}
}
