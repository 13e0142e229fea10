package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/cardiostream/cardiostream/config"
	"github.com/cardiostream/cardiostream/internal/model"
	"github.com/cardiostream/cardiostream/internal/ops"
	"github.com/cardiostream/cardiostream/internal/registry"
	"github.com/cardiostream/cardiostream/monitor"
	"github.com/cardiostream/cardiostream/monitor/webhook"
	"github.com/cardiostream/cardiostream/schemas"
	"github.com/cardiostream/cardiostream/scorer"
)

// roles says which components a process runs.
type roles struct {
	scorer  bool
	monitor bool // the monitor and the alert webhook notifier
}

// system is the set of components one process runs, wired to one NATS
// connection and one metrics registry.
type system struct {
	ops      *ops.Server
	scorer   *scorer.Scorer
	models   *modelFollower // the scorer's models follow the registry (models.go)
	monitor  *monitor.Monitor
	notifier *webhook.Notifier
}

// newRegistry returns the process's own registry (no global state).
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// scorerModel adapts the loaded model to the scorer's small interface.
type scorerModel struct{ *model.Model }

func (m scorerModel) Ref() schemas.ModelRef {
	return schemas.ModelRef{Name: m.Name(), Version: m.Version(), SHA256: m.SHA256()}
}

// loadModel loads the configured artifact, or the embedded default.
func loadModel(cfg *config.Config) (*model.Model, error) {
	if cfg.Model.Path == "" {
		m, err := model.LoadDefault()
		if err != nil {
			return nil, fmt.Errorf("loading the embedded default model: %w", err)
		}
		return m, nil
	}
	m, err := model.LoadPath(cfg.Model.Path)
	if err != nil {
		return nil, fmt.Errorf("loading model %s (check MODEL_PATH / model.path; `cardiostream model validate %s` explains): %w", cfg.Model.Path, cfg.Model.Path, err)
	}
	return m, nil
}

// newOps creates the process's /metrics, /healthz and /readyz server and
// binds its address. It comes up before NATS is reachable, so /readyz can
// say what the process waits for; until components register, the "nats"
// check reports that it is still connecting.
func newOps(cfg *config.Config, reg *prometheus.Registry, log *slog.Logger) (*ops.Server, net.Addr, error) {
	srv := ops.New(ops.Config{Listen: cfg.HTTP.Listen, ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout}, reg, cfg.Security.MonitoringKey, log)
	srv.AddCheck("nats", func() error { return errors.New("connecting") })
	addr, err := srv.Listen()
	if err != nil {
		return nil, nil, err
	}
	return srv, addr, nil
}

// newSystem builds the components for r and registers their readiness on
// srv. A scorer loads the models the registry points at (ctx bounds that).
// Nothing runs until run.
func newSystem(ctx context.Context, cfg *config.Config, nc *nats.Conn, js jetstream.JetStream, r roles, reg *prometheus.Registry, srv *ops.Server, log *slog.Logger) (*system, error) {
	s := &system{ops: srv}
	// Not ready until every component's check is registered (below): a
	// scorer may wait here for the model registry, and /readyz must not
	// answer 200 in between.
	s.ops.AddCheck("nats", func() error { return errors.New("connected; setting up components") })
	subjects := cfg.Streams.Subjects()
	if r.scorer {
		m, err := loadModel(cfg)
		if err != nil {
			return nil, err
		}
		log.Info("fallback model loaded", "name", m.Name(), "version", m.Version(), "sha256", m.SHA256(), "threshold", m.Threshold())
		var rg *registry.Registry
		err = retrySetup(ctx, "opening the model registry", log, func(ctx context.Context) (err error) {
			rg, err = registry.Open(ctx, js, cfg.RegistryConfig(), log)
			return err
		})
		if err != nil {
			return nil, err
		}
		actor := scorerActor(nc.Opts.Name)
		f, err := newModelFollower(rg, js, scorerModel{m}, actor, reg, log)
		if err != nil {
			return nil, err
		}
		active, shadow := f.initial(ctx)
		// The same name in audit entries and on every output (ScorerHeader).
		sc, err := scorer.New(cfg.Scorer, js, subjects, active, reg, log, scorer.WithInstance(actor))
		if err != nil {
			return nil, fmt.Errorf("creating scorer: %w", err)
		}
		if shadow != nil {
			if err := sc.SetModels(active, shadow); err != nil {
				return nil, fmt.Errorf("setting the shadow model: %w", err)
			}
		}
		f.attach(sc)
		s.scorer, s.models = sc, f
		s.ops.AddCheck("scorer", sc.Ready)
		s.ops.AddDegradedCheck("model", f.Ready)
	}
	if r.monitor {
		// The monitor's state bucket is as replicated as the streams.
		mcfg := cfg.Monitor
		mcfg.Replicas = max(mcfg.Replicas, cfg.Streams.Replicas)
		mon, err := monitor.New(mcfg, js, subjects, reg, log)
		if err != nil {
			return nil, fmt.Errorf("creating monitor: %w", err)
		}
		s.monitor = mon
		s.ops.AddCheck("monitor", mon.Ready)
		n, err := webhook.New(cfg.Webhook, js, subjects, &http.Client{}, reg, log)
		if err != nil {
			return nil, fmt.Errorf("creating alert webhook notifier: %w", err)
		}
		s.notifier = n
		s.ops.AddCheck("alert_webhook", n.Ready)
	}
	s.ops.AddCheck("nats", func() error {
		if !nc.IsConnected() {
			return fmt.Errorf("not connected (%s)", nc.Status())
		}
		return nil
	})
	return s, nil
}

// run runs every component until ctx ends and each has drained. The ops
// server is run by the caller, which started it before connecting.
func (s *system) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	if s.scorer != nil {
		g.Go(func() error { return s.scorer.Run(gctx) })
		g.Go(func() error { return s.models.run(gctx) })
	}
	if s.monitor != nil {
		g.Go(func() error { return s.monitor.Run(gctx) })
		g.Go(func() error { return s.notifier.Run(gctx) })
	}
	return g.Wait()
}

// drainConn drains nc (flushing outstanding publishes) within timeout.
func drainConn(nc *nats.Conn, timeout time.Duration, log *slog.Logger) {
	done := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(done) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-done:
	case <-time.After(timeout):
		log.Warn("NATS connection drain timed out; closing", "timeout", timeout)
		nc.Close()
	}
}
