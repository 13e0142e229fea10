package ingest

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/cardiostream/cardiostream/schemas"
)

// Format is an input file format.
type Format string

const (
	// FormatAuto detects the format from the file extension.
	FormatAuto Format = ""
	// FormatUCI is the UCI processed.*.data layout: no header, 14
	// comma-separated columns (13 features, then num), "?" = missing.
	FormatUCI Format = "uci"
	// FormatCSV is comma-separated values with a header row naming columns.
	FormatCSV Format = "csv"
	// FormatJSONL is JSON Lines: one record object per line.
	FormatJSONL Format = "jsonl"
)

// ParseFormat parses a --format value ("", "auto", "uci", "csv", "jsonl";
// "data" and "ndjson" are accepted as aliases).
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return FormatAuto, nil
	case "uci", "data":
		return FormatUCI, nil
	case "csv":
		return FormatCSV, nil
	case "jsonl", "ndjson":
		return FormatJSONL, nil
	}
	return FormatAuto, fmt.Errorf("%w: %q (allowed: auto, uci, csv, jsonl)", ErrUnknownFormat, s)
}

// DetectFormat returns the format for path: forced when not FormatAuto,
// else by extension (.data → uci, .csv → csv, .jsonl/.ndjson → jsonl).
func DetectFormat(path string, forced Format) (Format, error) {
	f, err := ParseFormat(string(forced))
	if err != nil {
		return f, err
	}
	if f != FormatAuto {
		return f, nil
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".data":
		return FormatUCI, nil
	case ".csv":
		return FormatCSV, nil
	case ".jsonl", ".ndjson":
		return FormatJSONL, nil
	}
	return FormatAuto, fmt.Errorf("%w: cannot tell the format of %s from its extension; use --format uci|csv|jsonl", ErrUnknownFormat, path)
}

// SourceFromPath derives a source token from a file name: the base name
// without its extension, with every run of characters outside
// [A-Za-z0-9_-] replaced by '-', trimmed of '-' and '_' (record ids derived
// from it must start with a letter or digit), cut to 64 characters; "replay"
// if nothing is left. "data/processed.cleveland.data" → "processed-cleveland".
func SourceFromPath(path string) string {
	base := filepath.Base(path)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	var b strings.Builder
	dash := false
	for _, r := range base {
		ok := r == '_' || r == '-' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		switch {
		case ok && r != '-':
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.Trim(b.String(), "-_")
	if len(s) > 64 {
		s = strings.TrimRight(s[:64], "-_")
	}
	if s == "" {
		return "replay"
	}
	if s == schemas.ShadowToken { // reserved: see schemas.ValidSource
		return "shadow-replay"
	}
	return s
}
