package monitor

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// directWindow computes the window metrics straight from the definition:
// the last size samples of each kind, of which those younger than dur.
func directWindow(evs []event, size int, dur time.Duration, now time.Time) windowView {
	lastN := func(kinds ...string) []event {
		var out []event
		for _, e := range evs {
			if slices.Contains(kinds, e.Kind) {
				out = append(out, e)
			}
		}
		if len(out) > size {
			out = out[len(out)-size:]
		}
		var in []event
		for _, e := range out {
			if e.At.After(now.Add(-dur)) {
				in = append(in, e)
			}
		}
		return in
	}
	var v windowView
	var tp, fp, tn, fn int64
	for _, e := range lastN(kindJoin) {
		switch {
		case e.Actual == 1 && e.Predicted == 1:
			tp++
		case e.Actual == 0 && e.Predicted == 1:
			fp++
		case e.Actual == 0:
			tn++
		default:
			fn++
		}
	}
	v.Class = classify(tp, fp, tn, fn)
	var lat []float64
	for _, e := range lastN(kindPrediction) {
		lat = append(lat, e.LatencyMS)
	}
	slices.Sort(lat)
	v.LatencySamples = int64(len(lat))
	v.P50, v.P95, v.P99 = quantile(lat, 0.5), quantile(lat, 0.95), quantile(lat, 0.99)
	var dead int64
	errs := lastN(kindPrediction, kindDeadLetter)
	for _, e := range errs {
		if e.Kind == kindDeadLetter {
			dead++
		}
	}
	v.ErrorSamples = int64(len(errs))
	v.ErrorRate = ratio(dead, v.ErrorSamples)
	return v
}

func TestWindowMatchesDirectComputation(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		size     int
		dur      time.Duration
		events   int
		step     time.Duration // between events
		queryAt  time.Duration // after the last event
		wantJoin int64         // joins expected in the window (-1: don't check)
	}{
		{name: "count bound only", size: 50, dur: 24 * time.Hour, events: 1000, step: time.Second, wantJoin: 50},
		{name: "time bound only", size: 10000, dur: 100 * time.Second, events: 1000, step: time.Second, wantJoin: -1},
		{name: "both bounds", size: 40, dur: 60 * time.Second, events: 600, step: 2 * time.Second, wantJoin: -1},
		{name: "everything aged out", size: 100, dur: time.Minute, events: 300, step: time.Second, queryAt: time.Hour, wantJoin: 0},
		{name: "fewer samples than the window", size: 500, dur: time.Hour, events: 30, step: time.Second, wantJoin: -1},
		{name: "one sample", size: 1, dur: time.Hour, events: 20, step: time.Second, wantJoin: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tc.events)))
			cfg := DefaultConfig()
			cfg.WindowSize, cfg.WindowDuration = tc.size, tc.dur
			a := newAggregator(cfg)
			var evs []event
			at := base
			for range tc.events {
				at = at.Add(tc.step)
				var ev event
				switch rng.IntN(4) {
				case 0:
					ev = event{Kind: kindPrediction, LatencyMS: math.Round(rng.ExpFloat64()*1000) / 10}
				case 1:
					ev = event{Kind: kindDeadLetter, Stage: schemas.StageValidate}
				case 2:
					ev = event{Kind: kindOutcome}
				default:
					ev = event{Kind: kindJoin, Actual: rng.IntN(2), Predicted: rng.IntN(2)}
				}
				ev.At = at
				evs = append(evs, ev)
				a.apply(ev)
			}
			now := at.Add(tc.queryAt)
			got, want := a.window(now), directWindow(evs, tc.size, tc.dur, now)
			if got != want {
				t.Fatalf("window\n got %+v\nwant %+v", got, want)
			}
			if tc.wantJoin >= 0 && got.Class.Samples != tc.wantJoin {
				t.Fatalf("%d joins in the window, want %d", got.Class.Samples, tc.wantJoin)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		q      float64
		want   float64
	}{
		{name: "empty", q: 0.5, want: 0},
		{name: "one", values: []float64{7}, q: 0.99, want: 7},
		{name: "median of 4 (nearest rank)", values: []float64{1, 2, 3, 4}, q: 0.5, want: 2},
		{name: "p95 of 1..100", values: seq(100), q: 0.95, want: 95},
		{name: "p99 of 1..100", values: seq(100), q: 0.99, want: 99},
		{name: "p99 of 1..10", values: seq(10), q: 0.99, want: 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := quantile(tc.values, tc.q); got != tc.want {
				t.Fatalf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func seq(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(i + 1)
	}
	return out
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name           string
		tp, fp, tn, fn int64
		want           Classification
	}{
		{name: "empty", want: Classification{}},
		{name: "perfect", tp: 3, tn: 2, want: Classification{Samples: 5, TP: 3, TN: 2, Accuracy: 1, Precision: 1, Recall: 1, F1: 1}},
		{name: "mixed", tp: 6, fp: 2, tn: 8, fn: 4, want: Classification{Samples: 20, TP: 6, FP: 2, TN: 8, FN: 4,
			Accuracy: 0.7, Precision: 0.75, Recall: 0.6, F1: 12.0 / 18.0}},
		{name: "no positive predictions", tn: 5, fn: 5, want: Classification{Samples: 10, TN: 5, FN: 5, Accuracy: 0.5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.tp, tc.fp, tc.tn, tc.fn); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPendingCountsAndExpiry(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LabelDeadline = time.Hour
	a := newAggregator(cfg)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.apply(event{Kind: kindPrediction, At: t0, Pending: true})
	a.apply(event{Kind: kindPrediction, At: t0.Add(30 * time.Minute), Pending: true})
	a.apply(event{Kind: kindOutcome, At: t0.Add(40 * time.Minute), Pending: true})
	a.apply(event{Kind: kindJoin, At: t0.Add(40 * time.Minute), PredictionAt: t0.Add(30 * time.Minute), OutcomeAt: t0.Add(40 * time.Minute)})
	tests := []struct {
		at   time.Duration
		want int64
	}{{at: 45 * time.Minute, want: 1}, {at: 61 * time.Minute, want: 0}}
	for _, tc := range tests {
		if got := a.pending(sidePrediction, t0.Add(tc.at)); got != tc.want {
			t.Errorf("pending predictions at +%s = %d, want %d", tc.at, got, tc.want)
		}
	}
	if got := a.pending(sideOutcome, t0.Add(45*time.Minute)); got != 0 {
		t.Errorf("pending outcomes = %d, want 0", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr []string // substrings, one per expected problem
	}{
		{name: "defaults", mutate: func(*Config) {}},
		{name: "window size", mutate: func(c *Config) { c.WindowSize = 0 }, wantErr: []string{"monitor.window_size: 0 is outside 1..10000"}},
		{name: "durations", mutate: func(c *Config) { c.WindowDuration = 0; c.LabelDeadline = 0 },
			wantErr: []string{"monitor.window_duration", "monitor.label_deadline"}},
		{name: "ack pending too small", mutate: func(c *Config) { c.Consumer.MaxAckPending = 10 }, wantErr: []string{"monitor.consumer.max_ack_pending"}},
		{name: "bucket", mutate: func(c *Config) { c.StateBucket = "a.b" }, wantErr: []string{"monitor.state_bucket"}},
		{name: "joined ttl", mutate: func(c *Config) { c.JoinedTTL = time.Hour },
			wantErr: []string{"monitor.joined_ttl: 1h0m0s must be at least monitor.label_deadline"}},
		{name: "reader batch", mutate: func(c *Config) { c.Consumer.BatchSize = 0 }, wantErr: []string{"monitor.consumer.batch_size"}},
		{name: "bad rule", mutate: func(c *Config) {
			c.Rules = []Rule{{Name: "a b", Metric: "auc", Comparator: "<=", Threshold: math.NaN(), MinSamples: -1, For: -1}}
		}, wantErr: []string{"monitor.rules[0].name", "monitor.rules[0].metric", "monitor.rules[0].comparator",
			"monitor.rules[0].threshold", "monitor.rules[0].min_samples", "monitor.rules[0].for"}},
		{name: "recover on the wrong side", mutate: func(c *Config) {
			c.Rules = []Rule{{Name: "a", Metric: MetricAccuracy, Comparator: "<", Threshold: 0.8, RecoverThreshold: ptr(0.7)}}
		}, wantErr: []string{"monitor.rules[0].recover_threshold: 0.7 must be >= threshold 0.8"}},
		{name: "duplicate rule names", mutate: func(c *Config) { c.Rules = append(c.Rules, c.Rules[0]) }, wantErr: []string{"monitor.rules[3].name: \"accuracy\" is used"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.wantErr) {
				t.Errorf("%d problems, want %d:\n%v", len(lines), len(tc.wantErr), err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
