package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/schemas"
)

// TestThreeScorersShareOneConsumer runs three `cardiostream scorer` role
// processes (in-process) and a monitor against one external JetStream server:
// every record is scored exactly once between them.
func TestThreeScorersShareOneConsumer(t *testing.T) {
	ns := natstest.RunServer(t)
	url := ns.ClientURL()
	env := testEnviron()
	var scorers []*running
	for i := 0; i < 3; i++ {
		scorers = append(scorers, start(t, env, "scorer", "--nats-url", url, "--metrics-addr", "127.0.0.1:0"))
	}
	mon := start(t, env, "monitor", "--nats-url", url, "--metrics-addr", "127.0.0.1:0")

	args := append([]string{"replay", "--nats-url", url, "--repeat", "3"}, uciFiles...)
	if code, _, stderr := runCmd(t, env, args...); code != 0 {
		t.Fatalf("replay exited %d: %s", code, stderr)
	}
	const total = 3 * 920
	_, js := natstest.Connect(t, ns)
	natstest.Eventually(t, 90*time.Second, func() error {
		fams := scrape(t, mon.info.MetricsAddr)
		p, _ := metricValue(fams, "cardiostream_monitor_predictions_total")
		d, _ := metricValue(fams, "cardiostream_monitor_dead_lettered_total")
		if p+d < total {
			return fmt.Errorf("monitor saw %v predictions + %v dead letters, want %d", p, d, total)
		}
		return nil
	})
	seen := map[string]int{}
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamPredictions) {
		var p schemas.Prediction
		if err := json.Unmarshal(m.Data(), &p); err != nil {
			t.Fatal(err)
		}
		seen[p.Source+"/"+p.RecordID]++
	}
	dl := len(natstest.StreamMessages(t, js, schemas.StreamDeadLetter))
	if len(seen)+dl != total {
		t.Errorf("%d distinct predictions + %d dead letters, want %d", len(seen), dl, total)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("record %s has %d predictions", k, n)
		}
	}
	var sum float64
	for i, s := range scorers {
		v := mustMetric(t, scrape(t, s.info.MetricsAddr), "cardiostream_scorer_records_received_total")
		t.Logf("scorer %d received %v records", i+1, v)
		sum += v
	}
	if int(sum) != total {
		t.Errorf("the scorers received %v records between them, want exactly %d (no record twice)", sum, total)
	}
	for i, s := range append(scorers, mon) {
		if code := s.stop(t); code != 0 {
			t.Errorf("process %d exited %d; stderr:\n%s", i, code, s.stderr.String())
		}
	}
}

// TestBadInputEndToEnd publishes a table of malformed payloads into a running
// system: each lands in DEADLETTER with the expected stage and field, nothing
// is dropped and the good record next to them is scored.
func TestBadInputEndToEnd(t *testing.T) {
	sys := start(t, testEnviron(), "standalone", "--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	js := connectTo(t, sys.info.NATSURL)
	good := `{"id":"good-1","features":{"age":63,"sex":1,"cp":1,"trestbps":145,"chol":233,"fbs":1,"restecg":2,"thalach":150,"exang":0,"oldpeak":2.3,"slope":3,"ca":0,"thal":6}}`
	tests := []struct {
		name      string
		source    string
		payload   string
		wantStage schemas.Stage
		wantField string
	}{
		{"not json", "bad", `hello`, schemas.StageDecode, ""},
		{"array", "bad", `[1,2,3]`, schemas.StageDecode, ""},
		{"missing id", "bad", `{"features":{"age":50}}`, schemas.StageDecode, "id"},
		{"age as string", "bad", `{"id":"s-1","features":{"age":"63"}}`, schemas.StageDecode, "features.age"},
		{"sex out of range", "bad", `{"id":"s-2","features":{"sex":2}}`, schemas.StageValidate, "features.sex"},
		{"thal unknown code", "bad", `{"id":"s-3","features":{"thal":5}}`, schemas.StageValidate, "features.thal"},
		{"cp fractional", "bad", `{"id":"s-4","features":{"cp":1.5}}`, schemas.StageValidate, "features.cp"},
		{"chol zero", "bad", `{"id":"s-5","features":{"chol":0}}`, schemas.StageValidate, "features.chol"},
		{"NaN literal", "bad", `{"id":"s-6","features":{"oldpeak":NaN}}`, schemas.StageDecode, ""},
		{"huge number", "bad", `{"id":"s-7","features":{"age":1e400}}`, schemas.StageValidate, "features.age"},
		{"unknown feature", "bad", `{"id":"s-8","features":{"cholesterol":200}}`, schemas.StageDecode, "features.cholesterol"},
		{"duplicate key", "bad", `{"id":"s-9","id":"s-10","features":{}}`, schemas.StageDecode, "id"},
		{"invalid utf-8", "bad", "{\"id\":\"s-11\",\"patient_ref\":\"\xff\xfe\",\"features\":{}}", schemas.StageDecode, ""},
		{"oversized", "bad", `{"id":"s-12","patient_ref":"` + strings.Repeat("x", 20000) + `","features":{}}`, schemas.StageDecode, ""},
	}
	ctx := context.Background()
	subj := schemas.NewSubjects("")
	for _, tt := range tests {
		if _, err := js.Publish(ctx, subj.Records(tt.source), []byte(tt.payload)); err != nil {
			t.Fatalf("%s: publish: %v", tt.name, err)
		}
	}
	if _, err := js.Publish(ctx, subj.Records("good"), []byte(good)); err != nil {
		t.Fatal(err)
	}
	want := len(tests) + 1
	natstest.Eventually(t, 60*time.Second, func() error {
		fams := scrape(t, sys.info.MetricsAddr)
		p, _ := metricValue(fams, "cardiostream_monitor_predictions_total")
		d, _ := metricValue(fams, "cardiostream_monitor_dead_lettered_total")
		if int(p+d) < want {
			return fmt.Errorf("%v predictions + %v dead letters of %d", p, d, want)
		}
		return nil
	})
	dls := natstest.StreamMessages(t, js, schemas.StreamDeadLetter)
	preds := natstest.StreamMessages(t, js, schemas.StreamPredictions)
	if len(dls) != len(tests) || len(preds) != 1 {
		t.Fatalf("%d dead letters and %d predictions, want %d and 1", len(dls), len(preds), len(tests))
	}
	// Dead letters arrive in publish order (one scorer, ordered stream).
	for i, m := range dls {
		tt := tests[i]
		var d schemas.DeadLetter
		if err := json.Unmarshal(m.Data(), &d); err != nil {
			t.Fatal(err)
		}
		if d.Stage != tt.wantStage || len(d.Reasons) == 0 || d.Subject != subj.Records(tt.source) || d.PayloadSize != len(tt.payload) {
			t.Errorf("%s: dead letter stage %q reasons %v subject %q size %d", tt.name, d.Stage, d.Reasons, d.Subject, d.PayloadSize)
			continue
		}
		if tt.wantField != "" {
			found := false
			for _, r := range d.Reasons {
				found = found || r.Field == tt.wantField
			}
			if !found {
				t.Errorf("%s: reasons %v do not name field %q", tt.name, d.Reasons, tt.wantField)
			}
		}
		if !d.PayloadTruncated && string(d.Payload) != tt.payload {
			t.Errorf("%s: dead letter does not carry the original payload", tt.name)
		}
	}
	fams := scrape(t, sys.info.MetricsAddr)
	if got := mustMetric(t, fams, "cardiostream_scorer_records_dead_lettered_total"); int(got) != len(tests) {
		t.Errorf("scorer dead-lettered %v, want %d", got, len(tests))
	}
	if got := mustMetric(t, fams, "cardiostream_scorer_records_received_total"); int(got) != want {
		t.Errorf("scorer received %v, want %d (conservation)", got, want)
	}
	// The process is still healthy after all that.
	if code := sys.stop(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestScorerStartsBeforeNATS starts a scorer while nothing listens at its NATS
// URL: /readyz answers 503 naming what it waits for, and once a server comes
// up the scorer connects, creates its consumer and becomes ready on its own.
func TestScorerStartsBeforeNATS(t *testing.T) {
	natsPort := natstest.FreePort(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	env := testEnviron("CARDIOSTREAM_NATS__RECONNECT_WAIT=50ms")
	var out, errb syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	c := &cli{stdout: &out, stderr: &errb, environ: env}
	go func() {
		done <- c.execute(ctx, []string{"scorer", "--nats-url", fmt.Sprintf("nats://127.0.0.1:%d", natsPort), "--metrics-addr", metricsAddr})
	}()
	t.Cleanup(func() { cancel(); <-done })

	readyz := func() (int, string) {
		resp, err := http.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	natstest.Eventually(t, 30*time.Second, func() error {
		if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "connecting") {
			return fmt.Errorf("/readyz = %d %s, want 503 connecting", code, body)
		}
		return nil
	})
	natstest.RunServerOn(t, t.TempDir(), natsPort)
	natstest.Eventually(t, 30*time.Second, func() error {
		if code, body := readyz(); code != http.StatusOK {
			return fmt.Errorf("/readyz = %d %s, want 200", code, body)
		}
		return nil
	})
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("scorer exited %d: %s", code, errb.String())
	}
	done <- 0 // for the cleanup
}

// TestNATSPasswordNeverLogged: a NATS URL with credentials is shown
// redacted in logs and errors while the process waits for the server.
func TestNATSPasswordNeverLogged(t *testing.T) {
	const password = "pw-Zq8-never-print"
	url := fmt.Sprintf("nats://alice:%s@127.0.0.1:%d", password, natstest.FreePort(t))
	var out, errb syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	c := &cli{stdout: &out, stderr: &errb, environ: testEnviron()}
	go func() { done <- c.execute(ctx, []string{"scorer", "--nats-url", url, "--metrics-addr", "127.0.0.1:0"}) }()
	natstest.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(errb.String(), "waiting for NATS") {
			return fmt.Errorf("no waiting message yet")
		}
		return nil
	})
	cancel()
	<-done
	logs := out.String() + errb.String()
	if strings.Contains(logs, password) {
		t.Fatalf("the password appears in the output:\n%s", logs)
	}
	if !strings.Contains(logs, "REDACTED@127.0.0.1") {
		t.Errorf("the logs do not name the (redacted) server:\n%s", logs)
	}
}

// TestScorerGCSettings runs `cardiostream scorer` as OS processes and reads
// the garbage collector target and soft memory limit each runs with from
// its own /metrics (go_gc_gogc_percent, go_gc_gomemlimit_bytes):
// scorer.gc_percent and scorer.gc_memory_limit_mb by default, the runtime's
// own with 0, and GOGC or GOMEMLIMIT when the environment sets them.
func TestGCSettings(t *testing.T) {
	ns := natstest.RunServer(t)
	const noLimit = math.MaxInt64
	cases := []struct {
		name, role         string
		env                []string
		wantGOGC, wantLimB float64
	}{
		{name: "scorer default", role: "scorer", wantGOGC: 400, wantLimB: 64 << 20},
		{name: "scorer configured", role: "scorer", env: []string{"CARDIOSTREAM_SCORER__GC_PERCENT=200", "CARDIOSTREAM_SCORER__GC_MEMORY_LIMIT_MB=128"},
			wantGOGC: 200, wantLimB: 128 << 20},
		{name: "scorer runtime defaults", role: "scorer", env: []string{"CARDIOSTREAM_SCORER__GC_PERCENT=0", "CARDIOSTREAM_SCORER__GC_MEMORY_LIMIT_MB=0"},
			wantGOGC: 100, wantLimB: noLimit},
		{name: "scorer environment wins", role: "scorer", env: []string{"GOGC=150", "GOMEMLIMIT=50MiB"}, wantGOGC: 150, wantLimB: 50 << 20},
		{name: "monitor default", role: "monitor", wantGOGC: 400, wantLimB: noLimit},
		{name: "monitor configured", role: "monitor", env: []string{"CARDIOSTREAM_MONITOR__GC_PERCENT=300", "CARDIOSTREAM_MONITOR__GC_MEMORY_LIMIT_MB=512"},
			wantGOGC: 300, wantLimB: 512 << 20},
		{name: "monitor not given the scorer's", role: "monitor", env: []string{"CARDIOSTREAM_SCORER__GC_PERCENT=200"}, wantGOGC: 400, wantLimB: noLimit},
		{name: "monitor environment wins", role: "monitor", env: []string{"GOGC=150"}, wantGOGC: 150, wantLimB: noLimit},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := procMetricsAddr(t)
			p := procStart(t, tc.role, procEnv(tc.env...), addr, tc.role, "--nats-url", ns.ClientURL(), "--metrics-addr", addr)
			p.waitReady(t, 60*time.Second)
			fams := scrape(t, addr)
			if got := mustMetric(t, fams, "go_gc_gogc_percent"); got != tc.wantGOGC {
				t.Errorf("go_gc_gogc_percent = %v, want %v", got, tc.wantGOGC)
			}
			if got := mustMetric(t, fams, "go_gc_gomemlimit_bytes"); got != tc.wantLimB {
				t.Errorf("go_gc_gomemlimit_bytes = %v, want %v", got, tc.wantLimB)
			}
			if code, _ := p.sigterm(t, 30*time.Second); code != 0 {
				t.Errorf("%s exited %d; stderr:\n%s", tc.role, code, p.tail())
			}
		})
	}
}

// TestBenchRelayUsesTheScorersGCSettings: the bench's ceiling, the bare
// relay, runs with the scorer's garbage collector settings, or the scorer
// would be measured against a relay handicapped by more collections.
func TestBenchRelayUsesTheScorersGCSettings(t *testing.T) {
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns)
	natstest.EnsureStreams(t, js, nil)
	p := procStart(t, "relay", procEnv(), "", "bench", "relay", "--nats-url", ns.ClientURL(), "--log-level", "info")
	natstest.Eventually(t, 60*time.Second, func() error {
		if p.done() {
			t.Fatalf("relay exited: %v; stderr:\n%s", p.err, p.tail())
		}
		for _, want := range []string{"gc_percent=400", "gc_memory_limit_mb=64"} {
			if !strings.Contains(p.stderr.String(), `msg="garbage collector setting applied" `+want) {
				return fmt.Errorf("no %q in the relay's log yet", want)
			}
		}
		return nil
	})
	if code, _ := p.sigterm(t, 30*time.Second); code != 0 {
		t.Errorf("relay exited %d; stderr:\n%s", code, p.tail())
	}
}
