package config

import (
	"encoding"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cardiostream/cardiostream/internal/secret"
)

// Shown by Redacted in place of a secret's value.
const (
	SecretSet   = "<set>"
	SecretUnset = "<unset>"
)

var secretType = reflect.TypeFor[secret.String]()

// secretWords mark a key as secret when they are one of its name's words
// (api_key, webhook.secret, token, db_password), unless the name ends in
// _file, _path or _dir (key_file is the path of a key, not a key).
var secretWords = []string{"secret", "key", "token", "password", "passwd", "credentials"}

// isSecretKey reports whether key names a secret, by its type or its name.
func isSecretKey(key string) bool {
	if configSchema.leaves[key] == secretType {
		return true
	}
	name := key[strings.LastIndex(key, ".")+1:]
	words := strings.Split(name, "_")
	switch words[len(words)-1] {
	case "file", "path", "dir":
		return false
	}
	for _, w := range words {
		for _, s := range secretWords {
			if w == s {
				return true
			}
		}
	}
	return false
}

// Redacted returns the configuration as nested maps keyed like the YAML
// file, for "config show": every secret is "<set>" or "<unset>", credentials
// and paths in URLs are masked, durations are strings ("30s").
func (c *Config) Redacted() map[string]any {
	return redactValue("", reflect.ValueOf(*c)).(map[string]any)
}

// RedactedYAML is Redacted as YAML (keys sorted).
func (c *Config) RedactedYAML() ([]byte, error) {
	return yaml.Marshal(c.Redacted())
}

func redactValue(key string, v reflect.Value) any {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	t := v.Type()
	if t.Kind() == reflect.String && (t == secretType || isSecretKey(key)) {
		if v.String() == "" {
			return SecretUnset
		}
		return SecretSet
	}
	switch {
	case t == durationType:
		return formatDuration(time.Duration(v.Int()))
	case t == timeType:
		return v.Interface().(time.Time).Format(time.RFC3339Nano)
	case t.Kind() == reflect.String:
		s := v.String()
		if strings.HasSuffix(key, ".url") && s != "" {
			return RedactURLs(s)
		}
		return s
	case t.Kind() == reflect.Struct && reflect.PointerTo(t).Implements(textUnmarshalerType):
		if m, ok := v.Interface().(encoding.TextMarshaler); ok {
			b, err := m.MarshalText()
			if err != nil {
				return "<unprintable>"
			}
			return string(b)
		}
		return "<unprintable>"
	case t.Kind() == reflect.Struct:
		m := map[string]any{}
		for _, f := range fields(t) {
			fv := v.Field(f.index)
			if f.squash {
				if sub, ok := redactValue(key, fv).(map[string]any); ok {
					for k, x := range sub {
						m[k] = x
					}
					continue
				}
			}
			m[f.name] = redactValue(join(key, f.name), fv)
		}
		return m
	case t.Kind() == reflect.Map:
		m := make(map[string]any, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			k := keyString(iter.Key())
			m[k] = redactValue(join(key, k), iter.Value())
		}
		return m
	case (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && t.Elem().Kind() != reflect.Uint8:
		out := make([]any, v.Len())
		for i := range v.Len() {
			// Elements share the list's key, so a list of secrets stays secret.
			out[i] = redactValue(key, v.Index(i))
		}
		return out
	default:
		return v.Interface()
	}
}

func keyString(v reflect.Value) string {
	if v.Kind() == reflect.String {
		return v.String()
	}
	return reflect.ValueOf(v.Interface()).String()
}

// formatDuration is Duration.String without zero trailing units ("24h", not
// "24h0m0s"), which reads the way people write durations in YAML.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Format prints the configuration as Redacted does, for every verb, so
// printing a Config (%v, %+v, %#v, %s) never shows a secret, a password in a
// URL or a token in a webhook path.
func (c Config) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = fmt.Fprintf(f, "config.Config(%v)", c.Redacted())
		return
	}
	_, _ = fmt.Fprintf(f, "%v", c.Redacted())
}

// MarshalJSON encodes Redacted: a Config serialised by accident (a debug
// endpoint, a JSON log) carries no secret.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.Redacted()) }

// LogValue logs Redacted.
func (c Config) LogValue() slog.Value { return slog.AnyValue(c.Redacted()) }

// Format prints the NATS section with credentials in URLs masked.
func (n NATS) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprintf(f, "%v", redactValue("nats", reflect.ValueOf(n)))
}

// MarshalJSON encodes the NATS section with credentials in URLs masked.
func (n NATS) MarshalJSON() ([]byte, error) {
	return json.Marshal(redactValue("nats", reflect.ValueOf(n)))
}

// LogValue logs the NATS section with credentials in URLs masked.
func (n NATS) LogValue() slog.Value { return slog.AnyValue(redactValue("nats", reflect.ValueOf(n))) }
