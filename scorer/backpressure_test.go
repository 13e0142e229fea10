package scorer

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

// updatePredictions changes the PREDICTIONS stream's configuration.
func (e *env) updatePredictions(tb testing.TB, change func(*jetstream.StreamConfig)) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, schemas.StreamPredictions)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	change(&cfg)
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		tb.Fatalf("updating PREDICTIONS: %v", err)
	}
}

// deliveries is the number of deliveries the scorer consumer has made,
// redeliveries included.
func (e *env) deliveries(tb testing.TB) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, schemas.StreamRecords, streams.ConsumerScorer)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return info.Delivered.Consumer
}

// TestFullPredictionsStreamIsBackPressure: while PREDICTIONS is full
// (discard policy new: publishes are refused with "maximum messages
// exceeded" or "maximum bytes exceeded") records are retried past
// max_deliver and never dead-lettered; once the stream has room again every
// record ends as exactly one prediction. A prediction the stream rejects for
// what it is (larger than its max_msg_size) is still dead-lettered on the
// last delivery. Regression: a full stream used to dead-letter every record
// whose last allowed delivery fell within the pressure.
func TestFullPredictionsStreamIsBackPressure(t *testing.T) {
	const n, room = 60, 10
	cases := []struct {
		name     string
		pressure func(*jetstream.StreamConfig)
		lift     func(*jetstream.StreamConfig)
		wantDL   int    // dead letters in the end
		reason   string // of each dead letter
	}{
		{
			name:     "max messages",
			pressure: func(c *jetstream.StreamConfig) { c.MaxMsgs = room },
			lift:     func(c *jetstream.StreamConfig) { c.MaxMsgs = -1 },
		},
		{
			name: "max bytes",
			// Predictions are ~400 bytes stored: room for about ten.
			pressure: func(c *jetstream.StreamConfig) { c.MaxBytes = room * 450 },
			lift:     func(c *jetstream.StreamConfig) { c.MaxBytes = -1 },
		},
		{
			name:     "message too large is the record's problem",
			pressure: func(c *jetstream.StreamConfig) { c.MaxMsgSize = 100 },
			wantDL:   n,
			reason:   "message size exceeds maximum allowed",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := testConfig()
			cfg.MaxDeliver = 2
			e.updatePredictions(t, tc.pressure)
			e.publishRecords(t, "bp", "r", n)
			r := e.start(t, cfg, fakeModel{})

			if tc.lift != nil {
				// Pressure well past max_deliver: every refused record is
				// delivered at least max_deliver + 2 times.
				want := uint64(n + (n-room)*(cfg.MaxDeliver+1))
				natstest.Eventually(t, 60*time.Second, func() error {
					if e.streamCount(t, schemas.StreamDeadLetter) > 0 {
						return nil // fails below
					}
					if d := e.deliveries(t); d < want {
						return fmt.Errorf("%d deliveries, want %d", d, want)
					}
					return nil
				})
				if dl := e.streamCount(t, schemas.StreamDeadLetter); dl != 0 {
					t.Fatalf("%d records dead-lettered while PREDICTIONS was full; a full stream is back-pressure", dl)
				}
				if got := e.streamCount(t, schemas.StreamPredictions); got > room {
					t.Fatalf("%d predictions stored in a stream with room for %d", got, room)
				}
				e.updatePredictions(t, tc.lift)
			}
			natstest.Eventually(t, 60*time.Second, func() error {
				if got := e.streamCount(t, schemas.StreamPredictions) + e.streamCount(t, schemas.StreamDeadLetter); got != n {
					return fmt.Errorf("%d predictions + dead letters of %d records", got, n)
				}
				return nil
			})
			e.settled(t, 30*time.Second)

			ps := uniqueIDs(t, e.predictions(t))
			dls := e.deadLetters(t)
			if len(ps) != n-tc.wantDL || len(dls) != tc.wantDL {
				t.Fatalf("%d predictions and %d dead letters, want %d and %d", len(ps), len(dls), n-tc.wantDL, tc.wantDL)
			}
			for _, d := range dls {
				if d.Stage != schemas.StageScore || d.Deliveries != uint64(cfg.MaxDeliver) ||
					len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0].Problem, tc.reason) {
					t.Errorf("dead letter of %s: stage %s, deliveries %d, reasons %+v", d.RecordID, d.Stage, d.Deliveries, d.Reasons)
				}
			}
			if tc.lift != nil {
				late := 0
				for _, p := range ps {
					if p.Deliveries > uint64(cfg.MaxDeliver) {
						late++
					}
				}
				if late < n-room {
					t.Errorf("%d predictions made past max_deliver, want at least %d: the pressure did not outlast max_deliver", late, n-room)
				}
				if bp := testutil.ToFloat64(r.s.m.backPressure); bp < float64(n-room) {
					t.Errorf("publish_backpressure_total = %v, want at least %d", bp, n-room)
				}
			} else if bp := testutil.ToFloat64(r.s.m.backPressure); bp != 0 {
				t.Errorf("publish_backpressure_total = %v for a rejected message, want 0", bp)
			}
		})
	}
}

func TestPublishErrorClasses(t *testing.T) {
	cases := []struct {
		name          string
		err           error
		rejects, full bool
	}{
		{"stream full", &jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages exceeded"}, false, true},
		{"insufficient resources", &jetstream.APIError{Code: 503, ErrorCode: 10023, Description: "insufficient resources"}, false, true},
		{"too large", &jetstream.APIError{Code: 400, ErrorCode: 10054, Description: "message size exceeds maximum allowed"}, true, false},
		{"no stream", jetstream.ErrNoStreamResponse, false, true},
		{"wrapped", fmt.Errorf("publishing: %w", &jetstream.APIError{Code: 503, ErrorCode: 10077}), false, true},
		{"timeout: may be stored", jetstream.ErrAsyncPublishTimeout, false, false},
		{"connection closed", jetstream.ErrConnectionClosed, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := publishRejectsMessage(tc.err); got != tc.rejects {
				t.Errorf("publishRejectsMessage = %v, want %v", got, tc.rejects)
			}
			if got := backPressure(tc.err); got != tc.full {
				t.Errorf("backPressure = %v, want %v", got, tc.full)
			}
		})
	}
}
