package secret

import (
	"fmt"
	"log/slog"
)

// String holds a secret. Every way of printing it redacts it; Reveal returns
// the value for the one place that must use it.
type String string

const redacted = "REDACTED"

// Reveal returns the secret's value.
func (s String) Reveal() string { return string(s) }

// IsSet reports whether the secret has a value.
func (s String) IsSet() bool { return s != "" }

// String redacts.
func (s String) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString redacts (%#v).
func (s String) GoString() string { return `secret.String("` + s.String() + `")` }

// Format redacts for every verb.
func (s String) Format(f fmt.State, _ rune) {
	_, _ = f.Write([]byte(s.String()))
}

// MarshalText redacts (JSON, YAML and TOML encoders use it).
func (s String) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LogValue redacts in slog.
func (s String) LogValue() slog.Value { return slog.StringValue(s.String()) }
