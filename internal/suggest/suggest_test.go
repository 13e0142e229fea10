package suggest

import (
	"strings"
	"testing"
)

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"chol", "chol", 0},
		{"cholesterol", "chol", 7},
		{"chole", "chol", 1},
		{"thalac", "thalach", 1},
		{"sex", "age", 3},
		{"batch_sise", "batch_size", 1},
		{"", "abc", 3},
		{strings.Repeat("x", 65), "x", 1 << 30},
	}
	for _, tt := range tests {
		if got := Distance(tt.a, tt.b); got != tt.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if tt.want < 1<<30 {
			if got := Distance(tt.b, tt.a); got != tt.want {
				t.Errorf("Distance(%q, %q) = %d, want %d (symmetric)", tt.b, tt.a, got, tt.want)
			}
		}
	}
}
