package config

import (
	"testing"
	"time"
)

func TestReconnectDelay(t *testing.T) {
	tests := []struct {
		name  string
		wait  time.Duration
		round int
		want  time.Duration // before jitter (0 to +10%)
	}{
		{"first round", 2 * time.Second, 1, 100 * time.Millisecond},
		{"doubles", 2 * time.Second, 3, 400 * time.Millisecond},
		{"capped at reconnect_wait", 2 * time.Second, 6, 2 * time.Second},
		{"stays capped", 2 * time.Second, 1000, 2 * time.Second},
		{"reconnect_wait below the first delay", 50 * time.Millisecond, 1, 50 * time.Millisecond},
		{"zero reconnect_wait", 0, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := NATS{ReconnectWait: tt.wait}
			for range 50 {
				got := n.ReconnectDelay(tt.round)
				if got < tt.want || got > tt.want+tt.want/10+1 {
					t.Fatalf("ReconnectDelay(%d) with reconnect_wait %s = %s, want %s plus up to 10%%", tt.round, tt.wait, got, tt.want)
				}
			}
		})
	}
}
