package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/cardiostream/cardiostream/config"
	"github.com/cardiostream/cardiostream/ingest"
	"github.com/cardiostream/cardiostream/internal/natsserver"
	"github.com/cardiostream/cardiostream/monitor"
)

// standaloneFlags maps standalone's flags to configuration keys.
var standaloneFlags = map[string]string{
	"data-dir":     "nats.embedded.data_dir",
	"nats-listen":  "nats.embedded.listen",
	"metrics-addr": "http.listen",
	"model":        "model.path",
	"rate":         "ingest.rate",
	"repeat":       "ingest.repeat",
	"label-delay":  "ingest.label_delay",
	"label-column": "ingest.label_column",
	"source":       "ingest.source",
}

func (c *cli) standaloneCmd() *cobra.Command {
	var replay []string
	var exitAfter bool
	var settle time.Duration
	cmd := &cobra.Command{
		Use: "standalone [--replay FILE...] [--exit-after-replay]",
		Example: `  cardiostream standalone
  cardiostream standalone --replay datasets/uci-heart-disease/*.data --exit-after-replay`,
		Short: "Run everything in one process on an embedded NATS JetStream server",
		Long: `standalone starts an embedded nats-server with JetStream (file storage under
--data-dir, clients on --nats-listen), creates its streams and consumers, and runs
the scorer, the monitor and the alert notifier in this process. /metrics, /healthz
and /readyz are served on --metrics-addr. It runs until SIGINT or SIGTERM.

With --replay it also publishes the records of those files and, after
--label-delay, their outcomes. With --exit-after-replay it waits until every
replayed record has been scored or dead-lettered and every outcome joined, prints
a JSON summary as the last line of stdout and exits.`,
		// Files after the flags are replayed too, so a shell glob after
		// --replay works: --replay a.data b.data.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && !flagChanged(cmd.Flags(), "replay") {
				return usageError{fmt.Errorf("unexpected arguments %v: data files go after --replay", args)}
			}
			replay = append(replay, args...)
			if exitAfter && len(replay) == 0 {
				return usageError{errors.New("--exit-after-replay needs --replay FILE")}
			}
			cfg, err := c.loadConfig(cmd, standaloneFlags)
			if err != nil {
				return err
			}
			if len(replay) > 0 {
				cfg.Ingest.Outcomes = true
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("invalid configuration (see `cardiostream config validate`):\n%w", err)
			}
			return c.runStandalone(cmd.Context(), cfg, replay, exitAfter, settle)
		},
	}
	f := cmd.Flags()
	f.String("data-dir", "", "directory for JetStream file storage (default ./cardiostream-data)")
	f.String("nats-listen", "", "address for NATS clients (default 127.0.0.1:4222)")
	f.String("metrics-addr", "", "address for /metrics, /healthz and /readyz (default 127.0.0.1:9090)")
	f.String("model", "", "model artifact directory or manifest (default: the embedded model; env MODEL_PATH)")
	f.StringSliceVar(&replay, "replay", nil, "replay these data files (UCI .data, CSV with header, JSON Lines) with their outcomes")
	f.BoolVar(&exitAfter, "exit-after-replay", false, "exit once every replayed record is scored or dead-lettered and every outcome joined; print a JSON summary")
	f.Float64("rate", 0, "replay rate in records per second (0 = as fast as possible)")
	f.Int("repeat", 0, "replay each file N times with distinct record ids")
	f.Duration("label-delay", 0, "publish each outcome this long after its record")
	f.String("label-column", "", "CSV column holding the label (default num)")
	f.String("source", "", "source name for replayed records (default: each file's base name)")
	f.DurationVar(&settle, "settle-timeout", 2*time.Minute, "with --exit-after-replay: give up when nothing progresses for this long")
	return cmd
}

// runStandalone runs the embedded server and every component until ctx ends
// (or, with exitAfter, until the replay is fully accounted for).
func (c *cli) runStandalone(ctx context.Context, cfg *config.Config, replay []string, exitAfter bool, settle time.Duration) error {
	log := c.newLogger(cfg).With("env", cfg.Env)
	ns, err := startEmbedded(cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	url := ns.ClientURL()
	log.Info("embedded NATS JetStream server ready", "url", url, "data_dir", cfg.NATS.Embedded.DataDir, "sync_always", cfg.NATS.Embedded.SyncAlways)

	nc, js, err := connectAndSetup(ctx, cfg, url, "cardiostream-standalone", log, embeddedAuth(cfg)...)
	if err != nil {
		return err
	}
	defer drainConn(nc, 10*time.Second, log)
	reg := newRegistry()
	opsSrv, metricsAddr, err := newOps(cfg, reg, log)
	if err != nil {
		return err
	}
	sys, err := newSystem(ctx, cfg, nc, js, roles{scorer: true, monitor: true}, reg, opsSrv, log)
	if err != nil {
		return err
	}
	log.Info("serving /metrics, /healthz and /readyz", "addr", "http://"+metricsAddr.String())

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return opsSrv.Run(gctx) })
	g.Go(func() error { return sys.run(gctx) })
	if c.hooks.started != nil {
		c.hooks.started(startedInfo{NATSURL: url, MetricsAddr: metricsAddr.String()})
	}
	if len(replay) > 0 {
		g.Go(func() error {
			sum, err := c.replayInto(gctx, cfg, js, sys.monitor, replay, exitAfter, settle, log)
			if err != nil {
				return err
			}
			if exitAfter {
				out, _ := json.Marshal(sum)
				fmt.Fprintln(c.stdout, string(out))
				cancel() // done: drain and exit
			}
			return nil
		})
	}
	err = g.Wait()
	// Cancellation (a signal, or the end of --exit-after-replay) is a clean
	// shutdown, whichever component noticed it first.
	if err != nil && runCtx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("stopped")
	return err
}

// startEmbedded starts the embedded server. With an API key configured
// (API_KEY), every client must present it as its token: clinics publishing
// records with any NATS client, and this process itself.
func startEmbedded(cfg *config.Config, log *slog.Logger) (*server.Server, error) {
	if err := cfg.NATS.Embedded.Validate(); err != nil {
		return nil, err
	}
	opts, err := cfg.NATS.Embedded.Options()
	if err != nil {
		return nil, err
	}
	if cfg.Security.APIKey.IsSet() {
		opts.Authorization = cfg.Security.APIKey.Reveal()
	}
	return natsserver.StartWithOptions(opts, cfg.NATS.Embedded.StartTimeout, log)
}

// embeddedAuth is the client option matching startEmbedded's authorization.
func embeddedAuth(cfg *config.Config) []nats.Option {
	if cfg.Security.APIKey.IsSet() {
		return []nats.Option{nats.Token(cfg.Security.APIKey.Reveal())}
	}
	return nil
}

// summary is the JSON object --exit-after-replay prints.
type summary struct {
	Records            int      `json:"records"`
	Duplicates         int      `json:"duplicates"`
	ParseErrors        int      `json:"parse_errors"`
	Scored             int64    `json:"scored"`
	DeadLettered       int64    `json:"dead_lettered"`
	Outcomes           int      `json:"outcomes"`
	Joined             int64    `json:"joined"`
	OutcomesUnscorable int64    `json:"outcomes_unscorable"`
	Accuracy           *float64 `json:"accuracy"`
	Precision          *float64 `json:"precision"`
	Recall             *float64 `json:"recall"`
	F1                 *float64 `json:"f1"`
	TP                 int64    `json:"tp"`
	FP                 int64    `json:"fp"`
	TN                 int64    `json:"tn"`
	FN                 int64    `json:"fn"`
	P50LatencyMS       float64  `json:"p50_latency_ms"`
	P95LatencyMS       float64  `json:"p95_latency_ms"`
	P99LatencyMS       float64  `json:"p99_latency_ms"`
	AlertsFired        int64    `json:"alerts_fired"`
	AlertsResolved     int64    `json:"alerts_resolved"`
	DurationSeconds    float64  `json:"duration_seconds"`
}

// replayInto replays files into the running system and, with exitAfter,
// waits until the monitor has accounted for every replayed record and outcome.
// Figures are the changes since the replay began, so earlier data in the same
// data directory does not count.
func (c *cli) replayInto(ctx context.Context, cfg *config.Config, js jetstream.JetStream, mon *monitor.Monitor, files []string, exitAfter bool, settle time.Duration, log *slog.Logger) (summary, error) {
	start := time.Now()
	if err := waitFor(ctx, mon.Ready); err != nil {
		return summary{}, fmt.Errorf("monitor not ready: %w", err)
	}
	base := mon.Snapshot()
	ijs, err := jetstream.New(js.Conn(), cfg.Ingest.JetStreamOptions()...)
	if err != nil {
		return summary{}, fmt.Errorf("creating JetStream context for the replay: %w", err)
	}
	rep, err := ingest.Replay(ctx, cfg.Ingest, ijs, cfg.Streams.Subjects(), files, c.stderr, log)
	if err != nil {
		return summary{}, fmt.Errorf("replaying %v: %w", files, err)
	}
	if !exitAfter {
		return summary{}, nil
	}
	wantRecords := int64(rep.Records - rep.DuplicateRecords)
	wantOutcomes := int64(rep.Outcomes - rep.DuplicateOutcomes)
	if rep.DuplicateRecords > 0 {
		fmt.Fprintf(c.stderr, "note: %d records were already in RECORDS with the same ids (deduplicated); they are not scored again. Use a new --data-dir or --source to score them again.\n", rep.DuplicateRecords)
	}
	var last monitor.Snapshot
	lastProgress := time.Now()
	lastDone := int64(-1)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	lastPrint := time.Time{}
	for {
		last = mon.Snapshot()
		records := (last.Predictions - base.Predictions) + (last.DeadLettered - base.DeadLettered)
		outcomes := (last.Joined - base.Joined) + (last.OutcomesUnscorable - base.OutcomesUnscorable)
		if records >= wantRecords && outcomes >= wantOutcomes {
			break
		}
		if done := records + outcomes; done != lastDone {
			lastDone, lastProgress = done, time.Now()
		} else if time.Since(lastProgress) > settle {
			return summary{}, fmt.Errorf("no progress for %s: %d of %d records scored or dead-lettered, %d of %d outcomes joined; check the logs above and /readyz", settle, records, wantRecords, outcomes, wantOutcomes)
		}
		if time.Since(lastPrint) > 2*time.Second {
			fmt.Fprintf(c.stderr, "waiting: %d/%d records scored or dead-lettered, %d/%d outcomes joined\n", records, wantRecords, outcomes, wantOutcomes)
			lastPrint = time.Now()
		}
		select {
		case <-ctx.Done():
			return summary{}, ctx.Err()
		case <-t.C:
		}
	}
	s := summary{
		Records:            rep.Records,
		Duplicates:         rep.DuplicateRecords,
		ParseErrors:        rep.ParseErrors,
		Scored:             last.Predictions - base.Predictions,
		DeadLettered:       last.DeadLettered - base.DeadLettered,
		Outcomes:           rep.Outcomes,
		Joined:             last.Joined - base.Joined,
		OutcomesUnscorable: last.OutcomesUnscorable - base.OutcomesUnscorable,
		TP:                 last.Cumulative.TP - base.Cumulative.TP,
		FP:                 last.Cumulative.FP - base.Cumulative.FP,
		TN:                 last.Cumulative.TN - base.Cumulative.TN,
		FN:                 last.Cumulative.FN - base.Cumulative.FN,
		P50LatencyMS:       last.LatencyP50,
		P95LatencyMS:       last.LatencyP95,
		P99LatencyMS:       last.LatencyP99,
		AlertsFired:        last.AlertsFired - base.AlertsFired,
		AlertsResolved:     last.AlertsResolved - base.AlertsResolved,
		DurationSeconds:    time.Since(start).Seconds(),
	}
	s.Accuracy, s.Precision, s.Recall, s.F1 = classification(s.TP, s.FP, s.TN, s.FN)
	fmt.Fprintf(c.stderr, "done: %d records, %d scored, %d dead-lettered, %d outcomes joined in %.1fs\n", s.Records, s.Scored, s.DeadLettered, s.Joined, s.DurationSeconds)
	return s, nil
}

// classification computes accuracy, precision, recall and F1 from a
// confusion matrix; a ratio with a zero denominator is nil (JSON null).
func classification(tp, fp, tn, fn int64) (acc, prec, rec, f1 *float64) {
	ratio := func(n, d int64) *float64 {
		if d == 0 {
			return nil
		}
		v := float64(n) / float64(d)
		return &v
	}
	acc = ratio(tp+tn, tp+fp+tn+fn)
	prec = ratio(tp, tp+fp)
	rec = ratio(tp, tp+fn)
	if prec != nil && rec != nil && *prec+*rec > 0 {
		v := 2 * *prec * *rec / (*prec + *rec)
		f1 = &v
	}
	return acc, prec, rec, f1
}

// waitFor polls ready until it returns nil or ctx ends.
func waitFor(ctx context.Context, ready func() error) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}
