package main

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/config"
	"github.com/cardiostream/cardiostream/schemas"
	"github.com/cardiostream/cardiostream/scorer"
)

// BenchmarkPipelineSync measures the throughput cost of fsync before
// acknowledgement (issue 3, promise 10): the embedded server as standalone
// starts it, with nats.embedded.sync_always true ("Always") or false
// ("Lazy", nats-server's 2-minute background fsync), file storage; a client
// publishes b.N records to RECORDS (PublishAsync, window 4096) while the real
// scorer with the embedded XGBoost model scores them into PREDICTIONS. One
// op is one record, from its publish to its prediction stored; records/s is
// reported for both modes in the same run:
//
//	go test -run '^$' -bench BenchmarkPipelineSync -benchtime 20000x ./cmd/cardiostream
func BenchmarkPipelineSync(b *testing.B) {
	for _, mode := range []struct {
		name   string
		always bool
	}{{"Always", true}, {"Lazy", false}} {
		b.Run(mode.name, func(b *testing.B) { syncBenchPipeline(b, mode.always) })
	}
}

func syncBenchPipeline(b *testing.B, syncAlways bool) {
	cfg, err := config.Load(config.LoadOptions{Env: config.Development, Environ: []string{}})
	if err != nil {
		b.Fatal(err)
	}
	cfg.NATS.Embedded.SyncAlways = syncAlways
	cfg.NATS.Embedded.Listen = "127.0.0.1:0"
	cfg.NATS.Embedded.DataDir = b.TempDir()
	log := slog.New(slog.DiscardHandler)

	ns, err := startEmbedded(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nc, js, err := connectAndSetup(ctx, cfg, ns.ClientURL(), "bench-scorer", log)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	m, err := loadModel(cfg)
	if err != nil {
		b.Fatal(err)
	}
	sc, err := scorer.New(cfg.Scorer, js, cfg.Streams.Subjects(), scorerModel{m}, nil, log)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("scorer Run: %v", err)
		}
	}()
	for sc.Ready() != nil {
		time.Sleep(10 * time.Millisecond)
	}

	// The publisher is an ordinary client on its own connection.
	pnc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer pnc.Close()
	pub, err := jetstream.New(pnc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(time.Minute))
	if err != nil {
		b.Fatal(err)
	}
	stream, err := js.Stream(ctx, schemas.StreamPredictions)
	if err != nil {
		b.Fatal(err)
	}
	subject := cfg.Streams.Subjects().Records("bench")
	payloads := make([][]byte, b.N)
	for i := range payloads {
		payloads[i] = appendLoadRecord(nil, "b", i)
	}

	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if _, err := pub.PublishAsync(subject, payloads[i], jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatalf("publishing record %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		info, err := stream.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if info.State.Msgs >= uint64(b.N) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d predictions after 10 minutes", info.State.Msgs, b.N)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
}

// appendLoadRecord appends record i of a generated load: id <prefix><i>,
// features varied so the model does real work.
func appendLoadRecord(buf []byte, prefix string, i int) []byte {
	return fmt.Appendf(buf, `{"id":"%s%d","features":{"age":%d,"sex":%d,"cp":%d,"trestbps":%d,"chol":%d,"fbs":0,"restecg":%d,"thalach":%d,"exang":%d,"oldpeak":%.1f,"slope":%d,"ca":%d,"thal":%d}}`,
		prefix, i, 30+i%50, i%2, 1+i%4, 110+i%60, 180+i%150, i%3, 100+i%90, (i/2)%2, float64(i%40)/10, 1+i%3, i%4, []int{3, 6, 7}[i%3])
}
