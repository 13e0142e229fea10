package schemas

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"short", "abc", 5, "abc"},
		{"exact", "abcde", 5, "abcde"},
		{"cut", "abcdef", 5, "abcde…"},
		{"cut before a rune", "abcdé", 5, "abcd…"},
		{"invalid UTF-8 replaced", "a\xffb", 5, "a\uFFFDb"},
		{"an invalid run is one replacement", "\xff\xff\xffabc", 4, "\uFFFDa…"},
		{"zero", "abc", 0, "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Clip(tt.in, tt.n)
			if got != tt.want {
				t.Errorf("Clip(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
			if !utf8.ValidString(got) || len(got) > tt.n+len("…") {
				t.Errorf("Clip(%q, %d) = %q: invalid UTF-8 or longer than %d", tt.in, tt.n, got, tt.n+len("…"))
			}
		})
	}
	if got := Quote(strings.Repeat("x", 1000)); len(got) != maxQuoted+len(`""…`) {
		t.Errorf("Quote of 1000 bytes is %d bytes: %s", len(got), got)
	}
}
