package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cardiostream/cardiostream/internal/registry"
	"github.com/cardiostream/cardiostream/schemas"
)

// The follow loop's ordering, without a NATS server and without waiting on
// the wall clock: each case runs in a testing/synctest bubble (fake time,
// synctest.Wait until the follower is blocked), the registry is a fake that
// serves the real 1.0.0 and 1.1.0 artifacts or fails, slows down or blocks a
// fetch as the case says, and apply, load, refuse and the retry ticker are
// the production ones: time.Ticker and refusedRetry, on the bubble's clock.
// Some cases of TestFollowNewStateGoesBeforeARetry hand ticks in by hand
// (manualTicker): with time.Ticker, the Reset after each attempt drops a
// tick that came during it, so only a hand-made tick can be pending at the
// select together with a new state, the case follow's inner select is for.

// errUnreachable stands for an object store that does not answer.
var errUnreachable = errors.New("object store unreachable")

// fetchCall is one Fetch the follower made, on the bubble's clock.
type fetchCall struct {
	version      string
	began, ended time.Time
}

// fakeRegistry serves artifacts from memory. A version's fetch behaves as
// set by serve, refuse, slow or hold; a version with none set is not found.
type fakeRegistry struct {
	mu     sync.Mutex
	fetch  map[string]func(ctx context.Context) (*registry.Artifact, error)
	calls  []fetchCall
	audits []schemas.AuditEntry
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{fetch: map[string]func(context.Context) (*registry.Artifact, error){}}
}

func (r *fakeRegistry) Pointers(context.Context) (registry.Pointers, error) {
	return registry.Pointers{}, errors.New("fakeRegistry: Pointers is not used by follow")
}

func (r *fakeRegistry) Watch(context.Context) (<-chan registry.Pointers, error) {
	return nil, errors.New("fakeRegistry: Watch is not used by follow")
}

func (r *fakeRegistry) Fetch(ctx context.Context, version string) (*registry.Artifact, error) {
	r.mu.Lock()
	fn := r.fetch[version]
	r.mu.Unlock()
	began := time.Now()
	a, err := (*registry.Artifact)(nil), fmt.Errorf("%w: version %s", registry.ErrNotFound, version)
	if fn != nil {
		a, err = fn(ctx)
	}
	r.mu.Lock()
	r.calls = append(r.calls, fetchCall{version: version, began: began, ended: time.Now()})
	r.mu.Unlock()
	return a, err
}

// Audit fails like the registry's when ctx has ended.
func (r *fakeRegistry) Audit(ctx context.Context, e schemas.AuditEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.audits = append(r.audits, e)
	return nil
}

func (r *fakeRegistry) set(version string, fn func(ctx context.Context) (*registry.Artifact, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fetch[version] = fn
}

// serve makes a's version fetch fine.
func (r *fakeRegistry) serve(a *registry.Artifact) {
	r.set(a.Version, func(context.Context) (*registry.Artifact, error) { return a, nil })
}

// slow makes version's fetch take d, then fail with err (ctx ending first
// fails it with ctx's error, as the registry's fetch does).
func (r *fakeRegistry) slow(version string, d time.Duration, err error) {
	r.set(version, func(ctx context.Context) (*registry.Artifact, error) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
}

// hold makes version's fetch block until release is closed (or ctx ends),
// then fail with errUnreachable.
func (r *fakeRegistry) hold(version string, release <-chan struct{}) {
	r.set(version, func(ctx context.Context) (*registry.Artifact, error) {
		select {
		case <-release:
			return nil, errUnreachable
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
}

// fetches returns the fetches of version made so far.
func (r *fakeRegistry) fetches(version string) []fetchCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []fetchCall
	for _, c := range r.calls {
		if c.version == version {
			out = append(out, c)
		}
	}
	return out
}

func (r *fakeRegistry) auditedVersions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.audits {
		out = append(out, e.ToVersion)
	}
	return out
}

// testArtifacts reads the repository's 1.0.0 and 1.1.0 artifacts as the
// registry would hand them out, keyed by version.
var testArtifacts = sync.OnceValues(func() (map[string]*registry.Artifact, error) {
	out := map[string]*registry.Artifact{}
	for version, dir := range map[string]string{"1.0.0": artifactV100, "1.1.0": artifactV110} {
		la, err := registry.ReadArtifact(dir)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(la.Model)
		out[version] = &registry.Artifact{Version: version, SHA256: hex.EncodeToString(sum[:]), Model: la.Model, Manifest: la.Manifest, Golden: la.Golden}
	}
	return out, nil
})

// fallbackModel stands for the embedded model a scorer starts with.
type fallbackModel struct{}

func (fallbackModel) Predict(*[schemas.NumFeatures]float64) float64 { return 0.5 }
func (fallbackModel) Ref() schemas.ModelRef {
	return schemas.ModelRef{Name: "fallback", Version: "fallback"}
}
func (fallbackModel) Threshold() float64 { return 0.5 }

// manualTicker is a retryTicker whose ticks the test sends. Reset leaves a
// tick already sent in place: a tick that came in the instant an attempt
// ended, which the select then sees together with a new pointer state.
type manualTicker struct{ c chan time.Time }

func (m *manualTicker) Ticks() <-chan time.Time { return m.c }
func (m *manualTicker) Reset(time.Duration)     {}
func (m *manualTicker) Stop()                   {}

// followRun is a follower running follow in the current bubble.
type followRun struct {
	f      *modelFollower
	reg    *fakeRegistry
	arts   map[string]*registry.Artifact
	ch     chan registry.Pointers
	cancel context.CancelFunc
	done   chan struct{}
}

// startFollow starts follow in the current bubble, after configure (when
// not nil) changed the follower; else it runs with the production ticker
// (on the bubble's clock) and refusedRetry.
func startFollow(t *testing.T, reg *fakeRegistry, configure func(f *modelFollower)) *followRun {
	t.Helper()
	arts, err := testArtifacts()
	if err != nil {
		t.Fatal(err)
	}
	f, err := newFollower(reg, nil, "", fallbackModel{}, "follower-test", prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if configure != nil {
		configure(f)
	}
	ctx, cancel := context.WithCancel(t.Context())
	r := &followRun{f: f, reg: reg, arts: arts, ch: make(chan registry.Pointers, 1), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		f.follow(ctx, r.ch)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// point sends the state "active = version", replacing an undelivered state
// as registry.Watch does, and waits until the follower is blocked again.
func (r *followRun) point(version string) {
	p := &registry.Pointer{Version: version, SHA256: "00" + version, ChangedAt: time.Now()}
	if a := r.arts[version]; a != nil {
		p.SHA256 = a.SHA256
	}
	select {
	case <-r.ch:
	default:
	}
	r.ch <- registry.Pointers{Active: p}
	synctest.Wait()
}

// serving returns the version the follower serves, once it is blocked. A
// follower blocked holding f.mu is in the middle of an apply (a fetch that
// waits for the clock); the bubble's clock cannot move while the test waits
// for a mutex, so that fails the test instead of hanging it.
func (r *followRun) serving(t *testing.T) string {
	t.Helper()
	synctest.Wait()
	if !r.f.mu.TryLock() {
		t.Fatal("the follower is in the middle of an apply; want it idle")
	}
	defer r.f.mu.Unlock()
	return r.f.active.version()
}

// refusals is cardiostream_scorer_artifact_refusals_total over every reason.
func (r *followRun) refusals() float64 {
	var n float64
	for _, reason := range refusalReasons {
		n += testutil.ToFloat64(r.f.met.refusals.WithLabelValues(reason))
	}
	return n
}

// exited reports whether follow has returned.
func (r *followRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// wantServing fails t unless the follower serves version and is degraded
// exactly when degraded says.
func (r *followRun) wantServing(t *testing.T, version string, degraded bool) {
	t.Helper()
	if got := r.serving(t); got != version {
		t.Errorf("serving %s, want %s", got, version)
	}
	if err := r.f.Ready(); (err != nil) != degraded {
		t.Errorf("Ready() = %v, want degraded %v", err, degraded)
	}
}

// TestFollowNewStateGoesBeforeARetry: while the follower is busy with an
// attempt at a refused 1.1.0 (a fetch that hangs on an unreachable object
// store), the pointer goes back to 1.0.0 and a retry tick comes. When the
// attempt ends, the next thing applied must be the new state (1.0.0), not a
// second attempt at 1.1.0. On the code before 4943596 the select picked the
// tick half of the time; each case runs trials times so that such a
// follower fails it (with probability 1 - 2^-trials).
func TestFollowNewStateGoesBeforeARetry(t *testing.T) {
	const trials = 16
	cases := []struct {
		name string
		// manual hands the ticks in by hand (see manualTicker); else the
		// production ticker runs on the bubble's clock.
		manual bool
		// during runs while the 1.1.0 fetch hangs, after the follower
		// started it; tick sends a tick (manual) or lets one come.
		during func(r *followRun, tick func())
	}{
		{
			name: "tick and new state pending together when the attempt ends", manual: true,
			during: func(r *followRun, tick func()) { tick(); r.point("1.0.0") },
		},
		{
			name: "new state pending, then a tick, when the attempt ends", manual: true,
			during: func(r *followRun, tick func()) { r.point("1.0.0"); tick() },
		},
		{
			name: "ticks come during a 20 s hang, then the new state",
			during: func(r *followRun, tick func()) {
				time.Sleep(20 * time.Second) // past refusedRetry: the production ticker ticked
				r.point("1.0.0")
			},
		},
		{
			name: "new state at once, then ticks during a 40 s hang",
			during: func(r *followRun, tick func()) {
				r.point("1.0.0")
				time.Sleep(40 * time.Second)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for range trials {
				synctest.Test(t, func(t *testing.T) {
					reg := newFakeRegistry()
					mt := &manualTicker{c: make(chan time.Time, 1)}
					var configure func(f *modelFollower)
					if tc.manual {
						configure = func(f *modelFollower) { f.newTicker = func(time.Duration) retryTicker { return mt } }
					}
					r := startFollow(t, reg, configure)
					reg.serve(r.arts["1.0.0"])
					r.point("1.0.0")
					r.wantServing(t, "1.0.0", false)

					release := make(chan struct{})
					reg.hold("1.1.0", release)
					r.point("1.1.0") // the follower is now fetching 1.1.0
					if n := len(reg.fetches("1.1.0")); n != 0 {
						t.Fatalf("the 1.1.0 fetch returned before it was released (%d fetches)", n)
					}
					tc.during(r, func() { mt.c <- time.Now() })
					close(release)
					synctest.Wait()

					if n := len(reg.fetches("1.1.0")); n != 1 {
						t.Fatalf("1.1.0 fetched %d times after the pointer went back to 1.0.0; want 1 (a retry went before the new state)", n)
					}
					r.wantServing(t, "1.0.0", false)
					// Not degraded any more: no retry of 1.1.0 ever again.
					time.Sleep(10 * refusedRetry)
					if n := len(reg.fetches("1.1.0")); n != 1 {
						t.Fatalf("1.1.0 fetched %d times while 1.0.0 is served cleanly; want 1", n)
					}
				})
				if t.Failed() {
					return
				}
			}
		})
	}
}

// TestFollowRetriesRefusedArtifact: while degraded the follower tries the
// refused pointer again retryEvery after the previous attempt ended, however
// long the attempt took, and stops once the pointer's artifact is served; a
// follower that is not degraded never retries.
func TestFollowRetriesRefusedArtifact(t *testing.T) {
	cases := []struct {
		name string
		// fetch makes the 1.1.0 fetch fail (taking its time) until repaired.
		fetch    func(reg *fakeRegistry)
		failures int // attempts that fail before the artifact is repaired
		// every is the follower's retryEvery; 0 leaves refusedRetry.
		every time.Duration
	}{
		{name: "refused at once (not found)", fetch: func(reg *fakeRegistry) {
			reg.slow("1.1.0", 0, fmt.Errorf("%w: version 1.1.0", registry.ErrNotFound))
		}, failures: 4},
		{name: "each attempt hangs 5 s", fetch: func(reg *fakeRegistry) { reg.slow("1.1.0", 5*time.Second, errUnreachable) }, failures: 4},
		{name: "each attempt hangs 30 s (longer than refusedRetry)", fetch: func(reg *fakeRegistry) {
			reg.slow("1.1.0", 30*time.Second, errUnreachable)
		}, failures: 3},
		{name: "retryEvery 1 min, each attempt hangs 5 s", fetch: func(reg *fakeRegistry) { reg.slow("1.1.0", 5*time.Second, errUnreachable) }, failures: 3, every: time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reg := newFakeRegistry()
				every := refusedRetry
				if tc.every != 0 {
					every = tc.every
				}
				r := startFollow(t, reg, func(f *modelFollower) { f.retryEvery = every })
				reg.serve(r.arts["1.0.0"])
				r.point("1.0.0")
				// Not degraded: no retries, however long.
				time.Sleep(5 * every)
				if n := len(reg.fetches("1.0.0")); n != 1 {
					t.Fatalf("1.0.0 fetched %d times while served cleanly; want 1", n)
				}

				tc.fetch(reg)
				r.point("1.1.0")
				for deadline := time.Now().Add(10 * every * time.Duration(tc.failures)); len(reg.fetches("1.1.0")) < tc.failures; {
					if time.Now().After(deadline) {
						t.Fatalf("1.1.0 fetched %d times within %v (bubble clock), want %d", len(reg.fetches("1.1.0")), 10*every*time.Duration(tc.failures), tc.failures)
					}
					time.Sleep(time.Second)
				}
				r.wantServing(t, "1.0.0", true)
				// Repair 1.1.0 (while the next attempt is not running: each
				// attempt is a fresh call to the fetch set now).
				reg.serve(r.arts["1.1.0"])
				for deadline := time.Now().Add(10 * every); len(reg.fetches("1.1.0")) <= tc.failures; {
					if time.Now().After(deadline) {
						t.Fatalf("the repaired 1.1.0 was not fetched within %v (bubble clock)", 10*every)
					}
					time.Sleep(time.Second)
				}
				r.wantServing(t, "1.1.0", false)

				calls := reg.fetches("1.1.0")
				if len(calls) != tc.failures+1 {
					t.Fatalf("1.1.0 fetched %d times, want %d failures and the repaired one", len(calls), tc.failures)
				}
				for i := 1; i < len(calls); i++ {
					if gap := calls[i].began.Sub(calls[i-1].ended); gap != every {
						t.Errorf("attempt %d began %v after attempt %d ended; want retryEvery (%v)", i+1, gap, i, every)
					}
				}
				// Served cleanly: the retries stop.
				time.Sleep(10 * every)
				if n := len(reg.fetches("1.1.0")); n != tc.failures+1 {
					t.Errorf("1.1.0 fetched %d times after it was served; want no more than %d", n, tc.failures+1)
				}
				// Each refused (version, sha256) is audited once.
				if got := reg.auditedVersions(); !slices.Equal(got, []string{"1.1.0"}) {
					t.Errorf("audited refusals of %v, want [1.1.0] once", got)
				}
			})
		})
	}
}

// TestFollowReturnsPromptly: follow returns, without any time passing on
// the bubble's clock, when its channel closes or its context ends, idle,
// degraded or in the middle of a fetch; synctest.Test fails the case if the
// goroutine (or one it started) is left behind.
func TestFollowReturnsPromptly(t *testing.T) {
	cases := []struct {
		name  string
		setup func(r *followRun)
		stop  func(r *followRun)
	}{
		{name: "channel closes, idle", stop: func(r *followRun) { close(r.ch) }},
		{name: "context ends, idle", stop: func(r *followRun) { r.cancel() }},
		{
			name:  "channel closes, degraded (retry ticker running)",
			setup: func(r *followRun) { r.point("9.9.9") },
			stop:  func(r *followRun) { close(r.ch) },
		},
		{
			name:  "context ends, degraded (retry ticker running)",
			setup: func(r *followRun) { r.point("9.9.9") },
			stop:  func(r *followRun) { r.cancel() },
		},
		{
			name: "context ends during a hanging fetch",
			setup: func(r *followRun) {
				r.reg.hold("1.1.0", make(chan struct{}))
				r.point("1.1.0")
			},
			stop: func(r *followRun) { r.cancel() },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reg := newFakeRegistry()
				r := startFollow(t, reg, nil)
				reg.serve(r.arts["1.0.0"])
				r.point("1.0.0")
				if tc.setup != nil {
					tc.setup(r)
				}
				time.Sleep(refusedRetry / 2)
				synctest.Wait()
				if r.exited() {
					t.Fatal("follow returned before it was stopped")
				}
				readyBefore, refusalsBefore := r.f.Ready(), r.refusals()
				began := time.Now()
				tc.stop(r)
				synctest.Wait()
				if !r.exited() {
					t.Fatal("follow did not return once stopped (nothing left to wait for but the clock)")
				}
				if d := time.Since(began); d != 0 {
					t.Errorf("follow returned %v (bubble clock) after it was stopped; want at once", d)
				}
				// A fetch cut short by the shutdown is no refusal: /readyz and
				// the refusal counter stay as they were.
				if got := r.f.Ready(); fmt.Sprint(got) != fmt.Sprint(readyBefore) {
					t.Errorf("Ready() = %v after the stop, %v before", got, readyBefore)
				}
				if got := r.refusals(); got != refusalsBefore {
					t.Errorf("cardiostream_scorer_artifact_refusals_total = %v after the stop, %v before", got, refusalsBefore)
				}
			})
		})
	}
}
