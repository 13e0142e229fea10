package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/cardiostream/cardiostream/config"
	"github.com/cardiostream/cardiostream/internal/bench"
	"github.com/cardiostream/cardiostream/internal/model"
	"github.com/cardiostream/cardiostream/internal/natsserver"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/internal/tailbuf"
	"github.com/cardiostream/cardiostream/schemas"
)

// benchOptions are bench's flags.
type benchOptions struct {
	records     int
	reps        int
	latDuration time.Duration
	monDuration time.Duration
	monPairs    int
	sync        string
	jsonOut     bool
	pipeOnly    bool
	monOnly     bool
	latOnly     bool
}

// Record id prefixes: throughput trials, latency runs, monitor pairs.
const (
	benchSource    = "bench"
	relaySource    = "relay"
	relayConsumer  = "bench-relay"
	prefixTrial    = "r-"
	prefixLatency  = "lat-"
	prefixMonitor  = "m-"
	benchWarmupRec = 200
)

func (c *cli) benchCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench [--records N] [--json]",
		Short: "Measure the scorer against a bare JetStream relay on an embedded server",
		Long: `bench starts an embedded nats-server (temporary directory, loopback TCP, file
storage, the configured stream settings) and measures, in one run:

  baseline  a bare relay (pull-consume a record, publish an output of a prediction's
            size with a message id, ack after the publish ack; no decoding, no model),
            run as a child process with the scorer's consumer settings;
  pipeline  the real scorer (` + "`cardiostream scorer`" + ` as a child process, real model)
            with 1 and 2 workers on the same records;
  ratio     pipeline (1 worker) ÷ baseline per repetition, alternating the runs; the
            median over --reps repetitions is reported;
  latency   record publish → output delivered, p50/p95/p99/p99.9 at 1,000/s, 5,000/s
            and 80% of the measured maximum, baseline and pipeline alternated at each
            rate (--latency-only: just 1,000/s and 5,000/s, --reps rounds);
  model     decode+validate, predict (single and batched) and encode cost per record;
  monitor   joins per second (` + "`cardiostream monitor`" + ` child) over a backlog of
            predictions and their outcomes: --reps monitors in turn, each from no
            checkpoint, and the median;
  memory    peak RSS of each child process (getrusage maxrss).

Progress goes to stderr; stdout gets a table, or one JSON object with --json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.records < 100 || o.reps < 1 || o.latDuration < 500*time.Millisecond || o.monDuration < time.Second || o.monPairs < 1 {
				return usageError{errors.New("--records must be >= 100, --reps >= 1, --latency-duration >= 500ms, --monitor-duration >= 1s, --monitor-pairs >= 1")}
			}
			if (o.pipeOnly && o.latOnly) || (o.pipeOnly && o.monOnly) || (o.latOnly && o.monOnly) {
				return usageError{errors.New("--pipeline-only, --latency-only and --monitor-only exclude each other")}
			}
			if o.sync != "" && o.sync != "always" && o.sync != "lazy" {
				return usageError{fmt.Errorf("--sync %q: want always or lazy", o.sync)}
			}
			cfg, err := c.loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("invalid configuration (see `cardiostream config validate`):\n%w", err)
			}
			return c.runBench(cmd.Context(), cfg, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.records, "records", 50_000, "records per throughput run (also the backlog whose peak RSS is reported)")
	f.IntVar(&o.reps, "reps", 3, "repetitions of the alternated baseline / pipeline runs, and of the monitor runs")
	f.DurationVar(&o.latDuration, "latency-duration", 4*time.Second, "duration of each offered-rate latency run")
	f.DurationVar(&o.monDuration, "monitor-duration", 15*time.Second, "longest time the monitor run may take")
	f.IntVar(&o.monPairs, "monitor-pairs", 100_000, "prediction/outcome pairs for the monitor run (its rate excludes start-up, so larger is steadier)")
	f.StringVar(&o.sync, "sync", "", "JetStream fsync: always (before every ack) or lazy (default: the environment's nats.embedded.sync_always)")
	f.BoolVar(&o.jsonOut, "json", false, "print one JSON object instead of the table")
	f.BoolVar(&o.monOnly, "monitor-only", false, "run only the monitor joins phase (e.g. to compare monitor builds)")
	f.BoolVar(&o.pipeOnly, "pipeline-only", false, "run only the 1-worker pipeline throughput runs (e.g. the scorer's peak RSS with --records 1000000 backlogged)")
	f.BoolVar(&o.latOnly, "latency-only", false, "run only the latency runs at 1,000/s and 5,000/s, baseline and pipeline alternated, --reps times")
	cmd.AddCommand(c.benchRelayCmd())
	return cmd
}

// benchRelayCmd is the baseline's child process (hidden: bench runs it).
func (c *cli) benchRelayCmd() *cobra.Command {
	var outSize int
	cmd := &cobra.Command{
		Use:    "relay --nats-url URL",
		Short:  "The bare JetStream relay bench compares the scorer with",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.loadConfig(cmd, map[string]string{"nats-url": "nats.url"})
			if err != nil {
				return err
			}
			log := c.newLogger(cfg)
			// The ceiling runs with the scorer's runtime settings too
			// (scorer.gc_percent, scorer.gc_memory_limit_mb): a relay
			// collecting garbage more often than the scorer would not be
			// the broker's ceiling.
			c.applyGC("scorer", cfg.Scorer.GCPercent, cfg.Scorer.GCMemoryLimitMB, log)
			nc, err := connectNATS(cmd.Context(), cfg, clientURL(cfg), "cardiostream-bench-relay", log)
			if err != nil {
				return err
			}
			defer drainConn(nc, 10*time.Second, log)
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			sc, subjects := cfg.Scorer, cfg.Streams.Subjects()
			_, err = bench.Relay(cmd.Context(), js, bench.RelayConfig{
				Stream: schemas.StreamRecords, Consumer: relayConsumer, FilterSubject: subjects.AllRecords(),
				OutSubject: subjects.Predictions(relaySource), OutSize: outSize,
				BatchSize: sc.BatchSize, MaxAckPending: sc.MaxAckPending, AckWait: sc.AckWait,
				PullExpiry: sc.PullExpiry, PubTimeout: sc.PublishTimeout,
			})
			if cmd.Context().Err() != nil {
				return nil // SIGTERM, even during set-up: a clean stop
			}
			return err
		},
	}
	cmd.Flags().String("nats-url", "", "NATS server URL")
	cmd.Flags().IntVar(&outSize, "out-size", 384, "output payload size in bytes")
	return cmd
}

// benchReport is bench's JSON output. Rates are records per second, times
// milliseconds unless named otherwise.
type benchReport struct {
	Records    int    `json:"records"`
	Reps       int    `json:"reps"`
	Sync       string `json:"sync"`
	GoVersion  string `json:"go_version"`
	CPUs       int    `json:"cpus"`
	OutputSize int    `json:"output_bytes"`
	RecordSize int    `json:"record_bytes"`

	BaselinePerS   float64   `json:"baseline_per_s"`
	PipelinePerS   float64   `json:"pipeline_per_s"`
	PipelineW2PerS float64   `json:"pipeline_2_workers_per_s"`
	Ratio          float64   `json:"ratio"`
	RatioW2        float64   `json:"ratio_2_workers"`
	BaselineRuns   []float64 `json:"baseline_runs_per_s"`
	PipelineRuns   []float64 `json:"pipeline_runs_per_s"`
	PipelineW2Runs []float64 `json:"pipeline_2_workers_runs_per_s"`
	Ratios         []float64 `json:"ratios"`

	// Every pipeline run stored exactly one prediction per record (counted
	// in PREDICTIONS, nothing dead-lettered, nothing left unacked), and the
	// first run of each worker count was read back record by record.
	ExactlyOnceChecked bool `json:"exactly_once_checked"`
	ScoredPerRun       int  `json:"scored_per_run"`

	BaselineCPUUSPerRecord float64 `json:"baseline_cpu_us_per_record"`
	ScorerCPUUSPerRecord   float64 `json:"scorer_cpu_us_per_record"`

	BaselineLatency    []bench.LatencyResult `json:"baseline_latency"`
	PipelineLatency    []bench.LatencyResult `json:"pipeline_latency"`
	BaselineP99At5k    float64               `json:"baseline_p99_ms_at_5k"`
	PipelineP99At5k    float64               `json:"pipeline_p99_ms_at_5k"`
	PipelineP50At5k    float64               `json:"pipeline_p50_ms_at_5k"`
	LatencyP99RatioAt5 float64               `json:"p99_ratio_at_5k"`

	Model modelCost `json:"model"`

	MonitorPairs     int     `json:"monitor_pairs"`
	MonitorJoins     int     `json:"monitor_joins"`
	MonitorJoinsPerS float64 `json:"monitor_joins_per_s"` // the median of MonitorRuns
	// MonitorRuns is each run's joins/s: --reps monitors in turn over the
	// same backlog, each from no checkpoint.
	MonitorRuns []float64 `json:"monitor_runs_joins_per_s"`
	// MonitorCPUUSPerJoin is the monitor child's CPU time (user + system,
	// start-up and final checkpoint included) per join: less sensitive to
	// the machine's load than joins/s.
	MonitorCPUUSPerJoin float64 `json:"monitor_cpu_us_per_join"`
	// MonitorServerCPUUSPerJoin is this process's CPU time (the embedded
	// server serving the monitor's reads, and the bench polling its
	// /metrics) from the monitor's start to its stop, per join.
	MonitorServerCPUUSPerJoin float64 `json:"monitor_server_cpu_us_per_join"`

	PeakRSSMB        float64 `json:"peak_rss_mb"` // the scorer child's
	RelayPeakRSSMB   float64 `json:"relay_peak_rss_mb"`
	MonitorPeakRSSMB float64 `json:"monitor_peak_rss_mb"`
	BenchPeakRSSMB   float64 `json:"bench_process_peak_rss_mb"` // embedded server + load generator

	DurationSeconds float64 `json:"duration_seconds"`
}

// modelCost is the in-process cost per record of each hot-path step.
type modelCost struct {
	DecodeNS          float64 `json:"decode_validate_ns"`
	DecodeAllocs      float64 `json:"decode_validate_allocs"`
	PredictNS         float64 `json:"predict_ns"`
	PredictAllocs     float64 `json:"predict_allocs"`
	PredictBatchNS    float64 `json:"predict_batch_ns"`
	PredictBatchAlloc float64 `json:"predict_batch_allocs"`
	EncodeNS          float64 `json:"encode_ns"`
	EncodeAllocs      float64 `json:"encode_allocs"`
}

// benchRun is one bench invocation's state.
type benchRun struct {
	c       *cli
	cfg     *config.Config
	o       benchOptions
	log     *slog.Logger
	url     string
	nc      *nats.Conn
	js      jetstream.JetStream
	exe     string
	outSize int
	start   time.Time
}

func (c *cli) runBench(ctx context.Context, cfg *config.Config, o benchOptions) error {
	if o.sync == "" {
		o.sync = "lazy"
		if cfg.NATS.Embedded.SyncAlways {
			o.sync = "always"
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this program to run its scorer: %w", err)
	}
	dir, err := os.MkdirTemp("", "cardiostream-bench-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ns, err := natsserver.StartWithOptions(&server.Options{
		ServerName: "cardiostream-bench", Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: dir, SyncAlways: o.sync == "always", NoSigs: true, NoLog: true,
	}, 30*time.Second, nil)
	if err != nil {
		return err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	nc, err := nats.Connect(ns.ClientURL(), nats.Name("cardiostream-bench"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return err
	}
	b := &benchRun{c: c, cfg: cfg, o: o, url: ns.ClientURL(), nc: nc, js: js, exe: exe, start: time.Now(),
		log: slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	rep, err := b.run(ctx)
	if err != nil {
		return err
	}
	if o.jsonOut {
		enc := json.NewEncoder(c.stdout)
		return enc.Encode(rep)
	}
	printBenchTable(c.stdout, rep)
	return nil
}

func (b *benchRun) progress(format string, args ...any) {
	fmt.Fprintf(b.c.stderr, "bench [%5.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

func (b *benchRun) run(ctx context.Context) (*benchReport, error) {
	rep := &benchReport{Records: b.o.records, Reps: b.o.reps, Sync: b.o.sync, GoVersion: runtime.Version(),
		CPUs: runtime.NumCPU(), RecordSize: len(bench.Record(prefixTrial, 0))}

	if b.o.monOnly {
		if err := b.monitorPhase(ctx, rep); err != nil {
			return nil, err
		}
		rep.BenchPeakRSSMB = selfPeakRSSMB()
		rep.DurationSeconds = round1(time.Since(b.start).Seconds())
		return rep, nil
	}

	if b.o.latOnly {
		return b.latencyOnly(ctx, rep)
	}
	b.progress("model: decode, predict and encode cost per record")
	mc, outSize, err := b.modelCost()
	if err != nil {
		return nil, err
	}
	rep.Model, rep.OutputSize, b.outSize = mc, outSize, outSize

	// Throughput: alternate the three kinds of run, rotating their order.
	type kind struct {
		name    string
		workers int // 0: the relay
		runs    *[]float64
	}
	kinds := []kind{{"baseline", 0, &rep.BaselineRuns}, {"pipeline 1 worker", 1, &rep.PipelineRuns}, {"pipeline 2 workers", 2, &rep.PipelineW2Runs}}
	if b.o.pipeOnly {
		kinds = kinds[1:2]
	}
	var scorerCPU, relayCPU []float64
	rep.ExactlyOnceChecked = true
	for r := range b.o.reps {
		perRep := map[int]float64{}
		for i := range kinds {
			k := kinds[(i+r)%len(kinds)]
			t, err := b.throughput(ctx, k.workers, r == 0)
			if err != nil {
				return nil, fmt.Errorf("%s run %d: %w", k.name, r+1, err)
			}
			*k.runs = append(*k.runs, t.perS)
			perRep[k.workers] = t.perS
			if k.workers == 0 {
				relayCPU = append(relayCPU, t.cpuUS)
				rep.RelayPeakRSSMB = max(rep.RelayPeakRSSMB, t.rssMB)
			} else {
				scorerCPU = append(scorerCPU, t.cpuUS)
				rep.PeakRSSMB = max(rep.PeakRSSMB, t.rssMB)
				rep.ScoredPerRun = t.outputs
			}
			b.progress("run %d/%d %-18s %8.0f records/s  (%d records, cpu %.1f µs/record, peak rss %.0f MB)",
				r+1, b.o.reps, k.name, t.perS, t.outputs, t.cpuUS, t.rssMB)
		}
		if perRep[0] > 0 {
			rep.Ratios = append(rep.Ratios, perRep[1]/perRep[0])
		}
	}
	rep.BaselinePerS = round1(bench.Median(rep.BaselineRuns))
	rep.PipelinePerS = round1(bench.Median(rep.PipelineRuns))
	rep.PipelineW2PerS = round1(bench.Median(rep.PipelineW2Runs))
	rep.Ratio = round3(bench.Median(rep.Ratios))
	if rep.BaselinePerS > 0 {
		rep.RatioW2 = round3(rep.PipelineW2PerS / rep.BaselinePerS)
	}
	rep.BaselineCPUUSPerRecord = round1(bench.Median(relayCPU))
	rep.ScorerCPUUSPerRecord = round1(bench.Median(scorerCPU))

	if b.o.pipeOnly {
		rep.BenchPeakRSSMB = selfPeakRSSMB()
		rep.DurationSeconds = round1(time.Since(b.start).Seconds())
		return rep, nil
	}

	// Latency at fixed offered rates: baseline and pipeline alternate at
	// each rate, so both see the machine in the same state.
	for _, rate := range [][2]float64{{1000, 1000}, {5000, 5000}, {float64(int(0.8 * rep.BaselinePerS)), float64(int(0.8 * rep.PipelinePerS))}} {
		if err := b.latencyPair(ctx, rep, rate, false); err != nil {
			return nil, err
		}
	}
	rep.BaselineP99At5k = rep.BaselineLatency[1].Quantiles.P99
	rep.PipelineP99At5k = rep.PipelineLatency[1].Quantiles.P99
	rep.PipelineP50At5k = rep.PipelineLatency[1].Quantiles.P50
	if rep.BaselineP99At5k > 0 {
		rep.LatencyP99RatioAt5 = round3(rep.PipelineP99At5k / rep.BaselineP99At5k)
	}

	// Monitor joins over a backlog of predictions and outcomes.
	if err := b.monitorPhase(ctx, rep); err != nil {
		return nil, err
	}

	rep.BenchPeakRSSMB = selfPeakRSSMB()
	rep.DurationSeconds = round1(time.Since(b.start).Seconds())
	return rep, nil
}

// latencyPair runs the baseline at rate[0] and the pipeline at rate[1],
// baseline first unless pipelineFirst, and appends the results to rep.
func (b *benchRun) latencyPair(ctx context.Context, rep *benchReport, rate [2]float64, pipelineFirst bool) error {
	modes := []struct {
		workers int
		rate    float64
		out     *[]bench.LatencyResult
	}{{0, rate[0], &rep.BaselineLatency}, {1, rate[1], &rep.PipelineLatency}}
	if pipelineFirst {
		modes[0], modes[1] = modes[1], modes[0]
	}
	for _, mode := range modes {
		lr, err := b.latency(ctx, mode.workers, mode.rate)
		if err != nil {
			return fmt.Errorf("%s latency at %.0f/s: %w", modeName(mode.workers), mode.rate, err)
		}
		*mode.out = append(*mode.out, lr)
		b.progress("latency %-8s at %6.0f/s: p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, p99.9 %.2f ms (%d/%d outputs)",
			modeName(mode.workers), mode.rate, lr.Quantiles.P50, lr.Quantiles.P95, lr.Quantiles.P99, lr.Quantiles.P999, lr.Received, lr.Sent)
	}
	return nil
}

// latencyOnly runs o.reps rounds of latency runs at 1,000/s and 5,000/s,
// baseline and pipeline alternated (the order rotates every round). The
// *_at_5k figures are medians over the rounds.
func (b *benchRun) latencyOnly(ctx context.Context, rep *benchReport) (*benchReport, error) {
	m, err := loadModel(b.cfg)
	if err != nil {
		return nil, err
	}
	rec, err := schemas.DecodeRecord(bench.Record(prefixTrial, 0))
	if err != nil {
		return nil, fmt.Errorf("bench record does not decode: %w", err)
	}
	pred := benchPrediction(m, rec, time.Now())
	enc, err := pred.AppendJSON(nil)
	if err != nil {
		return nil, err
	}
	b.outSize, rep.OutputSize = len(enc), len(enc)
	var bp99, pp99, pp50 []float64
	for r := range b.o.reps {
		for _, rate := range []float64{1000, 5000} {
			if err := b.latencyPair(ctx, rep, [2]float64{rate, rate}, r%2 == 1); err != nil {
				return nil, err
			}
			if rate == 5000 {
				bl, pl := rep.BaselineLatency[len(rep.BaselineLatency)-1], rep.PipelineLatency[len(rep.PipelineLatency)-1]
				bp99, pp99, pp50 = append(bp99, bl.Quantiles.P99), append(pp99, pl.Quantiles.P99), append(pp50, pl.Quantiles.P50)
			}
		}
	}
	rep.BaselineP99At5k, rep.PipelineP99At5k, rep.PipelineP50At5k = bench.Median(bp99), bench.Median(pp99), bench.Median(pp50)
	if rep.BaselineP99At5k > 0 {
		rep.LatencyP99RatioAt5 = round3(rep.PipelineP99At5k / rep.BaselineP99At5k)
	}
	rep.BenchPeakRSSMB = selfPeakRSSMB()
	rep.DurationSeconds = round1(time.Since(b.start).Seconds())
	return rep, nil
}

func modeName(workers int) string {
	if workers == 0 {
		return "baseline"
	}
	return "pipeline"
}

func round1(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }
func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

// modelCost measures the per-record steps in this process, and returns the
// size of an encoded prediction (the relay's output size).
func (b *benchRun) modelCost() (modelCost, int, error) {
	m, err := loadModel(b.cfg)
	if err != nil {
		return modelCost{}, 0, err
	}
	payloads := make([][]byte, 1000)
	rows := make([][schemas.NumFeatures]float64, len(payloads))
	var rec schemas.Record
	for i := range payloads {
		payloads[i] = bench.Record(prefixTrial, i)
		if rec, err = schemas.DecodeRecord(payloads[i]); err != nil {
			return modelCost{}, 0, fmt.Errorf("bench record does not decode: %w", err)
		}
		rows[i] = rec.Features
	}
	const n = 30_000
	measure := func(f func(i int)) (ns, allocs float64) {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		t0 := time.Now()
		for i := range n {
			f(i)
		}
		d := time.Since(t0)
		runtime.ReadMemStats(&m1)
		return round1(float64(d.Nanoseconds()) / n), round3(float64(m1.Mallocs-m0.Mallocs) / n)
	}
	var mc modelCost
	mc.DecodeNS, mc.DecodeAllocs = measure(func(i int) { _, _ = schemas.DecodeRecord(payloads[i%len(payloads)]) })
	mc.PredictNS, mc.PredictAllocs = measure(func(i int) { m.Predict(&rows[i%len(rows)]) })
	batch := b.cfg.Scorer.BatchSize
	out := make([]float64, batch)
	bn, ba := measure(func(i int) {
		if i%batch == 0 {
			lo := (i / batch * batch) % len(rows)
			hi := min(lo+batch, len(rows))
			_ = m.PredictBatch(rows[lo:hi], out)
		}
	})
	// PredictBatch ran once per batch rows over at most len(rows) rows.
	scale := float64(batch) / float64(min(batch, len(rows)))
	mc.PredictBatchNS, mc.PredictBatchAlloc = round1(bn*scale), round3(ba*scale)
	p := benchPrediction(m, rec, time.Now())
	buf := make([]byte, 0, 512)
	mc.EncodeNS, mc.EncodeAllocs = measure(func(int) { buf, _ = p.AppendJSON(buf[:0]) })
	return mc, len(buf), nil
}

// benchPrediction is a typical prediction for rec: its encoding is what the
// encode cost is measured on, and its size the relay's output size.
func benchPrediction(m *model.Model, rec schemas.Record, now time.Time) schemas.Prediction {
	return schemas.Prediction{SchemaVersion: schemas.Version, RecordID: rec.ID, Source: benchSource, PatientRef: rec.PatientRef,
		Probability: 0.8731234, Label: 1, Threshold: m.Threshold(),
		Model:      scorerModel{m}.Ref(),
		ReceivedAt: now, ScoredAt: now.Add(1234 * time.Microsecond), LatencyMS: 1.234, Deliveries: 1}
}

// resetStreams deletes and recreates the streams, so every run starts from
// empty streams, no consumers and an empty duplicate window.
func (b *benchRun) resetStreams(ctx context.Context) error {
	for _, name := range []string{schemas.StreamRecords, schemas.StreamPredictions, schemas.StreamDeadLetter, schemas.StreamOutcomes} {
		if err := b.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("deleting %s: %w", name, err)
		}
	}
	return streams.Ensure(ctx, b.js, b.cfg.Streams)
}

// publishBacklog publishes n messages made by mk to subject and waits for
// every publish ack.
func (b *benchRun) publishBacklog(ctx context.Context, subject string, n int, mk func(k int) []byte) error {
	for k := range n {
		if err := bench.PublishWindowed(ctx, b.js, subject, mk(k)); err != nil {
			return err
		}
	}
	if err := bench.WaitPublished(ctx, b.js, 2*time.Minute); err != nil {
		return err
	}
	st, err := b.js.Stream(ctx, streamOf(subject))
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.Msgs < uint64(n) {
		return fmt.Errorf("%s holds %d messages after publishing %d", streamOf(subject), info.State.Msgs, n)
	}
	return nil
}

func streamOf(subject string) string {
	if strings.Contains(subject, ".outcomes.") {
		return schemas.StreamOutcomes
	}
	return schemas.StreamRecords
}

// trial is one throughput run's result.
type trial struct {
	perS    float64
	outputs int
	cpuUS   float64
	rssMB   float64
}

// throughput runs the relay (workers 0) or the scorer over a backlog of
// o.records records and measures outputs per second between the first and
// the last output stored in PREDICTIONS (child start-up is not counted).
func (b *benchRun) throughput(ctx context.Context, workers int, verify bool) (trial, error) {
	n := b.o.records
	ru, err := b.scoreBacklog(ctx, workers, prefixTrial, n)
	if err != nil {
		return trial{}, err
	}
	info, err := b.streamInfo(ctx, schemas.StreamPredictions)
	if err != nil {
		return trial{}, err
	}
	span := info.State.LastTime.Sub(info.State.FirstTime)
	t := trial{outputs: int(info.State.Msgs), cpuUS: ru.cpu.Seconds() * 1e6 / float64(n), rssMB: ru.maxRSSMB}
	if span > 0 {
		t.perS = float64(info.State.Msgs-1) / span.Seconds()
	}
	if workers > 0 {
		if err := b.checkExactlyOnce(ctx, n, verify); err != nil {
			return trial{}, err
		}
	} else if t.outputs != n {
		return trial{}, fmt.Errorf("relay stored %d outputs for %d records", t.outputs, n)
	}
	return t, nil
}

// scoreBacklog starts from empty streams, publishes n records made with
// prefix, and runs the relay (workers 0) or the scorer until every record is
// settled; it returns the child's resource usage.
func (b *benchRun) scoreBacklog(ctx context.Context, workers int, prefix string, n int) (childUsage, error) {
	if err := b.resetStreams(ctx); err != nil {
		return childUsage{}, err
	}
	if err := b.publishBacklog(ctx, b.cfg.Streams.Subjects().Records(benchSource), n, func(k int) []byte { return bench.Record(prefix, k) }); err != nil {
		return childUsage{}, err
	}
	ch, err := b.spawn(ctx, workers)
	if err != nil {
		return childUsage{}, err
	}
	waitErr := b.waitSettled(ctx, ch, b.consumerName(workers), uint64(n), time.Duration(max(60, n/500))*time.Second)
	ru, stopErr := ch.stop()
	if waitErr != nil {
		return childUsage{}, fmt.Errorf("%w; child stderr:\n%s", waitErr, ch.stderr.String())
	}
	if stopErr != nil {
		return childUsage{}, fmt.Errorf("child: %w; stderr:\n%s", stopErr, ch.stderr.String())
	}
	return ru, nil
}

func (b *benchRun) consumerName(workers int) string {
	if workers == 0 {
		return relayConsumer
	}
	return b.cfg.Scorer.Consumer
}

// waitSettled waits until PREDICTIONS and DEADLETTER hold n messages
// together and consumer has nothing pending or unacked.
func (b *benchRun) waitSettled(ctx context.Context, ch *child, consumer string, n uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if ch.exited() {
			return errors.New("child exited early")
		}
		p, err1 := b.streamInfo(ctx, schemas.StreamPredictions)
		d, err2 := b.streamInfo(ctx, schemas.StreamDeadLetter)
		if err1 == nil && err2 == nil && p.State.Msgs+d.State.Msgs >= n {
			ci, err := b.consumerInfo(ctx, schemas.StreamRecords, consumer)
			if err == nil && ci.NumAckPending == 0 && ci.NumPending == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not every record was settled within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkExactlyOnce checks that the run stored exactly one prediction per
// record and no dead letter; with readBack it also reads every prediction
// and checks each record index 0..n-1 appears once.
func (b *benchRun) checkExactlyOnce(ctx context.Context, n int, readBack bool) error {
	p, err := b.streamInfo(ctx, schemas.StreamPredictions)
	if err != nil {
		return err
	}
	d, err := b.streamInfo(ctx, schemas.StreamDeadLetter)
	if err != nil {
		return err
	}
	if p.State.Msgs != uint64(n) || d.State.Msgs != 0 {
		return fmt.Errorf("exactly once violated: %d records, %d predictions, %d dead letters", n, p.State.Msgs, d.State.Msgs)
	}
	if !readBack {
		return nil
	}
	st, err := b.js.Stream(ctx, schemas.StreamPredictions)
	if err != nil {
		return err
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	seen := make([]bool, n)
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return err
	}
	defer it.Stop()
	limit := max(2*time.Minute, time.Duration(n/1000)*time.Second)
	timedOut := make(chan struct{})
	timeout := time.AfterFunc(limit, func() { close(timedOut); it.Stop() })
	defer timeout.Stop()
	for range n {
		m, err := it.Next()
		if err != nil {
			select {
			case <-timedOut:
				return fmt.Errorf("reading %d predictions back took longer than %s", n, limit)
			default:
			}
			return fmt.Errorf("reading predictions back: %w", err)
		}
		var pred schemas.Prediction
		if err := json.Unmarshal(m.Data(), &pred); err != nil {
			return fmt.Errorf("prediction does not decode: %w", err)
		}
		k, ok := bench.RecordIndex([]byte(`"`+pred.RecordID), prefixTrial)
		if !ok || k >= n || seen[k] {
			return fmt.Errorf("exactly once violated: prediction for %q unexpected or repeated", pred.RecordID)
		}
		seen[k] = true
	}
	return nil
}

func (b *benchRun) streamInfo(ctx context.Context, name string) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := b.js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return st.Info(ctx)
}

func (b *benchRun) consumerInfo(ctx context.Context, stream, name string) (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := b.js.Consumer(ctx, stream, name)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// latency runs the relay (workers 0) or a one-worker scorer and offers
// records at rate for o.latDuration after a warm-up.
func (b *benchRun) latency(ctx context.Context, workers int, rate float64) (bench.LatencyResult, error) {
	subjects := b.cfg.Streams.Subjects()
	if err := b.resetStreams(ctx); err != nil {
		return bench.LatencyResult{}, err
	}
	ch, err := b.spawn(ctx, workers)
	if err != nil {
		return bench.LatencyResult{}, err
	}
	defer func() { _, _ = ch.stop() }()
	// Warm up: the child has created its consumer and relayed a few records.
	if err := b.publishBacklog(ctx, subjects.Records(benchSource), benchWarmupRec, func(k int) []byte { return bench.Record("warm-", k) }); err != nil {
		return bench.LatencyResult{}, err
	}
	if err := b.waitSettled(ctx, ch, b.consumerName(workers), benchWarmupRec, time.Minute); err != nil {
		return bench.LatencyResult{}, fmt.Errorf("warm-up: %w; child stderr:\n%s", err, ch.stderr.String())
	}
	return bench.Offer(ctx, b.nc, b.js, subjects.Records(benchSource), subjects.AllPredictions(), prefixLatency, rate, b.o.latDuration, 30*time.Second)
}

// monitorPhase scores a backlog for the monitor, runs the monitor over it
// --reps times and fills the report's monitor figures with the medians.
func (b *benchRun) monitorPhase(ctx context.Context, rep *benchReport) error {
	if err := b.monitorBacklog(ctx); err != nil {
		return fmt.Errorf("monitor backlog: %w", err)
	}
	var perS, cpu, serverCPU []float64
	for i := range b.o.reps {
		b.progress("monitor: run %d/%d, joining %d pairs (at most %s)", i+1, b.o.reps, b.o.monPairs, b.o.monDuration)
		r, err := b.monitorJoins(ctx)
		if err != nil {
			return fmt.Errorf("monitor run %d: %w", i+1, err)
		}
		b.progress("monitor: run %d/%d: %d/%d joins, %.0f joins/s, %.1f µs monitor + %.1f µs server CPU/join, peak rss %.0f MB",
			i+1, b.o.reps, r.joins, b.o.monPairs, r.perS, r.cpuUS, r.serverCPUUS, r.rssMB)
		if r.joins < b.o.monPairs {
			// A run that did not join the whole backlog has no comparable
			// rate: say so rather than report it.
			return fmt.Errorf("monitor run %d joined %d of %d pairs within --monitor-duration %s; give it longer", i+1, r.joins, b.o.monPairs, b.o.monDuration)
		}
		perS, cpu, serverCPU = append(perS, round1(r.perS)), append(cpu, r.cpuUS), append(serverCPU, r.serverCPUUS)
		rep.MonitorJoins = r.joins
		rep.MonitorPeakRSSMB = max(rep.MonitorPeakRSSMB, r.rssMB)
	}
	rep.MonitorPairs, rep.MonitorRuns = b.o.monPairs, perS
	rep.MonitorJoinsPerS = round1(bench.Median(perS))
	rep.MonitorCPUUSPerJoin, rep.MonitorServerCPUUSPerJoin = round1(bench.Median(cpu)), round1(bench.Median(serverCPU))
	return nil
}

// monitorResult is what monitorJoins measured.
type monitorResult struct {
	joins                           int
	perS, rssMB, cpuUS, serverCPUUS float64
}

// monitorBacklog scores o.monPairs records and publishes their outcomes:
// the backlog every monitor run reads from its start.
func (b *benchRun) monitorBacklog(ctx context.Context) error {
	n := b.o.monPairs
	b.progress("monitor: scoring %d records and publishing their outcomes", n)
	if _, err := b.scoreBacklog(ctx, 1, prefixMonitor, n); err != nil {
		return err
	}
	return b.publishBacklog(ctx, b.cfg.Streams.Subjects().Outcomes(benchSource), n, func(k int) []byte { return bench.Outcome(prefixMonitor, k) })
}

// monitorJoins runs a monitor with no checkpoint over the backlog and
// measures joins per second.
func (b *benchRun) monitorJoins(ctx context.Context) (monitorResult, error) {
	var (
		joins int
		perS  float64
	)
	n := b.o.monPairs
	// Each run starts from nothing: the previous run's final checkpoint
	// would have it resume at the end of the backlog.
	if err := b.js.DeleteObjectStore(ctx, b.cfg.Monitor.StateBucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return monitorResult{}, fmt.Errorf("deleting the monitor's checkpoint bucket %s: %w", b.cfg.Monitor.StateBucket, err)
	}
	if _, err := b.js.ObjectStore(ctx, b.cfg.Monitor.StateBucket); !errors.Is(err, jetstream.ErrBucketNotFound) {
		return monitorResult{}, fmt.Errorf("the monitor's checkpoint bucket %s is still there after its deletion (%v): the run would resume, not join", b.cfg.Monitor.StateBucket, err)
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return monitorResult{}, err
	}
	cpu0 := selfCPU()
	mon, err := b.spawnArgs(ctx, []string{"monitor", "--metrics-addr", addr}, nil)
	if err != nil {
		return monitorResult{}, err
	}
	spawned := time.Now()
	// The rate is measured between the first poll that sees a join and the
	// first that sees them all, from the monitor's own joined_total: the
	// child's start-up (and set-up) is not part of it. When the first poll
	// already sees them all (a small backlog), the time since the spawn is
	// used instead: a lower bound, start-up included.
	deadline := time.Now().Add(b.o.monDuration + 10*time.Second) // + start-up
	var first, last time.Time
	var firstJoins int
	for {
		j, ferr := scrapeJoined(ctx, addr)
		if ferr == nil && j > 0 {
			now := time.Now()
			if first.IsZero() {
				first, firstJoins = now, j
			}
			if j > joins {
				joins, last = j, now
			}
		}
		if joins >= n || time.Now().After(deadline) || (!first.IsZero() && time.Since(first) > b.o.monDuration) || mon.exited() {
			break
		}
		select {
		case <-ctx.Done():
			_, _ = mon.stop()
			return monitorResult{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	ru, serr := mon.stop()
	serverCPU := selfCPU() - cpu0
	if serr != nil && joins == 0 {
		return monitorResult{}, fmt.Errorf("monitor: %w; stderr:\n%s", serr, mon.stderr.String())
	}
	if span := last.Sub(first); span > 0 && joins > firstJoins {
		perS = float64(joins-firstJoins) / span.Seconds()
	} else if joins > 0 {
		perS = float64(joins) / last.Sub(spawned).Seconds()
	}
	r := monitorResult{joins: joins, perS: perS, rssMB: ru.maxRSSMB}
	if joins > 0 {
		r.cpuUS = float64(ru.cpu.Microseconds()) / float64(joins)
		r.serverCPUUS = float64(serverCPU.Microseconds()) / float64(joins)
	}
	return r, nil
}

// freeLoopbackAddr returns a loopback address with a port free right now.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port for the monitor's /metrics: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// scrapeClient asks for /metrics uncompressed: polled every 20 ms, gzip
// would cost the monitor more CPU than its joins.
var scrapeClient = &http.Client{Transport: &http.Transport{DisableCompression: true}}

// scrapeJoined reads cardiostream_monitor_joined_total from the monitor's
// /metrics.
func scrapeJoined(ctx context.Context, addr string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("/metrics: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "cardiostream_monitor_joined_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("/metrics has no cardiostream_monitor_joined_total")
}

// child is a cardiostream process bench started.
type child struct {
	cmd    *exec.Cmd
	stderr *tailbuf.Buffer
	done   chan struct{}
	err    error
}

// spawn starts the relay (workers 0) or `cardiostream scorer` with workers.
func (b *benchRun) spawn(ctx context.Context, workers int) (*child, error) {
	if workers == 0 {
		return b.spawnArgs(ctx, []string{"bench", "relay", "--out-size", strconv.Itoa(b.outSize)}, nil)
	}
	return b.spawnArgs(ctx, []string{"scorer"}, []string{"CARDIOSTREAM_SCORER__WORKERS=" + strconv.Itoa(workers)})
}

func (b *benchRun) spawnArgs(_ context.Context, args, env []string) (*child, error) {
	args = append(args, "--nats-url", b.url, "--log-level", "warn")
	if args[0] != "bench" && !slices.Contains(args, "--metrics-addr") {
		args = append(args, "--metrics-addr", "127.0.0.1:0")
	}
	// Not exec.CommandContext: the child is stopped with SIGTERM so it drains.
	cmd := exec.Command(b.exe, args...)
	cmd.Env = append(append([]string{}, b.c.environ...), env...)
	ch := &child{cmd: cmd, stderr: tailbuf.New(16 << 10), done: make(chan struct{})}
	cmd.Stderr = ch.stderr
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s %v: %w", b.exe, args, err)
	}
	go func() {
		ch.err = cmd.Wait()
		close(ch.done)
	}()
	return ch, nil
}

func (ch *child) exited() bool {
	select {
	case <-ch.done:
		return true
	default:
		return false
	}
}

// childUsage is what getrusage says about a finished child.
type childUsage struct {
	cpu      time.Duration
	maxRSSMB float64
}

// stop sends SIGTERM, waits for the child to drain and exit (killing it
// after 30 s) and returns its resource usage.
func (ch *child) stop() (childUsage, error) {
	hwm := 0.0
	if !ch.exited() {
		hwm = vmHWMMB(ch.cmd.Process.Pid)
		_ = ch.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-ch.done:
		case <-time.After(30 * time.Second):
			_ = ch.cmd.Process.Kill()
			<-ch.done
		}
	}
	u := usageOf(ch.cmd.ProcessState)
	if hwm > 0 {
		// getrusage's maxrss of a child on Linux includes the parent's RSS
		// at the time of exec (the kernel carries the old address space's
		// high-water mark over), so bench's own size would show up as the
		// child's. VmHWM is the child's own address space only.
		u.maxRSSMB = hwm
	}
	return u, ch.err
}

// printBenchTable prints rep for people.
func printBenchTable(w io.Writer, r *benchReport) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("cardiostream bench: %d records per run, %d repetitions, sync %s, %s, %d CPUs, record %d B, output %d B",
		r.Records, r.Reps, r.Sync, r.GoVersion, r.CPUs, r.RecordSize, r.OutputSize)
	p("")
	p("| throughput (records/s, median) | value | runs |")
	p("|---|---:|---|")
	p("| baseline (bare relay) | %.0f | %v |", r.BaselinePerS, ints(r.BaselineRuns))
	p("| pipeline, 1 worker | %.0f | %v |", r.PipelinePerS, ints(r.PipelineRuns))
	p("| pipeline, 2 workers | %.0f | %v |", r.PipelineW2PerS, ints(r.PipelineW2Runs))
	p("| ratio pipeline ÷ baseline (1 worker; 2 workers) | %.3f; %.3f | %v |", r.Ratio, r.RatioW2, r.Ratios)
	p("| CPU per record, relay / scorer process (µs) | %.1f / %.1f | |", r.BaselineCPUUSPerRecord, r.ScorerCPUUSPerRecord)
	p("")
	p("| latency, publish → output (ms) | offered/s | p50 | p95 | p99 | p99.9 | outputs |")
	p("|---|---:|---:|---:|---:|---:|---:|")
	for _, m := range []struct {
		name string
		rs   []bench.LatencyResult
	}{{"baseline", r.BaselineLatency}, {"pipeline", r.PipelineLatency}} {
		for _, l := range m.rs {
			q := l.Quantiles
			p("| %s | %.0f | %.2f | %.2f | %.2f | %.2f | %d/%d |", m.name, l.OfferedPerS, q.P50, q.P95, q.P99, q.P999, l.Received, l.Sent)
		}
	}
	p("")
	p("| per record, in process | ns | allocs |")
	p("|---|---:|---:|")
	p("| decode + validate | %.0f | %.2f |", r.Model.DecodeNS, r.Model.DecodeAllocs)
	p("| predict, single | %.0f | %.2f |", r.Model.PredictNS, r.Model.PredictAllocs)
	p("| predict, batched | %.0f | %.2f |", r.Model.PredictBatchNS, r.Model.PredictBatchAlloc)
	p("| encode prediction | %.0f | %.2f |", r.Model.EncodeNS, r.Model.EncodeAllocs)
	p("")
	p("| monitor joins/s (backlog of %d pairs, median of %d runs) | %.0f %v (%d joined each run; CPU per join: %.1f µs monitor + %.1f µs server) |",
		r.MonitorPairs, len(r.MonitorRuns), r.MonitorJoinsPerS, ints(r.MonitorRuns), r.MonitorJoins, r.MonitorCPUUSPerJoin, r.MonitorServerCPUUSPerJoin)
	p("| peak RSS MB: scorer / relay / monitor / bench (server) | %.0f / %.0f / %.0f / %.0f |", r.PeakRSSMB, r.RelayPeakRSSMB, r.MonitorPeakRSSMB, r.BenchPeakRSSMB)
	p("| exactly once checked | %v (%d predictions per run) |", r.ExactlyOnceChecked, r.ScoredPerRun)
	p("| duration | %.1f s |", r.DurationSeconds)
}

func ints(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x + 0.5)
	}
	return out
}
