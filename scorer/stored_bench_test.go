package scorer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/schemas"
)

// BenchmarkLateRedeliveryScan measures the cost of the lookup that settles
// records redelivered after the duplicate window (stored.go): one scan of
// PREDICTIONS over 100,000 stored predictions of one source, looking for the
// ids of a batch of 500 records. One op is one scan; it reports the
// predictions read per second and the time one affected batch waits for its
// scan (RELIABILITY.md, Known limits).
//
//	go test ./scorer -run '^$' -bench LateRedeliveryScan -benchtime 5x
func BenchmarkLateRedeliveryScan(b *testing.B) {
	const stored, candidates = 100_000, 500
	e := newEnv(b)
	src := "cleveland"
	since := time.Now()
	payload := make([]byte, 330) // about a prediction's size
	for i := 0; i < stored; i++ {
		if e.js.PublishAsyncPending() >= 2000 {
			<-e.js.PublishAsyncComplete()
		}
		msg := &nats.Msg{Subject: e.subjects.Predictions(src), Data: payload, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s/r-%07d", src, i))
		if _, err := e.js.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish acks not complete after 1 min")
	}
	if n := e.streamCount(b, schemas.StreamPredictions); n != stored {
		b.Fatalf("PREDICTIONS holds %d, want %d", n, stored)
	}
	s := offlineScorer(b, fakeModel{})
	s.js = e.js
	want := map[string]bool{}
	for i := range candidates { // spread over the stream, as a crashed backlog's are
		want[fmt.Sprintf("%s/r-%07d", src, i*(stored/candidates))] = true
	}
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		found := map[string]string{}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err := s.scanStored(ctx, schemas.StreamPredictions, []string{e.subjects.Predictions(src)}, since, want, kindPrediction, found)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		if len(found) != candidates {
			b.Fatalf("found %d of %d", len(found), candidates)
		}
	}
	perScan := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(stored)/perScan.Seconds(), "predictions_read/s")
	b.ReportMetric(perScan.Seconds(), "s/scan")
}
