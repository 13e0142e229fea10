package schemas

import (
	"errors"
	"log/slog"
	"strconv"
	"strings"

	"github.com/cardiostream/cardiostream/internal/suggest"
)

// ErrInvalid is matched (errors.Is) by every *ValidationError.
var ErrInvalid = errors.New("invalid message")

// ValidationError lists every field-level problem found in one message.
//
// Problems quote the offending values ("must be between 50 and 700 mg/dl, got
// 1200") because they go into dead letters next to the payload. Error and
// LogValue leave the values out, so that logging the error never writes
// patient data: every Problem text that quotes a value does so after ", got ".
type ValidationError struct {
	Stage    Stage
	Problems []Problem
}

// Error lists the problems without the offending values, e.g.
// "invalid message (validate): features.chol: must be between 50 and 700 mg/dl".
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid message (")
	b.WriteString(string(e.Stage))
	b.WriteString("): ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		if p.Field != "" {
			b.WriteString(p.Field)
			b.WriteString(": ")
		}
		b.WriteString(p.Rule())
	}
	return b.String()
}

// Detail is like Error but keeps the offending values: for dead letters and
// operator tools, not for logs.
func (e *ValidationError) Detail() string {
	var b strings.Builder
	b.WriteString("invalid message (")
	b.WriteString(string(e.Stage))
	b.WriteString("): ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) true for validation errors.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// LogValue logs the stage, the number of problems and the fields involved,
// never the values.
func (e *ValidationError) LogValue() slog.Value {
	fields := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		f := p.Field
		if f == "" {
			f = "(payload)"
		}
		fields = append(fields, f)
	}
	return slog.GroupValue(
		slog.String("stage", string(e.Stage)),
		slog.Int("problems", len(e.Problems)),
		slog.String("fields", strings.Join(fields, ",")),
		slog.String("error", e.Error()),
	)
}

// Rule is the problem without the offending value ("must be between 50 and 700
// mg/dl"): the text before ", got ".
func (p Problem) Rule() string {
	if i := strings.Index(p.Problem, gotSep); i >= 0 {
		return p.Problem[:i]
	}
	return p.Problem
}

// String is "field: problem", or the problem alone for the whole payload.
func (p Problem) String() string {
	if p.Field == "" {
		return p.Problem
	}
	return p.Field + ": " + p.Problem
}

// closestKey returns the known key closest to key (ignoring case; a known key
// that is a prefix of key, as "chol" of "cholesterol", counts as close), or ""
// when none is within two edits.
func closestKey(key string, known []string) string {
	lk := strings.ToLower(key)
	best, bestD := "", 3
	for _, k := range known {
		d := suggest.Distance(lk, k)
		if len(k) >= 3 && (strings.HasPrefix(lk, k) || strings.HasPrefix(k, lk)) && len(lk) >= 3 {
			d = min(d, 1)
		}
		if d < bestD && d <= max(1, len(lk)/3) {
			best, bestD = k, d
		}
	}
	if len(key) > 64 {
		return ""
	}
	return best
}

func joinQuoted(ss []string) string {
	var b strings.Builder
	for i, s := range ss {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(s))
	}
	return b.String()
}
