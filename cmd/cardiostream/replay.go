package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/cardiostream/cardiostream/ingest"
)

var replayFlags = map[string]string{
	"nats-url":     "nats.url",
	"source":       "ingest.source",
	"format":       "ingest.format",
	"rate":         "ingest.rate",
	"repeat":       "ingest.repeat",
	"outcomes":     "ingest.outcomes",
	"label-delay":  "ingest.label_delay",
	"label-column": "ingest.label_column",
}

func (c *cli) replayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay FILE... [--nats-url URL]",
		Short: "Publish records (and optionally outcomes) from data files",
		Long: `replay reads UCI .data files (no header, ? = missing, chol/trestbps 0 = missing),
CSV files with a header, or JSON Lines, and publishes one record per row to
<prefix>.records.<source>. With --outcomes it publishes each row's label
(num > 0) to <prefix>.outcomes.<source> after --label-delay. Rows that cannot be
parsed are reported with file and line and counted; they do not stop the replay.
The last line of stdout is a JSON report.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			cfg, err := c.loadConfig(cmd, replayFlags)
			if err != nil {
				return err
			}
			if err := cfg.Ingest.Validate(); err != nil {
				return usageError{err}
			}
			ctx := cmd.Context()
			log := c.newLogger(cfg)
			nc, _, err := connectAndSetup(ctx, cfg, clientURL(cfg), "cardiostream-replay", log)
			if err != nil {
				return err
			}
			defer drainConn(nc, 10*time.Second, log)
			// The replay's own publish window and ack timeout.
			js, err := jetstream.New(nc, cfg.Ingest.JetStreamOptions()...)
			if err != nil {
				return fmt.Errorf("creating JetStream context: %w", err)
			}
			rep, err := ingest.Replay(ctx, cfg.Ingest, js, cfg.Streams.Subjects(), files, c.stderr, log)
			out, _ := json.Marshal(rep)
			fmt.Fprintln(c.stdout, string(out))
			if err != nil {
				return fmt.Errorf("replay: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.String("nats-url", "", "NATS server URL(s) (default "+defaultClientURL+")")
	f.String("source", "", "source name: the subject token after records. (default: each file's base name)")
	f.String("format", "", "file format: uci, csv or jsonl (default: from the extension)")
	f.Float64("rate", 0, "records per second (0 = as fast as possible)")
	f.Int("repeat", 0, "replay each file N times with distinct record ids (for load)")
	f.Bool("outcomes", false, "also publish each row's label as an outcome")
	f.Duration("label-delay", 0, "with --outcomes: publish each outcome this long after its record")
	f.String("label-column", "", "CSV column holding the label (default num; a file without it replays records only)")
	return cmd
}
