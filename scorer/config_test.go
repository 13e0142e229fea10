package scorer

import (
	"strings"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(*Config)
		wantErr []string // substrings, one per expected problem line
	}{
		{name: "defaults", mutate: func(*Config) {}},
		{name: "test config", mutate: func(c *Config) { *c = testConfig() }},
		{name: "bad consumer", mutate: func(c *Config) { c.Consumer = "a.b" }, wantErr: []string{"scorer.consumer"}},
		{name: "empty consumer", mutate: func(c *Config) { c.Consumer = "" }, wantErr: []string{"scorer.consumer"}},
		{name: "batch zero", mutate: func(c *Config) { c.BatchSize = 0 }, wantErr: []string{"scorer.batch_size: 0 is out of range [1, 10000]"}},
		{name: "max ack pending too low", mutate: func(c *Config) { c.MaxAckPending = 1000 },
			wantErr: []string{"scorer.max_ack_pending: 1000 is out of range [4 × batch_size = 2000"}},
		{name: "ack wait", mutate: func(c *Config) { c.AckWait = 0 }, wantErr: []string{"scorer.ack_wait", "scorer.nak_delay"}},
		{name: "max deliver", mutate: func(c *Config) { c.MaxDeliver = 0 }, wantErr: []string{"scorer.max_deliver: 0 is out of range [1, 100]"}},
		{name: "nak delay above ack wait", mutate: func(c *Config) { c.NakDelay = time.Minute }, wantErr: []string{"scorer.nak_delay"}},
		{name: "pull expiry", mutate: func(c *Config) { c.PullExpiry = time.Second }, wantErr: []string{"scorer.pull_expiry"}},
		{name: "publish timeout above half ack wait", mutate: func(c *Config) { c.PublishTimeout = 20 * time.Second }, wantErr: []string{"scorer.publish_timeout"}},
		{name: "shutdown timeout", mutate: func(c *Config) { c.ShutdownTimeout = 0 }, wantErr: []string{"scorer.shutdown_timeout"}},
		{name: "workers", mutate: func(c *Config) { c.Workers = 0 }, wantErr: []string{"scorer.workers: 0 is out of range [1, 64]"}},
		{name: "gc percent runtime default", mutate: func(c *Config) { c.GCPercent = 0 }},
		{name: "gc percent too low", mutate: func(c *Config) { c.GCPercent = 10 },
			wantErr: []string{"scorer.gc_percent: 10 is out of range [25, 10000] (or 0: the Go runtime's own setting)"}},
		{name: "gc percent off", mutate: func(c *Config) { c.GCPercent = -1 }, wantErr: []string{"scorer.gc_percent: -1 is out of range"}},
		{name: "gc percent too high", mutate: func(c *Config) { c.GCPercent = 20_000 }, wantErr: []string{"scorer.gc_percent: 20000 is out of range"}},
		{name: "no memory limit", mutate: func(c *Config) { c.GCMemoryLimitMB = 0 }},
		{name: "memory limit too low", mutate: func(c *Config) { c.GCMemoryLimitMB = 8 },
			wantErr: []string{"scorer.gc_memory_limit_mb: 8 is out of range [32, 1048576] (or 0: no limit)"}},
		{name: "several problems", mutate: func(c *Config) { c.Workers = 100; c.MaxDeliver = 1000 },
			wantErr: []string{"scorer.workers", "scorer.max_deliver"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %v", tc.wantErr)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.wantErr) {
				t.Errorf("%d problems, want %d:\n%v", len(lines), len(tc.wantErr), err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestNewRejectsBadArguments(t *testing.T) {
	e := newEnv(t)
	bad := DefaultConfig()
	bad.Workers = 0
	if _, err := New(bad, e.js, e.subjects, fakeModel{}, nil, nil); err == nil || !strings.Contains(err.Error(), "scorer.workers") {
		t.Errorf("bad config: %v", err)
	}
	if _, err := New(DefaultConfig(), e.js, e.subjects, nil, nil, nil); err == nil {
		t.Error("nil model accepted")
	}
	if _, err := New(DefaultConfig(), e.js, e.subjects, thresholdModel{2}, nil, nil); err == nil {
		t.Error("threshold 2 accepted")
	}
}

type thresholdModel struct{ t float64 }

func (thresholdModel) Predict(*[13]float64) float64 { return 0.5 }
func (thresholdModel) Ref() schemas.ModelRef        { return schemas.ModelRef{} }
func (m thresholdModel) Threshold() float64         { return m.t }

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	s := &Scorer{cfg: DefaultConfig()}
	s.cfg.NakDelay = 100 * time.Millisecond
	s.cfg.AckWait = time.Second
	for _, tc := range []struct {
		deliveries uint64
		want       time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {3, 400 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}, {50, time.Second}} {
		got := s.backoff(tc.deliveries)
		if lo, hi := tc.want*9/10, tc.want*11/10; got < lo || got > hi {
			t.Errorf("backoff(%d) = %s, want %s ±10%%", tc.deliveries, got, tc.want)
		}
	}
}
