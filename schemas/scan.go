package schemas

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The decoders read payloads with this small strict scanner instead of
// encoding/json: it accepts exactly RFC 8259 JSON, sees duplicate keys (which
// encoding/json silently merges), keeps going after a bad field so that every
// problem is reported, and does not allocate per field.

// maxDepth bounds the nesting of values the scanner skips (unknown or
// duplicate members); deeper payloads are rejected rather than recursed into.
const maxDepth = 64

// jsonKind is the JSON type of the value at the scanner's position, from its
// first byte.
type jsonKind uint8

const (
	kindInvalid   jsonKind = iota
	kindObject             // {
	kindArray              // [
	kindString             // "
	kindNumber             // - or digit
	kindBool               // t or f
	kindNull               // n
	kindNonFinite          // N, I or -I: NaN/Infinity, which JSON does not have
)

var kindNames = [...]string{
	kindInvalid:   "invalid JSON",
	kindObject:    "object",
	kindArray:     "array",
	kindString:    "string",
	kindNumber:    "number",
	kindBool:      "boolean",
	kindNull:      "null",
	kindNonFinite: "a non-finite number",
}

func (k jsonKind) String() string { return kindNames[k] }

type scanner struct {
	data  []byte
	pos   int
	probs []Problem
	shape bool // a decode-stage (syntax or shape) problem was recorded
	fatal bool // a syntax error ended the scan
}

// addShape records a problem with the payload's syntax or shape (StageDecode).
func (s *scanner) addShape(field, problem string) {
	s.probs = append(s.probs, Problem{Field: field, Problem: problem})
	s.shape = true
}

// addValue records a problem with a well-formed value (StageValidate).
func (s *scanner) addValue(field, problem string) {
	s.probs = append(s.probs, Problem{Field: field, Problem: problem})
}

// syntax records a syntax error at the current position and stops the scan:
// after one, nothing that follows can be trusted.
func (s *scanner) syntax(msg string) {
	if s.fatal {
		return
	}
	s.addShape("", "invalid JSON at byte "+strconv.Itoa(s.pos)+": "+msg)
	s.fatal = true
}

// unexpected records a syntax error naming what was found instead of want.
func (s *scanner) unexpected(want string) {
	if s.pos >= len(s.data) {
		s.syntax("unexpected end of input; expected " + want)
		return
	}
	r, _ := utf8.DecodeRune(s.data[s.pos:])
	s.syntax("unexpected " + strconv.QuoteRune(r) + "; expected " + want)
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

func (s *scanner) kind() jsonKind {
	switch c := s.peek(); c {
	case '{':
		return kindObject
	case '[':
		return kindArray
	case '"':
		return kindString
	case 't', 'f':
		return kindBool
	case 'n':
		return kindNull
	case 'N', 'I':
		return kindNonFinite
	case '-':
		if s.pos+1 < len(s.data) && s.data[s.pos+1] == 'I' {
			return kindNonFinite
		}
		return kindNumber
	default:
		if c >= '0' && c <= '9' {
			return kindNumber
		}
		return kindInvalid
	}
}

// begin checks the payload as a whole and consumes the opening brace of the
// top-level object. It returns false (with a problem recorded) otherwise.
func (s *scanner) begin() bool {
	if len(s.data) == 0 {
		s.addShape("", "payload is empty; expected a JSON object")
		s.fatal = true
		return false
	}
	if !utf8.Valid(s.data) {
		s.addShape("", "payload is not valid UTF-8 (first invalid byte at "+strconv.Itoa(firstInvalidUTF8(s.data))+")")
		s.fatal = true
		return false
	}
	s.ws()
	if k := s.kind(); k != kindObject {
		switch {
		case s.pos == len(s.data):
			s.addShape("", "payload is only whitespace; expected a JSON object")
		case k == kindInvalid || k == kindNonFinite:
			s.unexpected("a JSON object")
		case !s.scalarToken(k):
			// Not the value its first byte suggests ("this is not JSON"
			// starts like true): a syntax error, recorded.
		default:
			s.addShape("", "payload must be a JSON object, got "+k.String())
		}
		s.fatal = true
		return false
	}
	s.pos++
	return true
}

// scalarToken checks that the value at s.pos, of kind k judged from its first
// byte, really is one: a literal, number or string token. It records a
// syntax error and returns false when it is not. Arrays are not scanned:
// "must be an object, got array" says enough.
func (s *scanner) scalarToken(k jsonKind) bool {
	start := s.pos
	defer func() { s.pos = start }()
	switch k {
	case kindBool, kindNull:
		for _, lit := range [...]string{"true", "false", "null"} {
			if len(s.data)-s.pos >= len(lit) && string(s.data[s.pos:s.pos+len(lit)]) == lit {
				return true
			}
		}
		s.unexpected("a JSON object")
		return false
	case kindNumber:
		_, _, ok := s.number()
		return ok
	case kindString:
		_, _, ok := s.str()
		return ok
	}
	return true
}

// end checks that nothing but whitespace follows the top-level object.
func (s *scanner) end() {
	s.ws()
	if s.pos < len(s.data) {
		s.addShape("", "unexpected data after the JSON object at byte "+strconv.Itoa(s.pos)+"; a payload is a single object")
		s.fatal = true
	}
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// member moves to the next member of the object being read (whose '{' has
// been consumed). It returns the member's key, unescaped into kbuf when it has
// escapes (keys longer than kbuf are cut, which no known key is), positioned
// at the member's value; ok is false at the closing brace or after a syntax
// error (check s.fatal).
func (s *scanner) member(first bool, kbuf []byte) (key []byte, ok bool) {
	s.ws()
	c := s.peek()
	if c == '}' {
		s.pos++
		return nil, false
	}
	if !first {
		if c != ',' {
			s.unexpected("',' or '}' after an object member")
			return nil, false
		}
		s.pos++
		s.ws()
		c = s.peek()
	}
	if c != '"' {
		s.unexpected("a string key")
		return nil, false
	}
	raw, esc, ok := s.str()
	if !ok {
		return nil, false
	}
	if esc {
		raw, _ = unescape(raw, kbuf)
	}
	s.ws()
	if s.peek() != ':' {
		s.unexpected("':' after an object key")
		return nil, false
	}
	s.pos++
	s.ws()
	return raw, true
}

// str scans the string at s.pos (a '"') and returns its raw contents without
// the quotes and whether they contain escapes. UTF-8 was checked by begin.
func (s *scanner) str() (raw []byte, esc bool, ok bool) {
	d := s.data
	start := s.pos + 1
	i := start
	for i < len(d) {
		// Most bytes are plain: skip them eight at a time, and bytewise in
		// the last seven, until one is not; c is that byte.
		var c byte
		if i+8 <= len(d) {
			w := binary.LittleEndian.Uint64(d[i:])
			m := special(w)
			if m == 0 {
				i += 8
				continue
			}
			n := bits.TrailingZeros64(m) // 8k+7 for byte k
			i += n / 8
			c = byte(w >> (n &^ 7))
		} else if c = d[i]; !strSpecial[c] {
			i++
			continue
		}
		switch {
		case c == '"':
			s.pos = i + 1
			return d[start:i], esc, true
		case c == '\\':
			esc = true
			if i+1 >= len(d) {
				s.pos = len(d)
				s.syntax("unterminated string")
				return nil, false, false
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) || !isHex4(d[i+2:i+6]) {
					s.pos = i
					s.syntax(`\u must be followed by four hex digits`)
					return nil, false, false
				}
				i += 6
			default:
				s.pos = i
				s.syntax("invalid escape " + strconv.Quote(string(d[i:i+2])) + " in string")
				return nil, false, false
			}
		default: // c < 0x20: nothing else stops a plain run
			s.pos = i
			s.syntax("control character " + strconv.QuoteRune(rune(c)) + " in string; it must be escaped")
			return nil, false, false
		}
	}
	s.pos = len(d)
	s.syntax("unterminated string")
	return nil, false, false
}

// special flags, in the high bit of its byte, the first byte of w (read
// little-endian: byte 0 is the lowest) that ends a plain run (strSpecial),
// and is 0 when there is none. It is the classic "has a zero byte" trick:
// x-0x0101…01 sets the high bit of a byte of x that was 0x00 (x = w^0x2222…22
// is 0x00 where w holds '"'; likewise for '\\'), and w-0x2020…20 that of a
// byte below 0x20; "&^ w" drops the bytes ≥ 0x80 (UTF-8, plain), whose high
// bit the subtractions set too. A borrow can flag bytes above (after) the
// first special one spuriously, never one below: the lowest flag is exact,
// and str uses nothing else.
func special(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q, b := w^(ones*'"'), w^(ones*'\\')
	return ((w - ones*0x20) | (q - ones) | (b - ones)) &^ w & highs
}

// strSpecial marks the bytes that end a string's plain run: the quote, the
// backslash and the control characters.
var strSpecial = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func hexVal(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// unescape decodes the raw contents of a string that str accepted into
// dst[:0], never growing dst beyond its capacity (so a stack buffer stays on
// the stack). full is false when the value did not fit. Unpaired surrogates
// become U+FFFD, as encoding/json does.
func unescape(raw, dst []byte) (out []byte, full bool) {
	out = dst[:0]
	room := func(n int) bool { return len(out)+n <= cap(out) }
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			if !room(1) {
				return out, false
			}
			out = append(out, c)
			i++
			continue
		}
		var r rune
		switch raw[i+1] {
		case 'u':
			r = hexVal(raw[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					r2 = utf16.DecodeRune(r, hexVal(raw[i+2:]))
				}
				if r2 != utf8.RuneError {
					i += 6
				}
				r = r2
			}
		case 'b':
			r, i = '\b', i+2
		case 'f':
			r, i = '\f', i+2
		case 'n':
			r, i = '\n', i+2
		case 'r':
			r, i = '\r', i+2
		case 't':
			r, i = '\t', i+2
		default: // '"', '\\', '/'
			r, i = rune(raw[i+1]), i+2
		}
		if !room(utf8.RuneLen(r)) {
			return out, false
		}
		out = utf8.AppendRune(out, r)
	}
	return out, true
}

// stringValue reads the string at s.pos, unescaping into buf when needed.
// full is false when the unescaped value is longer than buf.
func (s *scanner) stringValue(buf []byte) (val []byte, full, ok bool) {
	raw, esc, ok := s.str()
	if !ok {
		return nil, false, false
	}
	if !esc {
		return raw, true, true
	}
	val, full = unescape(raw, buf)
	return val, full, true
}

// number scans the number at s.pos with RFC 8259's grammar. integral says
// whether the decimal text denotes an integer exactly (1.0 and 1e2 do, 1.5
// and 1e-400 do not), judged on the text, as JSON Schema does, rather than on
// the rounded float.
func (s *scanner) number() (raw []byte, integral, ok bool) {
	d, start := s.data, s.pos
	i := start
	if i < len(d) && d[i] == '-' {
		i++
	}
	intStart := i
	switch {
	case i < len(d) && d[i] == '0':
		i++
		if i < len(d) && d[i] >= '0' && d[i] <= '9' {
			s.pos = i
			s.syntax("leading zero in number")
			return nil, false, false
		}
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		s.pos = i
		s.unexpected("a digit")
		return nil, false, false
	}
	intDigits := d[intStart:i]
	var frac []byte
	if i < len(d) && d[i] == '.' {
		i++
		fs := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == fs {
			s.pos = i
			s.unexpected("a digit after the decimal point")
			return nil, false, false
		}
		frac = d[fs:i]
	}
	exp := 0
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		neg := false
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			neg = d[i] == '-'
			i++
		}
		es := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			if exp < 1_000_000 { // payloads are small; beyond this only the sign matters
				exp = exp*10 + int(d[i]-'0')
			}
			i++
		}
		if i == es {
			s.pos = i
			s.unexpected("a digit in the exponent")
			return nil, false, false
		}
		if neg {
			exp = -exp
		}
	}
	// A number ends at whitespace, a structural character or the end of
	// input: "0x3F" or "63abc" is a syntax error, not the number 0 or 63
	// followed by garbage (which would report a misleading range problem).
	if i < len(d) {
		switch d[i] {
		case ' ', '\t', '\n', '\r', ',', '}', ']':
		default:
			s.pos = i
			s.unexpected("',', '}', ']' or whitespace after a number")
			return nil, false, false
		}
	}
	s.pos = i
	return d[start:i], isIntegral(intDigits, frac, exp), true
}

// isIntegral reports whether the decimal intDigits.frac × 10^exp is an integer:
// every digit right of the shifted decimal point is zero.
func isIntegral(intDigits, frac []byte, exp int) bool {
	n := len(intDigits) + len(frac)
	p := len(intDigits) + exp
	if p < 0 {
		p = 0
	}
	for k := p; k < n; k++ {
		c := byte('0')
		if k < len(intDigits) {
			c = intDigits[k]
		} else {
			c = frac[k-len(intDigits)]
		}
		if c != '0' {
			return false
		}
	}
	return true
}

// float parses a number token that number accepted. Overflow (1e400) yields
// ±Inf, which no range accepts; -0 becomes 0.
func parseFloat(raw []byte) float64 {
	v, _ := strconv.ParseFloat(string(raw), 64) // syntax already checked; ErrRange gives ±Inf
	return v + 0
}

// literal consumes lit ("true", "false", "null") at s.pos.
func (s *scanner) literal(lit string) bool {
	if len(s.data)-s.pos >= len(lit) && string(s.data[s.pos:s.pos+len(lit)]) == lit {
		s.pos += len(lit)
		return true
	}
	s.unexpected("a JSON value")
	return false
}

// nonFinite consumes a NaN, Infinity or -Infinity literal, which JSON does not
// allow, and records a problem for field; anything else is a syntax error.
func (s *scanner) nonFinite(field, hint string) bool {
	for _, lit := range [...]string{"NaN", "Infinity", "-Infinity"} {
		if len(s.data)-s.pos >= len(lit) && string(s.data[s.pos:s.pos+len(lit)]) == lit {
			s.pos += len(lit)
			s.addShape(field, lit+" is not valid JSON"+hint)
			return true
		}
	}
	s.unexpected("a JSON value")
	return false
}

// skip consumes one value of any kind, checking its syntax, without keeping
// it. Containers are followed with an explicit stack, bounded by maxDepth.
func (s *scanner) skip(field string) bool {
	var stack [maxDepth]byte
	depth := 0
	for {
		// A value starts here.
		s.ws()
		closed := true
		switch s.kind() {
		case kindObject, kindArray:
			if depth == maxDepth {
				s.syntax("nested deeper than " + strconv.Itoa(maxDepth) + " levels")
				return false
			}
			open := s.data[s.pos]
			stack[depth] = open
			depth++
			s.pos++
			s.ws()
			if (open == '{' && s.peek() == '}') || (open == '[' && s.peek() == ']') {
				s.pos++
				depth--
			} else if open == '{' {
				if !s.skipKey() {
					return false
				}
				closed = false
			} else {
				closed = false
			}
		case kindString:
			if _, _, ok := s.str(); !ok {
				return false
			}
		case kindNumber:
			if _, _, ok := s.number(); !ok {
				return false
			}
		case kindBool:
			lit := "false"
			if s.peek() == 't' {
				lit = "true"
			}
			if !s.literal(lit) {
				return false
			}
		case kindNull:
			if !s.literal("null") {
				return false
			}
		case kindNonFinite:
			if !s.nonFinite(field, "") {
				return false
			}
		default:
			s.unexpected("a JSON value")
			return false
		}
		if !closed {
			continue
		}
		// A value ended: close containers until one continues.
		for {
			if depth == 0 {
				return true
			}
			s.ws()
			top, c := stack[depth-1], s.peek()
			if c == ',' {
				s.pos++
				if top == '{' {
					s.ws()
					if !s.skipKey() {
						return false
					}
				}
				break
			}
			if (top == '{' && c == '}') || (top == '[' && c == ']') {
				s.pos++
				depth--
				continue
			}
			if top == '{' {
				s.unexpected("',' or '}'")
			} else {
				s.unexpected("',' or ']'")
			}
			return false
		}
	}
}

// skipKey consumes `"key" :` inside a skipped object.
func (s *scanner) skipKey() bool {
	if s.peek() != '"' {
		s.unexpected("a string key")
		return false
	}
	if _, _, ok := s.str(); !ok {
		return false
	}
	s.ws()
	if s.peek() != ':' {
		s.unexpected("':' after an object key")
		return false
	}
	s.pos++
	return true
}

// wrongType records that field holds a value of the wrong JSON type and skips
// it. want is the rule, e.g. "must be a string".
func (s *scanner) wrongType(field, want string) {
	k := s.kind()
	if k == kindNonFinite {
		s.nonFinite(field, "")
		return
	}
	if k == kindInvalid {
		s.unexpected("a JSON value")
		return
	}
	s.addShape(field, want+gotSep+k.String())
	s.skip(field)
}

// fieldPath joins an object path and a key for a Problem's Field: "features.age";
// keys that are not plain identifiers are quoted: features["a b"].
func fieldPath(prefix string, key []byte) string {
	plain := len(key) > 0
	for _, c := range key {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			plain = false
			break
		}
	}
	k := string(key)
	if len(key) > maxQuoted {
		k = shorten(key)
	}
	if !plain {
		k = "[" + strconv.Quote(k) + "]"
		if prefix == "" {
			return k
		}
		return prefix + k
	}
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}
