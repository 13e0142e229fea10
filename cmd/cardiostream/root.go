package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cardiostream/cardiostream/config"
)

// cli carries what every subcommand needs from the outside world, so tests can
// run commands in-process with their own writers and environment.
type cli struct {
	stdout  io.Writer
	stderr  io.Writer
	environ []string
	// setGCPercent sets this process's garbage collector target
	// (debug.SetGCPercent); nil leaves it alone, as commands run in-process
	// by tests must not change their test binary's runtime.
	setGCPercent func(percent int) int
	// setMemoryLimit likewise sets its soft memory limit
	// (debug.SetMemoryLimit).
	setMemoryLimit func(limit int64) int64
	// hooks lets tests observe a running standalone system.
	hooks hooks
}

// hooks are optional callbacks for tests.
type hooks struct {
	// started is called once a standalone or role process is serving.
	started func(info startedInfo)
}

// startedInfo describes a running process.
type startedInfo struct {
	NATSURL     string
	MetricsAddr string
}

// usageError marks errors caused by the command line (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// execute runs one command line and returns the exit code.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr, environ: os.Environ(), setGCPercent: debug.SetGCPercent, setMemoryLimit: debug.SetMemoryLimit}
	return c.execute(ctx, args)
}

func (c *cli) execute(ctx context.Context, args []string) int {
	root := c.rootCmd()
	root.SetArgs(args)
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(c.stderr, "cardiostream: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") {
		return 2
	}
	return 1
}

// globalFlags maps the flags shared by every command to configuration keys.
var globalFlags = map[string]string{
	"log-level":  "log.level",
	"log-format": "log.format",
}

func (c *cli) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "cardiostream",
		Short:         "Streaming heart-disease risk scoring on NATS JetStream",
		SilenceUsage:  true,
		SilenceErrors: true,
		Long: `cardiostream scores patient records (the 13 UCI heart-disease features) that arrive
as JSON on NATS JetStream, publishes predictions, joins them with later outcomes,
and alerts when accuracy, latency or error rate degrade.

Start everything on an embedded NATS server:
  cardiostream standalone --replay datasets/uci-heart-disease/processed.*.data --exit-after-replay`,
	}
	pf := root.PersistentFlags()
	pf.String("env", "", "deployment environment: development, staging or production (default $DEPLOYMENT_ENV, else development)")
	pf.String("config", "", "YAML configuration file layered over the environment's defaults")
	pf.String("log-level", "", "log level: debug, info, warn or error")
	pf.String("log-format", "", "log format: text or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	root.AddCommand(
		c.standaloneCmd(),
		c.scorerCmd(),
		c.monitorCmd(),
		c.replayCmd(),
		c.configCmd(),
		c.modelCmd(),
		c.benchCmd(),
	)
	return root
}

// loadConfig loads the configuration for cmd: defaults, environment section,
// file, environment variables, then the flags the user set (flagKeys maps
// flag names to configuration keys).
func (c *cli) loadConfig(cmd *cobra.Command, flagKeys map[string]string) (*config.Config, error) {
	env, _ := cmd.Flags().GetString("env")
	file, _ := cmd.Flags().GetString("config")
	keys := map[string]string{}
	for k, v := range globalFlags {
		keys[k] = v
	}
	for k, v := range flagKeys {
		keys[k] = v
	}
	cfg, err := config.Load(config.LoadOptions{
		Env:     env,
		File:    file,
		Environ: c.environ,
		Flags:   cmd.Flags(),
		FlagMap: keys,
	})
	if err != nil {
		return nil, fmt.Errorf("loading configuration: %w", err)
	}
	return cfg, nil
}

// newLogger builds the process logger from the configuration; logs go to stderr.
func (c *cli) newLogger(cfg *config.Config) *slog.Logger {
	h, err := cfg.Log.Handler(c.stderr)
	if err != nil { // Validate reports it; fall back rather than lose logs
		h = slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: cfg.Log.SlogLevel()})
	}
	return slog.New(h)
}

// flagChanged reports whether the user set the named flag.
func flagChanged(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Changed
}
