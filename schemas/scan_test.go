package schemas

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// refStr is str as it was before it read eight bytes at a time: the plain
// bytewise loop, kept as the reference the fast one must match exactly.
func (s *scanner) refStr() (raw []byte, esc bool, ok bool) {
	start := s.pos + 1
	i := start
	for i < len(s.data) {
		for i < len(s.data) && !strSpecial[s.data[i]] {
			i++
		}
		if i == len(s.data) {
			break
		}
		c := s.data[i]
		switch {
		case c == '"':
			s.pos = i + 1
			return s.data[start:i], esc, true
		case c == '\\':
			esc = true
			if i+1 >= len(s.data) {
				s.pos = len(s.data)
				s.syntax("unterminated string")
				return nil, false, false
			}
			switch s.data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s.data) || !isHex4(s.data[i+2:i+6]) {
					s.pos = i
					s.syntax(`\u must be followed by four hex digits`)
					return nil, false, false
				}
				i += 6
			default:
				s.pos = i
				s.syntax("invalid escape " + strconv.Quote(string(s.data[i:i+2])) + " in string")
				return nil, false, false
			}
		case c < 0x20:
			s.pos = i
			s.syntax("control character " + strconv.QuoteRune(rune(c)) + " in string; it must be escaped")
			return nil, false, false
		default:
			i++
		}
	}
	s.pos = len(s.data)
	s.syntax("unterminated string")
	return nil, false, false
}

// strOutcome is everything str leaves behind.
type strOutcome struct {
	Raw          string
	RawAt        int // offset of raw in the data, -1 when nil
	Esc, OK      bool
	Pos          int
	Probs        []Problem
	Fatal, Shape bool
}

func runStr(data []byte, pos int, ref bool) strOutcome {
	s := scanner{data: data, pos: pos}
	var raw []byte
	var esc, ok bool
	if ref {
		raw, esc, ok = s.refStr()
	} else {
		raw, esc, ok = s.str()
	}
	at := -1
	if raw != nil {
		at = cap(data) - cap(raw) // raw is data[at:i]
	}
	return strOutcome{Raw: string(raw), RawAt: at, Esc: esc, OK: ok, Pos: s.pos, Probs: s.probs, Fatal: s.fatal, Shape: s.shape}
}

// checkStr compares str with refStr on the string starting at data[pos].
func checkStr(t *testing.T, data []byte, pos int) {
	t.Helper()
	got, want := runStr(data, pos, false), runStr(data, pos, true)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("str(%q at %d):\n got  %+v\n want %+v", data, pos, got, want)
	}
}

// strBoundaryCases are strings whose special bytes sit at every offset of the
// first words, each also cut short at every length and followed by more
// payload, so that the end of the data falls inside, between and after the
// words str reads.
func strBoundaryCases() [][]byte {
	var bodies []string
	plain := func(n int) string { return strings.Repeat("a", n) }
	for off := 0; off <= 16; off++ {
		// Each byte value at each offset: the special ones end the plain
		// run, all others (≥ 0x80 included, by themselves) must not.
		for c := 0; c < 256; c++ {
			bodies = append(bodies, plain(off)+string([]byte{byte(c)})+plain(3))
		}
		// Escapes at every offset, straddling the word boundary for the
		// longer ones, valid and not.
		for _, e := range []string{`\"`, `\\`, `\/`, `\b`, `\n`, `\t`, `\u00e9`, `\uD83D\uDE00`, `\u12`, `\u12G4`, `\x`, `\`, `\\\"`} {
			bodies = append(bodies, plain(off)+e+plain(2))
		}
		// Two special bytes in one word: only the first counts.
		for _, p := range []string{"\"\x01", "\x01\"", "\\\"\x1f", "\\n\"", "\x1f\\", "\"\\"} {
			bodies = append(bodies, plain(off)+p+plain(9))
		}
		// Multi-byte UTF-8 before and around the special byte.
		for _, u := range []string{"é", "€", "😀", "\u00ff", "\u0100"} {
			bodies = append(bodies, strings.Repeat(u, off)+`"`, plain(off)+u+`\n`+u+`"`, u+plain(off)+"\x7f\x80\xa0\xdc\xe2\x1f")
		}
	}
	var cases [][]byte
	for _, b := range bodies {
		full := `"` + b + `"`
		for n := 1; n <= len(full); n++ { // unterminated at every length, and the whole
			cases = append(cases, []byte(full[:n]))
		}
		cases = append(cases, []byte(full+`,"next":"value long enough for a word"}`))
	}
	return cases
}

func TestStrMatchesReference(t *testing.T) {
	cases := strBoundaryCases()
	for _, c := range cases {
		for _, pre := range []string{"", " ", "1234567"} { // the string starts mid-data
			data := append([]byte(pre), c...)
			checkStr(t, data, len(pre))
		}
	}
	t.Logf("compared %d strings", 3*len(cases))
}

// TestStrErrors pins str's problems, whichever implementation produced them.
func TestStrErrors(t *testing.T) {
	tests := []struct {
		name, data string
		wantRaw    string
		wantEsc    bool
		wantPos    int
		wantErr    string
	}{
		{name: "empty", data: `""`, wantPos: 2},
		{name: "plain run of two words", data: `"0123456789abcdef",`, wantRaw: "0123456789abcdef", wantPos: 18},
		{name: "escape across a word", data: `"0123456\n89"`, wantRaw: `0123456\n89`, wantEsc: true, wantPos: 13},
		{name: "unterminated after a word", data: `"0123456789`, wantPos: 11, wantErr: "invalid JSON at byte 11: unterminated string"},
		{name: "backslash last", data: `"01234567\`, wantPos: 10, wantErr: "invalid JSON at byte 10: unterminated string"},
		{name: "control at byte 9", data: "\"01234567\x01\"", wantPos: 9, wantErr: `invalid JSON at byte 9: control character '\x01' in string; it must be escaped`},
		{name: "tab in second word", data: "\"0123456789\tb\"", wantPos: 11, wantErr: `invalid JSON at byte 11: control character '\t' in string; it must be escaped`},
		{name: "bad escape at a boundary", data: `"0123456\x"`, wantPos: 8, wantErr: `invalid JSON at byte 8: invalid escape "\\x" in string`},
		{name: "short \\u", data: `"01234567\u12"`, wantPos: 9, wantErr: `invalid JSON at byte 9: \u must be followed by four hex digits`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkStr(t, []byte(tt.data), 0)
			got := runStr([]byte(tt.data), 0, false)
			var gotErr string
			if len(got.Probs) > 0 {
				gotErr = got.Probs[0].Problem
			}
			if got.Raw != tt.wantRaw || got.Esc != tt.wantEsc || got.Pos != tt.wantPos || gotErr != tt.wantErr || got.OK != (tt.wantErr == "") {
				t.Fatalf("got raw %q esc %v pos %d ok %v err %q; want raw %q esc %v pos %d err %q",
					got.Raw, got.Esc, got.Pos, got.OK, gotErr, tt.wantRaw, tt.wantEsc, tt.wantPos, tt.wantErr)
			}
		})
	}
}

// TestSpecial checks the word test on its own: its lowest flag is exactly the
// first byte that strSpecial marks, for every pair of byte values at every
// position in words of a few backgrounds (plain ASCII and UTF-8 bytes).
func TestSpecial(t *testing.T) {
	for _, bg := range []byte{'a', ' ', '!', '#', '[', ']', 0x7f, 0x80, 0xa0, 0xdc, 0xff} {
		for at := range 8 {
			for c := range 256 {
				for tail := range 256 {
					var w [8]byte
					for i := range w {
						w[i] = bg
					}
					w[at] = byte(c)
					if at < 7 {
						w[at+1] = byte(tail)
					}
					want := 8
					for i, b := range w {
						if strSpecial[b] {
							want = i
							break
						}
					}
					got := 8
					if m := special(leUint64(w)); m != 0 {
						got = lowestFlag(m)
					}
					if got != want {
						t.Fatalf("special(% x): first special byte %d, want %d", w, got, want)
					}
				}
			}
		}
	}
}

func leUint64(b [8]byte) uint64 {
	var w uint64
	for i := 7; i >= 0; i-- {
		w = w<<8 | uint64(b[i])
	}
	return w
}

func lowestFlag(m uint64) int {
	for i := range 8 {
		if m>>(8*i)&0x80 != 0 {
			return i
		}
	}
	panic(fmt.Sprintf("no flag in %#x", m))
}

func FuzzScannerStr(f *testing.F) {
	for i, c := range strBoundaryCases() {
		if i%97 == 0 { // a sample: all of them would be a slow seed corpus
			f.Add(c, uint8(0))
		}
	}
	f.Add([]byte(`x"0123456789abcdef\u00e9\"`), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, pos uint8) {
		// str is only called at a '"'; what it reads is what follows.
		p := int(pos)
		if p >= len(data) {
			p = 0
			data = append([]byte{'"'}, data...)
		}
		checkStr(t, data, p)
	})
}

// BenchmarkScannerStr scans plain strings of the lengths a prediction's keys
// and values have (a 9-byte key, a 16-byte id, a timestamp, a sha256),
// followed by more payload as they are in a message.
func BenchmarkScannerStr(b *testing.B) {
	for _, n := range []int{2, 5, 9, 16, 20, 64} {
		data := []byte(`"` + strings.Repeat("a", n) + `","next":1}`)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				s := scanner{data: data}
				if _, _, ok := s.str(); !ok {
					b.Fatal("rejected")
				}
			}
		})
	}
}
