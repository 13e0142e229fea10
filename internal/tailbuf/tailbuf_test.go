package tailbuf

import (
	"fmt"
	"strings"
	"testing"
)

func TestBuffer(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{name: "under max", max: 10, writes: []string{"abc", "def"}, want: "abcdef"},
		{name: "exactly max", max: 6, writes: []string{"abc", "def"}, want: "abcdef"},
		{name: "over max across writes", max: 4, writes: []string{"abc", "def"}, want: "cdef"},
		{name: "one write over max", max: 3, writes: []string{"abcdefgh"}, want: "fgh"},
		{name: "nothing written", max: 3, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.max)
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := b.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBufferKeepsTheEndOfALongLog(t *testing.T) {
	b := New(64)
	for i := range 1000 {
		fmt.Fprintf(b, "line %d\n", i)
	}
	if got := b.String(); len(got) != 64 || !strings.HasSuffix(got, "line 999\n") {
		t.Errorf("kept %d bytes ending %q; want 64 ending with the last line", len(got), got[max(0, len(got)-10):])
	}
}
