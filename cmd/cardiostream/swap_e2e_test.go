package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/registry"
	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

// Model artifacts committed in the repository, as the tests see them.
const (
	artifactV100 = "../../models/heart-xgb"
	artifactV110 = "../../models/heart-xgb-1.1.0"
)

// lifecycle runs `cardiostream model ARGS --json` against url and decodes
// its JSON into out (when not nil).
func lifecycle(t testing.TB, url string, out any, args ...string) {
	t.Helper()
	code, stdout, stderr := runCmd(t, testEnviron("USER=tester"), append(append([]string{"model"}, args...), "--json", "--nats-url", url)...)
	if code != 0 {
		t.Fatalf("model %v: exit %d\n%s", args, code, stderr)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(stdout), out); err != nil {
			t.Fatalf("model %v: %v\n%s", args, err, stdout)
		}
	}
}

// waitServing waits until the scorer at addr reports version as its active
// model (and shadow as its shadow, "" for none).
func waitServing(t testing.TB, addr, version, shadow string) {
	t.Helper()
	natstest.Eventually(t, 90*time.Second, func() error {
		fams := scrape(t, addr)
		if v, _ := metricValue(fams, "cardiostream_scorer_model_info", "version", version); v != 1 {
			return fmt.Errorf("scorer does not serve %s yet", version)
		}
		n, _ := metricValue(fams, "cardiostream_scorer_shadow_model_info")
		if shadow == "" && n != 0 {
			return fmt.Errorf("scorer still has a shadow")
		}
		if v, _ := metricValue(fams, "cardiostream_scorer_shadow_model_info", "version", shadow); shadow != "" && v != 1 {
			return fmt.Errorf("scorer has no shadow %s yet", shadow)
		}
		return nil
	})
}

// syntheticRecord is a valid record for index i.
func syntheticRecord(i int) []byte {
	return fmt.Appendf(nil, `{"id":"r-%06d","features":{"age":%d,"sex":%d,"cp":%d,"trestbps":%d,"chol":%d,"fbs":0,"restecg":%d,"thalach":%d,"exang":%d,"oldpeak":%.1f,"slope":%d,"ca":%d,"thal":%d}}`,
		i, 30+i%50, i%2, 1+i%4, 110+i%50, 180+i%120, i%3, 100+i%90, (i/3)%2, float64(i%40)/10, 1+i%3, i%4, []int{3, 6, 7}[i%3])
}

// mainPredictions reads the predictions on <prefix>.predictions.<source>
// and the shadow ones, failing on a shadow prediction on a main subject or
// the reverse.
func mainAndShadowPredictions(t testing.TB, js jetstream.JetStream) (main, shadow []schemas.Prediction) {
	t.Helper()
	subj := schemas.NewSubjects("")
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamPredictions) {
		var p schemas.Prediction
		if err := json.Unmarshal(m.Data(), &p); err != nil {
			t.Fatalf("prediction: %v", err)
		}
		if src, ok := subj.SourceOf(schemas.ShadowKind, m.Subject()); ok {
			if src != p.Source {
				t.Errorf("shadow prediction of source %s on %s", p.Source, m.Subject())
			}
			shadow = append(shadow, p)
			continue
		}
		if src, ok := subj.SourceOf("predictions", m.Subject()); !ok || src != p.Source {
			t.Errorf("prediction of source %s on %s", p.Source, m.Subject())
		}
		main = append(main, p)
	}
	return main, shadow
}

// hotSwapLoad configures runHotSwap.
type hotSwapLoad struct {
	scorers int // scorer processes sharing the consumer
	// minRecords is the least number of records published; publishing goes
	// on, unpaced, until the rollback is served and tail more records are
	// published.
	minRecords, tail int
	// backlog bounds the records published but not yet scored: the
	// publisher runs unpaced while fewer are unscored, so the scorers drain
	// a backlog for the whole run instead of waiting for records.
	backlog int
	// activateAt and rollbackAfter: 1.1.0 is activated once activateAt
	// predictions are stored, and rolled back once rollbackAfter more are.
	activateAt, rollbackAfter int
}

// switchFigures is one pointer change seen from one scorer.
type switchFigures struct {
	metricMS float64 // the scorer's cardiostream_scorer_model_switch_last_seconds
	// From the outputs, relative to the pointer's changed_at: the scored_at
	// of the last first-delivery prediction by the old version and of the
	// first by the new one.
	lastOldMS, firstNewMS float64
	oldAfter              int // first-delivery predictions by the old version scored after changed_at
}

// runHotSwap: records flow, unpaced, through load.scorers scorer processes
// sharing the consumer, with a backlog waiting all along; 1.1.0 is
// activated, then rolled back. Read back from the streams: exactly one
// prediction per record, no dead letter, no shadow prediction; each
// prediction names (in its Cardiostream-Scorer header) one of the scorer
// processes; along each scorer's first-delivery predictions, in the order
// it scored them, the versions run 1.0.0, 1.1.0, 1.0.0 (so every scorer
// switched both times and scored with the new version); no 1.1.0
// prediction was made before the activation's changed_at, none of the last
// run before the rollback's. The switch is measured by each scorer's own
// metric and from the outputs; both must stay under switchBound.
func runHotSwap(t *testing.T, load hotSwapLoad) {
	ns := natstest.RunServer(t)
	url := ns.ClientURL()
	nc, js := natstest.Connect(t, ns)
	natstest.EnsureStreams(t, js, nil)
	lifecycle(t, url, nil, "push", artifactV100, "--version", "1.0.0")
	lifecycle(t, url, nil, "push", artifactV110, "--version", "1.1.0")
	lifecycle(t, url, nil, "activate", "1.0.0", "--reason", "initial")
	pubJS, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2*load.backlog), jetstream.WithPublishAsyncTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	procs := make([]*process, load.scorers)
	byPID := map[string]int{}
	for i := range procs {
		procs[i] = startProcess(t, "scorer", "--nats-url", url, "--log-level", "debug")
		byPID[strconv.Itoa(procs[i].cmd.Process.Pid)] = i
	}
	for _, p := range procs {
		waitServing(t, p.metricsAddr, "1.0.0", "")
	}
	defer func() { // each follower's view of the switches: pointer seen, serving
		if !t.Failed() && !testing.Verbose() {
			return
		}
		for i, p := range procs {
			for _, l := range strings.Split(p.stderr.String(), "\n") {
				if strings.Contains(l, "model_follower") {
					t.Logf("scorer %d: %s", i, l)
				}
			}
		}
	}()
	consumer, err := js.Consumer(ctx, schemas.StreamRecords, streams.ConsumerScorer)
	if err != nil {
		t.Fatal(err)
	}
	// Records stored but not yet acked: waiting on the server, or delivered
	// and waiting in a scorer's buffers (up to max_ack_pending, 10,000).
	type sample struct {
		at       time.Time
		unscored int
	}
	var samplesMu sync.Mutex
	var samples []sample // every unscored() answer, to tell a stop of the scorers with records waiting from one without
	unscored := func() int {
		info, err := consumer.Info(ctx)
		if err != nil {
			t.Errorf("consumer info: %v", err)
			return 0
		}
		n := int(info.NumPending) + info.NumAckPending
		samplesMu.Lock()
		samples = append(samples, sample{time.Now(), n})
		samplesMu.Unlock()
		return n
	}
	stored := func() int { // predictions in PREDICTIONS
		s, err := js.Stream(ctx, schemas.StreamPredictions)
		if err != nil {
			t.Fatal(err)
		}
		return int(s.CachedInfo().State.Msgs)
	}

	// The publisher: unpaced while fewer than load.backlog records are unscored,
	// until `target` records are published.
	var published, target atomic.Int64
	target.Store(math.MaxInt64)
	var pub sync.WaitGroup
	pubErr := make(chan error, 1)
	began := time.Now()
	pub.Go(func() {
		for i := 0; int64(i) < target.Load(); i++ {
			if i%1000 == 0 {
				for ctx.Err() == nil && unscored()+pubJS.PublishAsyncPending() >= load.backlog {
					time.Sleep(5 * time.Millisecond)
				}
			}
			if _, err := pubJS.PublishAsync("cardio.records.load", syntheticRecord(i), jetstream.WithMsgID(fmt.Sprintf("load/r-%06d", i))); err != nil {
				pubErr <- err
				return
			}
			published.Add(1)
		}
		select {
		case <-pubJS.PublishAsyncComplete():
		case <-time.After(2 * time.Minute):
			pubErr <- fmt.Errorf("publish acks outstanding after 2m")
		}
	})
	storedAtLeast := func(k int) {
		natstest.Eventually(t, 3*time.Minute, func() error {
			select {
			case err := <-pubErr:
				t.Fatal(err)
			default:
			}
			if n := stored(); n < k {
				return fmt.Errorf("%d of %d predictions stored", n, k)
			}
			return nil
		})
	}
	switchMS := func() []float64 {
		out := make([]float64, len(procs))
		for i, p := range procs {
			out[i] = 1000 * mustMetric(t, scrape(t, p.metricsAddr), "cardiostream_scorer_model_switch_last_seconds")
		}
		return out
	}

	storedAtLeast(load.activateAt)
	var act registry.ChangeResult
	lifecycle(t, url, &act, "activate", "1.1.0", "--reason", "canary")
	backlogAtActivate := unscored()
	for _, p := range procs {
		waitServing(t, p.metricsAddr, "1.1.0", "")
	}
	activateMetric := switchMS()
	atActivate := stored()

	storedAtLeast(atActivate + load.rollbackAfter)
	var rb registry.ChangeResult
	lifecycle(t, url, &rb, "rollback", "--reason", "drill")
	backlogAtRollback := unscored()
	for _, p := range procs {
		waitServing(t, p.metricsAddr, "1.0.0", "")
	}
	rollbackMetric := switchMS()
	if rb.To != "1.0.0" || act.Pointer == nil || rb.Pointer == nil {
		t.Fatalf("rollback went to %q; pointers %+v %+v", rb.To, act.Pointer, rb.Pointer)
	}
	target.Store(max(published.Load()+int64(load.tail), int64(load.minRecords)))
	pub.Wait()
	select {
	case err := <-pubErr:
		t.Fatal(err)
	default:
	}
	n := int(published.Load())
	storedAtLeast(n)
	elapsed := time.Since(began)
	for i, p := range procs {
		if err := p.healthy(); err != nil {
			t.Fatalf("scorer %d: %v", i, err)
		}
	}

	// Read back: exactly one prediction per record, naming its scorer.
	type scored struct {
		schemas.Prediction
		index, scorer int
	}
	byIndex := make([]*scored, n)
	subj := schemas.NewSubjects("")
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamPredictions) {
		if _, ok := subj.SourceOf(schemas.ShadowKind, m.Subject()); ok {
			t.Fatalf("a shadow prediction (%s) without a shadow version", m.Subject())
		}
		var p scored
		if err := json.Unmarshal(m.Data(), &p.Prediction); err != nil {
			t.Fatalf("prediction: %v", err)
		}
		k, err := strconv.Atoi(strings.TrimPrefix(p.RecordID, "r-"))
		if err != nil || k < 0 || k >= n {
			t.Fatalf("unexpected record id %q", p.RecordID)
		}
		if byIndex[k] != nil {
			t.Fatalf("two predictions for %s (versions %s and %s)", p.RecordID, byIndex[k].Model.Version, p.Model.Version)
		}
		who := m.Headers().Get(schemas.ScorerHeader)
		i, ok := byPID[who[strings.LastIndexByte(who, ' ')+1:]]
		if !ok || !strings.HasPrefix(who, "cardiostream-scorer@") {
			t.Fatalf("%s: %s header %q names none of the scorer processes %v", p.RecordID, schemas.ScorerHeader, who, byPID)
		}
		p.index, p.scorer = k, i
		byIndex[k] = &p
	}
	for k, p := range byIndex {
		if p == nil {
			t.Fatalf("record r-%06d has no prediction", k)
		}
	}
	if dl := natstest.StreamMessages(t, js, schemas.StreamDeadLetter); len(dl) != 0 {
		t.Errorf("%d dead letters", len(dl))
	}

	// Each scorer's first deliveries in the order it scored them (one
	// worker: batch after batch). A redelivered record is scored later, by
	// the model of that time, and is left out.
	perScorer := make([][]*scored, len(procs))
	redelivered := 0
	for _, p := range byIndex {
		if p.Deliveries > 1 {
			redelivered++
			continue
		}
		perScorer[p.scorer] = append(perScorer[p.scorer], p)
	}
	act1, rb1 := make([]switchFigures, len(procs)), make([]switchFigures, len(procs))
	var runLens []string
	stalls := make([]time.Duration, len(procs))
	var stopInfo []string // per scorer: its longest stop, when it began, records unscored during it (-1: not sampled)
	for i, ps := range perScorer {
		sort.SliceStable(ps, func(a, b int) bool { return ps[a].ScoredAt.Before(ps[b].ScoredAt) })
		var runs []string
		var starts, lens []int // index into ps of each run's start; run lengths
		for j, p := range ps {
			if len(runs) == 0 || runs[len(runs)-1] != p.Model.Version {
				runs, starts, lens = append(runs, p.Model.Version), append(starts, j), append(lens, 0)
			}
			lens[len(lens)-1]++
		}
		if fmt.Sprint(runs) != "[1.0.0 1.1.0 1.0.0]" {
			t.Fatalf("scorer %d: versions in scoring order %v (run lengths %v), want [1.0.0 1.1.0 1.0.0]: each scorer switches once per pointer change and every scorer serves the new version", i, runs, lens)
		}
		firstNew, firstBack := ps[starts[1]], ps[starts[2]]
		lastOld, lastNew := ps[starts[1]-1], ps[starts[2]-1]
		if firstNew.ScoredAt.Before(act.Pointer.ChangedAt) {
			t.Fatalf("scorer %d: r-%06d scored by 1.1.0 at %s, before its activation at %s", i, firstNew.index, firstNew.ScoredAt, act.Pointer.ChangedAt)
		}
		if firstBack.ScoredAt.Before(rb.Pointer.ChangedAt) {
			t.Fatalf("scorer %d: r-%06d of the last 1.0.0 run scored at %s, before the rollback at %s", i, firstBack.index, firstBack.ScoredAt, rb.Pointer.ChangedAt)
		}
		ms := func(a, b time.Time) float64 { return float64(a.Sub(b).Microseconds()) / 1000 }
		act1[i] = switchFigures{metricMS: activateMetric[i], lastOldMS: ms(lastOld.ScoredAt, act.Pointer.ChangedAt), firstNewMS: ms(firstNew.ScoredAt, act.Pointer.ChangedAt)}
		rb1[i] = switchFigures{metricMS: rollbackMetric[i], lastOldMS: ms(lastNew.ScoredAt, rb.Pointer.ChangedAt), firstNewMS: ms(firstBack.ScoredAt, rb.Pointer.ChangedAt)}
		runLens = append(runLens, fmt.Sprintf("%d/%d/%d", lens[0], lens[1], lens[2]))
		// The longest pause between two of the scorer's predictions outside
		// the two switches (from changed_at to its first prediction by the
		// new version): how long the shared, noisy machine stopped this
		// scorer for reasons that have nothing to do with a swap.
		var stall time.Duration
		inSwitch := func(a, b time.Time) bool {
			return !b.Before(act.Pointer.ChangedAt) && !a.After(firstNew.ScoredAt) || !b.Before(rb.Pointer.ChangedAt) && !a.After(firstBack.ScoredAt)
		}
		var stallAt time.Time
		for j := 1; j < len(ps); j++ {
			if d := ps[j].ScoredAt.Sub(ps[j-1].ScoredAt); d > stall && !inSwitch(ps[j-1].ScoredAt, ps[j].ScoredAt) {
				stall, stallAt = d, ps[j-1].ScoredAt
			}
		}
		stalls[i] = stall
		// Records waiting during the stop (the last sample before it ended).
		waitingInStop := -1
		samplesMu.Lock()
		for _, sm := range samples {
			if sm.at.After(stallAt) && sm.at.Before(stallAt.Add(stall)) {
				waitingInStop = sm.unscored
			}
		}
		samplesMu.Unlock()
		stopInfo = append(stopInfo, fmt.Sprintf("%.1f@%.1fs/unscored=%d", float64(stall.Microseconds())/1000, stallAt.Sub(began).Seconds(), waitingInStop))
		// Predictions by the old version scored after changed_at: the
		// batch in flight, and what was scored before the change was seen.
		for _, p := range ps[:starts[1]] {
			if p.ScoredAt.After(act.Pointer.ChangedAt) {
				act1[i].oldAfter++
			}
		}
		for _, p := range ps[starts[1]:starts[2]] {
			if p.ScoredAt.After(rb.Pointer.ChangedAt) {
				rb1[i].oldAfter++
			}
		}
	}
	// A sanity bound, not a performance assertion: the promise is 1 s; a
	// watcher that polled, or a swap that waited for an idle scorer (there
	// is none here: a backlog waits all along), would take far longer.
	// The machine is shared (up to 8 test runs on 2 cores): a scorer was
	// seen stopped for 5 s between two predictions, nowhere near a swap.
	// A switch measured across such a stop includes it, so each scorer's
	// bound is 5 s plus its own longest stop outside the switches. Under
	// -race the child processes run 5-10 times slower, and the bound is
	// scaled; it still catches a scorer that never switches. A negative
	// last_old figure: the scorer's last prediction by the old version was
	// made before the pointer changed.
	switchBound := 5 * time.Second
	if raceBuild {
		switchBound *= 6
	}
	fig := func(name string, fs []switchFigures) string {
		var b strings.Builder
		for i, f := range fs {
			bound := switchBound + stalls[i]
			for _, v := range []float64{f.metricMS, f.lastOldMS, f.firstNewMS} {
				if v > float64(bound.Milliseconds()) {
					t.Errorf("scorer %d: %s switch %+v ms exceeds the sanity bound %s (5 s + the scorer's longest stop elsewhere, %s; promise: 1 s)", i, name, f, bound, stalls[i])
				}
			}
			fmt.Fprintf(&b, " %s_s%d_metric_ms=%.1f %s_s%d_last_old_ms=%.1f %s_s%d_first_new_ms=%.1f %s_s%d_old_after_change=%d",
				name, i, f.metricMS, name, i, f.lastOldMS, name, i, f.firstNewMS, name, i, f.oldAfter)
		}
		return b.String()
	}
	t.Logf("FIGURE %s records=%d scorers=%d runs_per_scorer=%s longest_stop_per_scorer=%s redelivered=%d backlog_at_activate=%d backlog_at_rollback=%d records_per_s=%.0f elapsed_s=%.1f%s%s",
		t.Name(), n, len(procs), strings.Join(runLens, ","), strings.Join(stopInfo, ","), redelivered, backlogAtActivate, backlogAtRollback, float64(n)/elapsed.Seconds(), elapsed.Seconds(),
		fig("activate", act1), fig("rollback", rb1))
}

// TestHotSwapUnderLoad: two scorer processes drain an unpaced backlog
// (20,000 records or more); 1.1.0 is activated after 6,000 predictions and
// rolled back 7,000 later. See runHotSwap for what is checked.
func TestHotSwapUnderLoad(t *testing.T) {
	runHotSwap(t, hotSwapLoad{scorers: 2, minRecords: 20000, tail: 2000, backlog: 20000, activateAt: 6000, rollbackAfter: 7000})
}

// readyz returns /readyz's status code and body.
func readyz(t testing.TB, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestTamperedArtifactRefused: 1.1.0's model.json is replaced in the
// object store, then a scorer and a monitor process start (the scorer
// serves the active 1.0.0; its prefetch of 1.1.0 fails), then the active
// pointer is moved to 1.1.0 (written as Activate would: tampering between
// the activation's gates and the scorers' fetch). The scorer refuses it and
// keeps serving 1.0.0: /readyz says degraded (still 200), the degraded
// gauge and the refusal counter say so, AUDIT holds an artifact_refused
// entry and the monitor raises a model_artifact_refused alert in ALERTS;
// records keep being scored by 1.0.0. A rollback to 1.0.0 clears the
// degradation.
func TestTamperedArtifactRefused(t *testing.T) {
	ns := natstest.RunServer(t)
	url := ns.ClientURL()
	_, js := natstest.Connect(t, ns)
	natstest.EnsureStreams(t, js, nil)
	lifecycle(t, url, nil, "push", artifactV100, "--version", "1.0.0")
	lifecycle(t, url, nil, "push", artifactV110, "--version", "1.1.0")
	lifecycle(t, url, nil, "activate", "1.0.0")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	obj, err := js.ObjectStore(ctx, registry.DefaultModelsBucket)
	if err != nil {
		t.Fatal(err)
	}
	name := registry.ObjectName("1.1.0", registry.FileModel)
	orig, err := obj.GetBytes(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	tampered := []byte(strings.Replace(string(orig), `"base_score":"`, `"base_score":"1`, 1))
	if _, err := obj.PutBytes(ctx, name, tampered); err != nil {
		t.Fatal(err)
	}
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	start(t, testEnviron(), "scorer", "--nats-url", url, "--metrics-addr", metricsAddr)
	start(t, testEnviron(), "monitor", "--nats-url", url, "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t)))
	waitServing(t, metricsAddr, "1.0.0", "")
	var show struct {
		SHA256 string `json:"sha256"`
	}
	lifecycle(t, url, &show, "show", "1.1.0")
	kv, err := js.KeyValue(ctx, registry.DefaultPointersBucket)
	if err != nil {
		t.Fatal(err)
	}
	ptr, _ := json.Marshal(registry.Pointer{Version: "1.1.0", SHA256: show.SHA256, ChangedAt: time.Now().UTC(), Actor: "tamper-test", Previous: "1.0.0"})
	if _, err := kv.Put(ctx, registry.KeyActive, ptr); err != nil {
		t.Fatal(err)
	}

	natstest.Eventually(t, 90*time.Second, func() error {
		fams := scrape(t, metricsAddr)
		if v := mustMetric(t, fams, "cardiostream_scorer_model_degraded"); v != 1 {
			return fmt.Errorf("model_degraded = %v", v)
		}
		if v := mustMetric(t, fams, "cardiostream_scorer_artifact_refusals_total", "reason", "tampered"); v != 1 {
			return fmt.Errorf("artifact_refusals_total{reason=tampered} = %v", v)
		}
		return nil
	})
	if code, body := readyz(t, metricsAddr); code != http.StatusOK || !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, "1.1.0 refused (tampered)") {
		t.Errorf("/readyz: %d %s", code, body)
	}
	var entries []schemas.AuditEntry
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamAudit) {
		var e schemas.AuditEntry
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			t.Fatal(err)
		}
		if e.Action == schemas.AuditArtifactRefused {
			entries = append(entries, e)
		}
	}
	if len(entries) != 1 || entries[0].ToVersion != "1.1.0" || entries[0].FromVersion != "1.0.0" || entries[0].SHA256 != show.SHA256 || !strings.Contains(entries[0].Actor, "cardiostream-scorer") {
		t.Fatalf("artifact_refused audit entries: %+v", entries)
	}
	natstest.Eventually(t, 90*time.Second, func() error {
		for _, m := range natstest.StreamMessages(t, js, schemas.StreamAlerts) {
			var a schemas.Alert
			if json.Unmarshal(m.Data(), &a) == nil && a.Rule == "model_artifact_refused" && a.Status == schemas.AlertFiring && strings.Contains(a.Summary, "1.1.0") {
				return nil
			}
		}
		return fmt.Errorf("no model_artifact_refused alert in ALERTS")
	})

	// The old model keeps serving.
	for i := range 50 {
		if _, err := js.Publish(ctx, "cardio.records.after", syntheticRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, 90*time.Second, func() error {
		main, _ := mainAndShadowPredictions(t, js)
		if len(main) != 50 {
			return fmt.Errorf("%d of 50 predictions", len(main))
		}
		for _, p := range main {
			if p.Model.Version != "1.0.0" {
				t.Fatalf("prediction by %s while the tampered 1.1.0 is refused", p.Model.Version)
			}
		}
		return nil
	})

	lifecycle(t, url, nil, "rollback", "--to", "1.0.0", "--reason", "tampered artifact")
	natstest.Eventually(t, 90*time.Second, func() error {
		if v := mustMetric(t, scrape(t, metricsAddr), "cardiostream_scorer_model_degraded"); v != 0 {
			return fmt.Errorf("model_degraded = %v after the rollback", v)
		}
		return nil
	})
	if code, body := readyz(t, metricsAddr); code != http.StatusOK || strings.Contains(body, "degraded") {
		t.Errorf("/readyz after the rollback: %d %s", code, body)
	}
}

// TestShadowEndToEnd replays the UCI data through a standalone process with
// 1.0.0 active and 1.1.0 as shadow: every record gets exactly one main
// prediction (1.0.0, on cardio.predictions.<source>, the only kind a
// subscriber to cardio.predictions.* receives) and one shadow prediction
// (1.1.0, on cardio.predictions.shadow.<source>). The monitor's per-version
// window metrics and `model compare` agree with a direct computation from
// the streams.
func TestShadowEndToEnd(t *testing.T) {
	natsAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	env := testEnviron("CARDIOSTREAM_MONITOR__WINDOW_SIZE=10000")
	r := start(t, env, "standalone", "--data-dir", t.TempDir(), "--nats-listen", natsAddr, "--metrics-addr", metricsAddr)
	url := r.info.NATSURL
	js := connectTo(t, url)
	lifecycle(t, url, nil, "push", artifactV100, "--version", "1.0.0")
	lifecycle(t, url, nil, "push", artifactV110, "--version", "1.1.0")
	lifecycle(t, url, nil, "activate", "1.0.0")
	lifecycle(t, url, nil, "shadow", "1.1.0", "--reason", "challenger")
	waitServing(t, metricsAddr, "1.0.0", "1.1.0")

	// What a downstream system subscribed as the README shows receives.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	downstream := map[string]int{}
	sub, err := nc.Subscribe("cardio.predictions.*", func(m *nats.Msg) {
		var p schemas.Prediction
		_ = json.Unmarshal(m.Data, &p)
		mu.Lock()
		downstream[p.Model.Version]++
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = nc.Flush()

	files := []string{"../../datasets/uci-heart-disease/processed.cleveland.data", "../../datasets/uci-heart-disease/processed.hungarian.data",
		"../../datasets/uci-heart-disease/processed.switzerland.data", "../../datasets/uci-heart-disease/processed.va.data"}
	code, _, stderr := runCmd(t, env, append([]string{"replay", "--nats-url", url, "--outcomes", "--label-delay", "0s"}, files...)...)
	if code != 0 {
		t.Fatalf("replay: exit %d\n%s", code, stderr)
	}
	const n = 920
	natstest.Eventually(t, 3*time.Minute, func() error {
		fams := scrape(t, metricsAddr)
		joined := mustMetric(t, fams, "cardiostream_monitor_joined_total")
		shadowN, _ := metricValue(fams, "cardiostream_monitor_model_window_samples", "model_version", "1.1.0", "role", "shadow")
		if joined != n || shadowN != n {
			return fmt.Errorf("joined %v, shadow joins %v, want %d", joined, shadowN, n)
		}
		return nil
	})

	main, shadow := mainAndShadowPredictions(t, js)
	sc := readStreams(t, js)
	check := func(what, version string, ps []schemas.Prediction) map[recordKey]schemas.Prediction {
		out := map[recordKey]schemas.Prediction{}
		for _, p := range ps {
			k := recordKey{p.Source, p.RecordID}
			if _, dup := out[k]; dup {
				t.Errorf("two %s predictions for %v", what, k)
			}
			if p.Model.Version != version {
				t.Errorf("%s prediction for %v by %s, want %s", what, k, p.Model.Version, version)
			}
			out[k] = p
		}
		if len(out) != n {
			t.Errorf("%d records with a %s prediction, want %d", len(out), what, n)
		}
		return out
	}
	pa, pb := check("main", "1.0.0", main), check("shadow", "1.1.0", shadow)
	mu.Lock()
	if downstream["1.0.0"] != n || len(downstream) != 1 {
		t.Errorf("a subscriber to cardio.predictions.* received %v, want only %d of 1.0.0", downstream, n)
	}
	mu.Unlock()

	// Direct computation from the streams.
	var tpA, tnA, tpB, tnB, agree int
	for k, o := range sc.outcomes {
		a, b := pa[k], pb[k]
		if a.Label == o.Label && o.Label == 1 {
			tpA++
		} else if a.Label == o.Label {
			tnA++
		}
		if b.Label == o.Label && o.Label == 1 {
			tpB++
		} else if b.Label == o.Label {
			tnB++
		}
		if a.Label == b.Label {
			agree++
		}
	}
	if len(sc.outcomes) != n {
		t.Fatalf("%d outcomes", len(sc.outcomes))
	}
	accA, accB, agr := float64(tpA+tnA)/n, float64(tpB+tnB)/n, float64(agree)/n
	fams := scrape(t, metricsAddr)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"cardiostream_monitor_model_window_accuracy", []string{"model_version", "1.0.0", "role", "active"}, accA},
		{"cardiostream_monitor_model_window_accuracy", []string{"model_version", "1.1.0", "role", "shadow"}, accB},
		{"cardiostream_monitor_model_window_agreement", []string{"model_version", "1.1.0"}, agr},
		{"cardiostream_monitor_model_predictions_total", []string{"model_version", "1.1.0", "role", "shadow"}, n},
		{"cardiostream_monitor_predictions_total", nil, n},
	} {
		if got := mustMetric(t, fams, c.name, c.labels...); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	var cmp struct {
		A, B      versionScore
		N         int
		Agreement float64
	}
	code, stdout, stderr := runCmd(t, env, "model", "compare", "1.0.0", "1.1.0", "--nats-url", url, "--json")
	if code != 0 {
		t.Fatalf("compare: exit %d\n%s", code, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &cmp); err != nil {
		t.Fatal(err)
	}
	if cmp.N != n || math.Abs(cmp.A.Accuracy-accA) > 1e-12 || math.Abs(cmp.B.Accuracy-accB) > 1e-12 || math.Abs(cmp.Agreement-agr) > 1e-12 {
		t.Errorf("compare: n=%d accuracy %v / %v agreement %v; want %d, %v / %v, %v", cmp.N, cmp.A.Accuracy, cmp.B.Accuracy, cmp.Agreement, n, accA, accB, agr)
	}

	// Promoting the shadow: it is already loaded, and once it is active it
	// is not scored a second time as its own shadow.
	lifecycle(t, url, nil, "activate", "1.1.0", "--reason", "promote")
	waitServing(t, metricsAddr, "1.1.0", "")
	promoteMS := 1000 * mustMetric(t, scrape(t, metricsAddr), "cardiostream_scorer_model_switch_last_seconds")
	t.Logf("FIGURE TestShadowEndToEnd records=%d accuracy_1.0.0=%.4f accuracy_1.1.0=%.4f auc_1.0.0=%.4f auc_1.1.0=%.4f brier_1.0.0=%.4f brier_1.1.0=%.4f agreement=%.4f promote_switch_ms=%.1f",
		n, accA, accB, cmp.A.AUC, cmp.B.AUC, cmp.A.Brier, cmp.B.Brier, agr, promoteMS)
}
