package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/cardiostream/cardiostream/config"
)

// roleFlags maps the flags of the scorer and monitor commands to configuration keys.
var roleFlags = map[string]string{
	"nats-url":     "nats.url",
	"metrics-addr": "http.listen",
	"model":        "model.path",
}

func (c *cli) scorerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scorer --nats-url URL",
		Short: "Score records from an external NATS JetStream server or cluster",
		Long: `scorer consumes RECORDS through the durable pull consumer shared by every scorer
process, so running more scorer processes scales out: each record is scored by
exactly one of them. Predictions go to PREDICTIONS, invalid records to DEADLETTER.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.runRole(cmd, roles{scorer: true}, "cardiostream-scorer")
		},
	}
	addRoleFlags(cmd)
	cmd.Flags().String("model", "", "model artifact directory or manifest (default: the embedded model; env MODEL_PATH)")
	return cmd
}

func (c *cli) monitorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "monitor --nats-url URL",
		Short: "Join predictions with outcomes, export metrics and send alerts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.runRole(cmd, roles{monitor: true}, "cardiostream-monitor")
		},
	}
	addRoleFlags(cmd)
	return cmd
}

func addRoleFlags(cmd *cobra.Command) {
	cmd.Flags().String("nats-url", "", "NATS server URL(s), comma-separated (default "+defaultClientURL+"; env CARDIOSTREAM_NATS__URL)")
	cmd.Flags().String("metrics-addr", "", "address for /metrics, /healthz and /readyz (default 127.0.0.1:9090)")
}

// clientURL is the configured NATS URL, or the standalone default.
func clientURL(cfg *config.Config) string {
	if cfg.NATS.URL != "" {
		return cfg.NATS.URL
	}
	return defaultClientURL
}

// runRole runs the given components against an external NATS until the
// command's context ends.
func (c *cli) runRole(cmd *cobra.Command, r roles, name string) error {
	cfg, err := c.loadConfig(cmd, roleFlags)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration (see `cardiostream config validate`):\n%w", err)
	}
	log := c.newLogger(cfg).With("env", cfg.Env)
	if r.scorer {
		c.applyGC("scorer", cfg.Scorer.GCPercent, cfg.Scorer.GCMemoryLimitMB, log)
	} else if r.monitor {
		c.applyGC("monitor", cfg.Monitor.GCPercent, cfg.Monitor.GCMemoryLimitMB, log)
	}
	url := clientURL(cfg)
	reg := newRegistry()
	// /metrics and /readyz come up first, so an orchestrator sees "not
	// ready: connecting" while NATS is unreachable instead of no answer.
	opsSrv, addr, err := newOps(cfg, reg, log)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return opsSrv.Run(gctx) })
	g.Go(func() error {
		defer cancel() // when the components end, so does the ops server
		nc, js, err := connectAndSetup(gctx, cfg, url, name, log)
		if err != nil {
			return err
		}
		defer drainConn(nc, 10*time.Second, log)
		sys, err := newSystem(gctx, cfg, nc, js, r, reg, opsSrv, log)
		if err != nil {
			return err
		}
		log.Info("running", "role", name, "nats", nc.ConnectedUrlRedacted(), "metrics", "http://"+addr.String())
		if c.hooks.started != nil {
			c.hooks.started(startedInfo{NATSURL: url, MetricsAddr: addr.String()})
		}
		return sys.run(gctx)
	})
	err = g.Wait()
	if err != nil && cmd.Context().Err() != nil && errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("stopped")
	return err
}

// applyGC sets the garbage collector's target and soft memory limit of a
// scorer or monitor process (role) to <role>.gc_percent and
// <role>.gc_memory_limit_mb (see scorer.Config, monitor.Config), each unless
// it is 0 or its environment variable (GOGC, GOMEMLIMIT) is set: the runtime
// has applied that one, and an operator's explicit setting wins.
func (c *cli) applyGC(role string, percent, limitMB int, log *slog.Logger) {
	set := func(key string, value int, envVar string, apply func()) {
		if value == 0 {
			return
		}
		for _, kv := range c.environ {
			if v, ok := strings.CutPrefix(kv, envVar+"="); ok {
				log.Info(envVar+" is set; "+role+"."+key+" not applied", strings.ToLower(envVar), v, key, value)
				return
			}
		}
		apply()
		log.Info("garbage collector setting applied", key, value)
	}
	if c.setGCPercent != nil {
		set("gc_percent", percent, "GOGC", func() { c.setGCPercent(percent) })
	}
	if c.setMemoryLimit != nil {
		set("gc_memory_limit_mb", limitMB, "GOMEMLIMIT", func() { c.setMemoryLimit(int64(limitMB) << 20) })
	}
}
