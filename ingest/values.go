package ingest

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxIDBytes bounds a record id read from a file; it travels in the
// Nats-Msg-Id header, so it must stay short and free of control characters.
const MaxIDBytes = 256

// isMissingToken reports whether a (trimmed) cell means "missing": empty,
// "?", "NA", "N/A", "NaN" or "null", in any case. UCI writes "?"; other
// copies of the data use the rest.
func isMissingToken(s string) bool {
	switch len(s) {
	case 0:
		return true
	case 1:
		return s == "?"
	}
	switch strings.ToLower(s) {
	case "na", "n/a", "nan", "null":
		return true
	}
	return false
}

// parseNumber parses a plain decimal number: "63", "63.0", ".7", "-0.5",
// "1e3". It refuses "inf", "nan", hex floats and digit separators, which
// strconv.ParseFloat would accept, and values outside the float64 range.
func parseNumber(s string) (float64, error) {
	digits := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits = true
		case c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E':
		default:
			return 0, ErrNotNumber
		}
	}
	if !digits {
		return 0, ErrNotNumber
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) {
		return 0, ErrNotNumber
	}
	return v, nil
}

// parseFeature parses one feature cell; missing tokens give NaN.
func parseFeature(cell string) (float64, error) {
	cell = strings.TrimSpace(cell)
	if isMissingToken(cell) {
		return math.NaN(), nil
	}
	return parseNumber(cell)
}

// parseLabelCell turns a num/label cell into a binary label: missing → nil
// (no outcome), > 0 → 1, 0 → 0; negative or non-numeric → ErrBadLabel.
func parseLabelCell(cell string) (*int, error) {
	cell = strings.TrimSpace(cell)
	if isMissingToken(cell) {
		return nil, nil
	}
	v, err := parseNumber(cell)
	if err != nil {
		return nil, fmt.Errorf("%w: not a number", ErrBadLabel)
	}
	return labelOf(v)
}

func labelOf(v float64) (*int, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return nil, fmt.Errorf("%w: must be 0 (no disease) or greater (disease)", ErrBadLabel)
	}
	l := 0
	if v > 0 {
		l = 1
	}
	return &l, nil
}

// checkID validates a record id taken from a file.
func checkID(id string) error {
	if len(id) > MaxIDBytes {
		return fmt.Errorf("%w: longer than %d bytes", ErrBadID, MaxIDBytes)
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("%w: not valid UTF-8", ErrBadID)
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: contains a control character", ErrBadID)
		}
	}
	return nil
}

// parseTimestamp parses an observed_at cell (RFC 3339); missing → zero.
func parseTimestamp(cell string) (time.Time, error) {
	cell = strings.TrimSpace(cell)
	if isMissingToken(cell) {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, cell)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: want RFC 3339, e.g. 2024-05-01T12:00:00Z", ErrBadTimestamp)
	}
	return t.UTC(), nil
}
