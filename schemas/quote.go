package schemas

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxErrorDetail bounds how much of a library's error text (encoding/json,
// time, strconv) an error built from a hostile value carries: those texts
// quote the offending value whole (a 1 MB number literal, a 1 MB timestamp).
const MaxErrorDetail = 200

// Clip returns s made valid UTF-8 and cut to at most n bytes at a rune
// boundary, with "…" (3 bytes) appended when cut. Values that came from outside (a
// payload, a file, a KV entry) pass through it before they reach an error,
// a log line or an alert.
func Clip(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) { // do not split a UTF-8 sequence
		n--
	}
	return s[:n] + "…"
}

// Quote renders an outside value for an error: quoted, at most maxQuoted
// bytes of it.
func Quote(s string) string { return strconv.Quote(Clip(s, maxQuoted)) }

// ErrorDetail is err's text clipped to MaxErrorDetail bytes, for wrapping a
// library error about a hostile value with %s (never %w, which would keep
// the whole text).
func ErrorDetail(err error) string { return Clip(err.Error(), MaxErrorDetail) }
