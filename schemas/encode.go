package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Every message marshals with encoding/json's conventions (HTML-safe string
// escaping, its float formatting, RFC 3339 times with nanoseconds) and always
// carries schema_version: a zero SchemaVersion is written as Version.
// Prediction, the message written once per record, has a hand-written
// encoder (AppendJSON) whose output is byte-identical to encoding/json's.

// ErrUnencodable is returned by MarshalJSON for values JSON cannot carry:
// NaN or infinite numbers, times outside years 0–9999.
var ErrUnencodable = errors.New("value cannot be encoded as JSON")

func version(v int) int {
	if v == 0 {
		return Version
	}
	return v
}

// AppendJSON appends the prediction's JSON encoding to b, byte-identical to
// encoding/json's, without allocating beyond growing b. It returns b
// unchanged and an error wrapping ErrUnencodable when a number is NaN or
// infinite or a time is outside years 0-9999, as encoding/json would refuse.
func (p *Prediction) AppendJSON(b []byte) ([]byte, error) {
	if err := p.encodable(); err != nil {
		return b, err
	}
	b = append(b, `{"schema_version":`...)
	b = strconv.AppendInt(b, int64(version(p.SchemaVersion)), 10)
	b = append(b, `,"record_id":`...)
	b = appendString(b, p.RecordID)
	b = append(b, `,"source":`...)
	b = appendString(b, p.Source)
	if p.PatientRef != "" {
		b = append(b, `,"patient_ref":`...)
		b = appendString(b, p.PatientRef)
	}
	b = append(b, `,"probability":`...)
	b = appendFloat(b, p.Probability)
	b = append(b, `,"label":`...)
	b = strconv.AppendInt(b, int64(p.Label), 10)
	b = append(b, `,"threshold":`...)
	b = appendFloat(b, p.Threshold)
	b = append(b, `,"model":{"name":`...)
	b = appendString(b, p.Model.Name)
	b = append(b, `,"version":`...)
	b = appendString(b, p.Model.Version)
	b = append(b, `,"sha256":`...)
	b = appendString(b, p.Model.SHA256)
	b = append(b, `},"received_at":`...)
	b = appendTime(b, p.ReceivedAt)
	b = append(b, `,"scored_at":`...)
	b = appendTime(b, p.ScoredAt)
	b = append(b, `,"latency_ms":`...)
	b = appendFloat(b, p.LatencyMS)
	if p.Deliveries != 0 {
		b = append(b, `,"deliveries":`...)
		b = strconv.AppendUint(b, p.Deliveries, 10)
	}
	return append(b, '}'), nil
}

// encodable reports the values encoding/json would refuse.
func (p *Prediction) encodable() error {
	for _, f := range [...]float64{p.Probability, p.Threshold, p.LatencyMS} {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("encoding prediction %q: %w: number %v", p.RecordID, ErrUnencodable, f)
		}
	}
	for _, t := range [...]time.Time{p.ReceivedAt, p.ScoredAt} {
		if y := t.Year(); y < 0 || y > 9999 {
			return fmt.Errorf("encoding prediction %q: %w: time in year %d", p.RecordID, ErrUnencodable, y)
		}
	}
	return nil
}

// MarshalJSON encodes the prediction with AppendJSON.
func (p Prediction) MarshalJSON() ([]byte, error) {
	return p.AppendJSON(make([]byte, 0, 384))
}

// MarshalJSON encodes the record; missing features are null.
func (r Record) MarshalJSON() ([]byte, error) {
	type plain Record
	r.SchemaVersion = version(r.SchemaVersion)
	return json.Marshal(plain(r))
}

// MarshalJSON encodes the outcome.
func (o Outcome) MarshalJSON() ([]byte, error) {
	type plain Outcome
	o.SchemaVersion = version(o.SchemaVersion)
	return json.Marshal(plain(o))
}

// MarshalJSON encodes the dead letter; nil Reasons and Payload are written as
// [] and "" so that consumers always see an array and a string.
func (d DeadLetter) MarshalJSON() ([]byte, error) {
	type plain DeadLetter
	d.SchemaVersion = version(d.SchemaVersion)
	if d.Reasons == nil {
		d.Reasons = []Problem{}
	}
	if d.Payload == nil {
		d.Payload = []byte{}
	}
	return json.Marshal(plain(d))
}

// MarshalJSON encodes the alert.
func (a Alert) MarshalJSON() ([]byte, error) {
	type plain Alert
	a.SchemaVersion = version(a.SchemaVersion)
	return json.Marshal(plain(a))
}

// appendFloat formats f exactly as encoding/json does for a float64.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(b) - start
		if n >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
	}
	return b
}

// appendTime writes t as encoding/json does (RFC 3339 with nanoseconds).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string exactly as encoding/json does with
// its default HTML escaping: <, > and & as \u003c..., control characters
// escaped, U+2028/U+2029 escaped, invalid UTF-8 replaced by \ufffd.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
