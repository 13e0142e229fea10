package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardiostream/cardiostream/internal/ctxtime"
	"github.com/cardiostream/cardiostream/internal/registry"
	"github.com/cardiostream/cardiostream/schemas"
	"github.com/cardiostream/cardiostream/scorer"
)

// A scorer's models follow the registry. At start, the active (and shadow)
// pointer's artifacts are fetched, verified and loaded; without an active
// pointer the embedded or MODEL_PATH model (the fallback) is used. Then every
// pointer change seen by registry.Watch is fetched, verified, loaded and
// handed to Scorer.SetModels, which switches between batches.
//
// A refused artifact (tampered, unsigned, missing, unloadable) never stops
// the scorer: it keeps serving the model it has (at start: the fallback),
// marks itself degraded (/readyz "model" check, gauge
// cardiostream_scorer_model_degraded), counts the refusal and appends an
// artifact_refused entry to AUDIT, which the monitor turns into an alert.
// While degraded it retries every refusedRetry, so a repaired artifact is
// picked up; each refused (version, sha256) is audited once per process.
//
// Every version pushed to the registry (up to maxCached) is prefetched,
// verified and loaded in the background as soon as its push completes, so
// an activation usually finds its model already loaded and the switch takes
// milliseconds instead of a fetch and a parse. A prefetched model was
// verified against the registry when it was fetched; a version that fails
// to prefetch is fetched again (and refused, audited) when a pointer names
// it.

// refusedRetry is how often a degraded scorer tries the refused pointers again.
const refusedRetry = 15 * time.Second

// maxCached bounds the models a scorer keeps loaded (served, previously
// served and prefetched).
const maxCached = 16

// Reasons of cardiostream_scorer_artifact_refusals_total.
var refusalReasons = []string{"tampered", "unsigned", "bad_signature", "not_found", "unloadable", "unavailable"}

func refusalReason(err error) string {
	switch {
	case errors.Is(err, registry.ErrTampered):
		return "tampered"
	case errors.Is(err, registry.ErrUnsigned):
		return "unsigned"
	case errors.Is(err, registry.ErrBadSignature):
		return "bad_signature"
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrIncomplete):
		return "not_found"
	case errors.Is(err, errUnloadable):
		return "unloadable"
	}
	return "unavailable"
}

var errUnloadable = errors.New("artifact does not load")

// servedModel is a model the scorer serves, with the registry key it came
// from ("" for the fallback).
type servedModel struct {
	key string // version@sha256
	m   scorer.Model
}

func (s *servedModel) version() string {
	if s == nil {
		return ""
	}
	return s.m.Ref().Version
}

type followerMetrics struct {
	degraded   prometheus.Gauge
	refusals   *prometheus.CounterVec
	switchTime prometheus.Histogram
	switchLast prometheus.Gauge
}

func newFollowerMetrics(reg prometheus.Registerer) (*followerMetrics, error) {
	m := &followerMetrics{
		degraded: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "cardiostream", Subsystem: "scorer", Name: "model_degraded",
			Help: "1 while a model artifact the registry points at is refused (the scorer serves the model it had), else 0."}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cardiostream", Subsystem: "scorer", Name: "artifact_refusals_total",
			Help: "Model artifacts refused (each version and sha256 once per process), by reason."}, []string{"reason"}),
		switchTime: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "cardiostream", Subsystem: "scorer", Name: "model_switch_seconds",
			Help:    "From a registry pointer change (its changed_at) to the scorer serving the new model.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}}),
		switchLast: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "cardiostream", Subsystem: "scorer", Name: "model_switch_last_seconds",
			Help: "The last model switch's time from pointer change to serving."}),
	}
	for _, r := range refusalReasons {
		m.refusals.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.degraded, m.refusals, m.switchTime, m.switchLast} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering model follower metrics: %w", err)
		}
	}
	return m, nil
}

// followerRegistry is what the follower uses of *registry.Registry. Unit
// tests of follow and apply pass a fake whose fetches they can fail, slow
// down and watch.
type followerRegistry interface {
	Pointers(ctx context.Context) (registry.Pointers, error)
	Watch(ctx context.Context) (<-chan registry.Pointers, error)
	Fetch(ctx context.Context, version string) (*registry.Artifact, error)
	Audit(ctx context.Context, e schemas.AuditEntry) error
}

// retryTicker is what follow uses of a *time.Ticker (the tick channel as a
// method, so a test can hand it ticks when it chooses).
type retryTicker interface {
	Ticks() <-chan time.Time
	Reset(d time.Duration)
	Stop()
}

type timeTicker struct{ *time.Ticker }

func (t timeTicker) Ticks() <-chan time.Time { return t.C }

func newTimeTicker(d time.Duration) retryTicker { return timeTicker{time.NewTicker(d)} }

// modelFollower keeps a scorer's models in line with the registry pointers.
type modelFollower struct {
	reg      followerRegistry
	js       jetstream.JetStream // for the prefetch watch of versions.> in the registry bucket
	bucket   string
	fallback scorer.Model
	actor    string
	log      *slog.Logger
	met      *followerMetrics

	// retryEvery is how long after an attempt ended a degraded follower
	// tries the refused pointers again (refusedRetry); newTicker makes the
	// ticker that says when (newTimeTicker). Unit tests replace them.
	retryEvery time.Duration
	newTicker  func(time.Duration) retryTicker

	// problem says why the scorer is degraded ("" when not); Ready reads it
	// without waiting for an apply in progress (which may be fetching).
	problem atomic.Pointer[string]

	mu      sync.Mutex // guards what follows (apply, attach)
	sc      *scorer.Scorer
	active  *servedModel
	shadow  *servedModel // nil: no shadow
	cache   map[string]scorer.Model
	counted map[string]bool // refused keys already logged and counted
	audited map[string]bool // refused keys already in AUDIT
}

func newModelFollower(reg *registry.Registry, js jetstream.JetStream, fallback scorer.Model, actor string, promReg prometheus.Registerer, log *slog.Logger) (*modelFollower, error) {
	return newFollower(reg, js, reg.Config().PointersBucket, fallback, actor, promReg, log)
}

// newFollower is newModelFollower on any followerRegistry (js and bucket
// serve only run's prefetch).
func newFollower(reg followerRegistry, js jetstream.JetStream, bucket string, fallback scorer.Model, actor string, promReg prometheus.Registerer, log *slog.Logger) (*modelFollower, error) {
	met, err := newFollowerMetrics(promReg)
	if err != nil {
		return nil, err
	}
	return &modelFollower{
		reg: reg, js: js, bucket: bucket, fallback: fallback, actor: actor, met: met,
		log:        log.With("component", "model_follower"),
		retryEvery: refusedRetry, newTicker: newTimeTicker,
		active: &servedModel{m: fallback},
		cache:  map[string]scorer.Model{}, counted: map[string]bool{}, audited: map[string]bool{},
	}, nil
}

// scorerActor names this process in audit entries.
func scorerActor(name string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s@%s pid %d", name, host, os.Getpid())
}

// initial loads what the registry points at now, before the scorer exists,
// and returns the models to create it with.
func (f *modelFollower) initial(ctx context.Context) (active, shadow scorer.Model) {
	p, err := f.reg.Pointers(ctx)
	if err != nil {
		f.log.Warn("cannot read the registry pointers; starting with the fallback model, following the registry once it answers",
			"err", err, "model_version", f.fallback.Ref().Version)
	} else {
		f.apply(ctx, p)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.shadow != nil {
		shadow = f.shadow.m
	}
	return f.active.m, shadow
}

// attach hands the scorer to the follower; later changes go to SetModels.
func (f *modelFollower) attach(sc *scorer.Scorer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sc = sc
}

// Ready reports the degradation: nil when every pointer's artifact is served.
func (f *modelFollower) Ready() error {
	if p := f.problem.Load(); p != nil && *p != "" {
		return errors.New(*p)
	}
	return nil
}

// run follows the registry pointers (and prefetches pushed versions) until
// ctx ends.
func (f *modelFollower) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { f.prefetch(ctx) })
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		ch, err := f.reg.Watch(ctx)
		if err != nil {
			f.log.Warn("watching the registry failed; retrying", "err", err)
			if !ctxtime.Sleep(ctx, backoff) {
				break
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		f.follow(ctx, ch)
	}
	return nil
}

// follow applies every pointer state from ch, and retries refused ones
// while degraded, until ch closes or ctx ends. A new pointer state always
// goes before a retry: a retry of an unreachable artifact can take the
// whole registry.timeout, and a tick that came meanwhile must not win
// against the pointer moving on (it did, at random, under -race: the
// scorer kept retrying 1.1.0 for minutes after the pointer went back).
func (f *modelFollower) follow(ctx context.Context, ch <-chan registry.Pointers) {
	retry := f.newTicker(f.retryEvery)
	defer retry.Stop()
	var last *registry.Pointers
	for {
		select {
		case <-ctx.Done():
			return
		case p, ok := <-ch:
			if !ok {
				return
			}
			last = &p
		case <-retry.Ticks():
			select {
			case p, ok := <-ch:
				if !ok {
					return
				}
				last = &p
			default:
				if last == nil || f.Ready() == nil {
					continue
				}
			}
		}
		f.apply(ctx, *last)
		retry.Reset(f.retryEvery) // the next retry comes retryEvery after this attempt ended
	}
}

// apply makes the scorer serve what p points at, as far as the artifacts
// allow; see the comment at the top of this file.
func (f *modelFollower) apply(ctx context.Context, p registry.Pointers) {
	if p.Active != nil {
		f.log.Debug("registry pointers", "active", p.Active.Version, "changed_at", p.Active.ChangedAt, "seen_after_ms", time.Since(p.Active.ChangedAt).Milliseconds())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var problems []string
	active, shadow := f.active, f.shadow
	var changed []*registry.Pointer
	if p.Active != nil && pointerKey(p.Active) != f.active.key {
		m, err := f.load(ctx, p.Active)
		if err != nil && ctx.Err() != nil {
			return // shutting down: a fetch cut short is no refusal (no log, count, audit or degradation)
		}
		if err != nil {
			problems = append(problems, f.refuse(ctx, "active", p.Active, f.active.version(), err))
		} else {
			active = &servedModel{key: pointerKey(p.Active), m: m}
			changed = append(changed, p.Active)
		}
	}
	switch {
	case p.Shadow == nil:
		shadow = nil
	case p.Shadow.Version == active.version():
		// The shadow was promoted (activated) and its pointer not yet
		// removed: scoring every record twice by one model tells nothing.
		shadow = nil
	case f.shadow == nil || pointerKey(p.Shadow) != f.shadow.key:
		m, err := f.load(ctx, p.Shadow)
		if err != nil && ctx.Err() != nil {
			return // shutting down: a fetch cut short is no refusal (no log, count, audit or degradation)
		}
		if err != nil {
			problems = append(problems, f.refuse(ctx, "shadow", p.Shadow, f.shadow.version(), err))
		} else {
			shadow = &servedModel{key: pointerKey(p.Shadow), m: m}
			changed = append(changed, p.Shadow)
		}
	}
	if active != f.active || shadow != f.shadow {
		var sm scorer.Model
		if shadow != nil {
			sm = shadow.m
		}
		if f.sc != nil {
			if err := f.sc.SetModels(active.m, sm); err != nil {
				// Only a threshold out of range gets here: the loader checks it.
				problems = append(problems, fmt.Sprintf("the scorer refused the models: %v", err))
				active, shadow = f.active, f.shadow
				changed = nil
			}
		}
		f.active, f.shadow = active, shadow
		var since time.Duration
		for _, c := range changed {
			if c.ChangedAt.IsZero() {
				continue
			}
			since = max(time.Since(c.ChangedAt), 0)
			f.met.switchTime.Observe(since.Seconds())
			f.met.switchLast.Set(since.Seconds())
		}
		f.log.Info("serving models", "model_version", active.version(), "shadow_version", shadow.version(),
			"since_pointer_change_ms", since.Milliseconds())
	}
	problem := strings.Join(problems, "; ")
	f.problem.Store(&problem)
	if problem != "" {
		f.met.degraded.Set(1)
	} else {
		f.met.degraded.Set(0)
	}
}

func pointerKey(p *registry.Pointer) string { return p.Version + "@" + strings.ToLower(p.SHA256) }

// load returns a pointer's model: from the cache (served before, or
// prefetched), else fetched, verified and loaded. f.mu is held.
func (f *modelFollower) load(ctx context.Context, p *registry.Pointer) (scorer.Model, error) {
	key := pointerKey(p)
	if m, ok := f.cache[key]; ok {
		return m, nil
	}
	m, err := f.fetchLoad(ctx, p, false)
	if err != nil {
		return nil, err
	}
	f.cache[key] = m
	return m, nil
}

// prefetch watches the registry's version metadata and warms the cache with
// every version whose push is complete, until ctx ends.
func (f *modelFollower) prefetch(ctx context.Context) {
	for ctx.Err() == nil {
		kv, err := f.js.KeyValue(ctx, f.bucket)
		if err != nil {
			if !ctxtime.Sleep(ctx, 5*time.Second) {
				return
			}
			continue
		}
		w, err := kv.WatchFiltered(ctx, []string{registry.VersionKey(">")})
		if err != nil {
			if !ctxtime.Sleep(ctx, 5*time.Second) {
				return
			}
			continue
		}
		f.warmFrom(ctx, w)
		_ = w.Stop()
	}
}

func (f *modelFollower) warmFrom(ctx context.Context, w jetstream.KeyWatcher) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				_ = ctxtime.Sleep(ctx, time.Second)
				return
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var md registry.Metadata
			if json.Unmarshal(e.Value(), &md) != nil || md.State != registry.StateReady || md.Version == "" {
				continue
			}
			f.warm(ctx, &registry.Pointer{Version: md.Version, SHA256: md.SHA256})
		}
	}
}

// warm loads p's model into the cache unless it is there or the cache is full.
func (f *modelFollower) warm(ctx context.Context, p *registry.Pointer) {
	key := pointerKey(p)
	f.mu.Lock()
	_, have := f.cache[key]
	full := len(f.cache) >= maxCached
	f.mu.Unlock()
	if have || full {
		return
	}
	m, err := f.fetchLoad(ctx, p, true)
	if err != nil {
		if ctx.Err() == nil {
			f.log.Warn("prefetching a model version failed; it is fetched again, and refused if it still fails, when a pointer names it",
				"version", p.Version, "reason", refusalReason(err), "err", err)
		}
		return
	}
	f.mu.Lock()
	f.cache[key] = m
	f.mu.Unlock()
}

// fetchLoad fetches p's artifact, verifies it against the registry (and
// the pointer's sha256) and loads it.
func (f *modelFollower) fetchLoad(ctx context.Context, p *registry.Pointer, prefetch bool) (scorer.Model, error) {
	began := time.Now()
	a, err := f.reg.Fetch(ctx, p.Version)
	if err != nil {
		return nil, err
	}
	fetched := time.Now()
	if !strings.EqualFold(a.SHA256, p.SHA256) {
		return nil, fmt.Errorf("%w: the pointer names sha256 %s for version %s, the registry's metadata %s", registry.ErrTampered, p.SHA256, p.Version, a.SHA256)
	}
	m, err := a.Load()
	if err != nil {
		if !errors.Is(err, registry.ErrTampered) {
			err = fmt.Errorf("%w: %w", errUnloadable, err)
		}
		return nil, err
	}
	f.log.Info("model artifact fetched, verified and loaded", "version", p.Version, "sha256", p.SHA256, "prefetch", prefetch,
		"fetch_ms", fetched.Sub(began).Milliseconds(), "load_ms", time.Since(fetched).Milliseconds(), "signed", a.Signed)
	return scorerModel{m}, nil
}

// refuse records a refused artifact (once per version and sha256): log,
// counter, audit entry. It returns the degradation text.
func (f *modelFollower) refuse(ctx context.Context, role string, p *registry.Pointer, serving string, err error) string {
	key := pointerKey(p)
	reason := refusalReason(err)
	what := fmt.Sprintf("%s model %s refused (%s); serving %s", role, p.Version, reason, orNone(serving))
	if !f.counted[key] {
		f.counted[key] = true
		f.log.Error("model artifact refused; keeping the current model", "role", role, "version", p.Version,
			"sha256", p.SHA256, "reason", reason, "serving", serving, "err", err)
		f.met.refusals.WithLabelValues(reason).Inc()
	}
	if f.audited[key] {
		return what
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	aerr := f.reg.Audit(actx, schemas.AuditEntry{
		Action: schemas.AuditArtifactRefused, Actor: f.actor, FromVersion: serving, ToVersion: p.Version,
		SHA256: p.SHA256, Reason: reason + " (" + role + " pointer)", Details: []string{err.Error()},
	})
	if aerr != nil {
		f.log.Warn("could not audit the refused artifact; retrying with the next attempt", "err", aerr)
		return what
	}
	f.audited[key] = true
	return what
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
