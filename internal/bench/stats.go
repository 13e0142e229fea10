package bench

import (
	"math"
	"slices"
	"time"
)

// Median returns the median of xs (0 when empty: JSON has no NaN).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Quantiles are latency quantiles in milliseconds.
type Quantiles struct {
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

// QuantilesOf returns the nearest-rank quantiles of ds.
func QuantilesOf(ds []time.Duration) Quantiles {
	if len(ds) == 0 {
		return Quantiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		i = min(max(i, 0), len(s)-1)
		return round3(float64(s[i]) / float64(time.Millisecond))
	}
	return Quantiles{P50: q(0.50), P95: q(0.95), P99: q(0.99), P999: q(0.999), Max: q(1)}
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
