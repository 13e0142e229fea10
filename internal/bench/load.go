package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LatencyResult is one offered-rate run.
type LatencyResult struct {
	OfferedPerS  float64   `json:"offered_per_s"`
	AchievedPerS float64   `json:"achieved_per_s"` // records published per second
	Sent         int       `json:"sent"`
	Received     int       `json:"received"`
	Quantiles    Quantiles `json:"latency"`
}

// Offer publishes records (ids prefix+k) to subject at rate per second for
// d, and measures for each the time from just before its publish to the
// delivery of its output on outSubject (a core subscription: the output is
// delivered as it is stored). It waits up to drain for the last outputs.
func Offer(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, subject, outSubject, prefix string, rate float64, d, drain time.Duration) (LatencyResult, error) {
	n := max(int(rate*d.Seconds()), 1)
	sentAt := make([]time.Time, n)
	lat := make([]time.Duration, n)
	got := make([]bool, n)
	var mu sync.Mutex
	received := 0
	done := make(chan struct{})
	sub, err := nc.Subscribe(outSubject, func(m *nats.Msg) {
		now := time.Now()
		k, ok := RecordIndex(m.Data, prefix)
		mu.Lock()
		defer mu.Unlock()
		if !ok || k < 0 || k >= n || got[k] || sentAt[k].IsZero() {
			return
		}
		got[k] = true
		lat[k] = now.Sub(sentAt[k])
		received++
		if received == n {
			close(done)
		}
	})
	if err != nil {
		return LatencyResult{}, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		return LatencyResult{}, err
	}

	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	sent := 0
	for sent < n {
		select {
		case <-ctx.Done():
			return LatencyResult{}, ctx.Err()
		case <-tick.C:
		}
		due := min(int(time.Since(start).Seconds()*rate)+1, n)
		for ; sent < due; sent++ {
			data := Record(prefix, sent)
			mu.Lock()
			sentAt[sent] = time.Now()
			mu.Unlock()
			if err := PublishWindowed(ctx, js, subject, data); err != nil {
				return LatencyResult{}, fmt.Errorf("publishing record %d: %w", sent, err)
			}
		}
	}
	elapsed := time.Since(start)
	select {
	case <-done:
	case <-time.After(drain):
	case <-ctx.Done():
		return LatencyResult{}, ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	ds := make([]time.Duration, 0, received)
	for k := range n {
		if got[k] {
			ds = append(ds, lat[k])
		}
	}
	return LatencyResult{OfferedPerS: rate, AchievedPerS: float64(n) / elapsed.Seconds(), Sent: n, Received: received, Quantiles: QuantilesOf(ds)}, nil
}

// publishWindow bounds the async publishes in flight from the generator.
const publishWindow = 2048

// PublishWindowed publishes data asynchronously, first waiting for
// outstanding publish acks when publishWindow of them are in flight.
func PublishWindowed(ctx context.Context, js jetstream.JetStream, subject string, data []byte) error {
	if js.PublishAsyncPending() >= publishWindow {
		if err := WaitPublished(ctx, js, time.Minute); err != nil {
			return err
		}
	}
	_, err := js.PublishAsync(subject, data)
	return err
}

// WaitPublished waits until every async publish of js is acknowledged.
func WaitPublished(ctx context.Context, js jetstream.JetStream, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("publish acks did not arrive within %s", timeout)
	}
}
