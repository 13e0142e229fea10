package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/registry"
	"github.com/cardiostream/cardiostream/schemas"
)

// TestModelLifecycleOnCluster runs every model command as a real process
// (the test binary re-executed as the program) against a 3-node cluster
// whose registry buckets and AUDIT stream have 3 replicas. Every change is
// written through node n1 and read back through n2 or n3, right after the
// write. A scorer connected to the cluster follows the pointers, and its
// main and shadow predictions, with outcomes, are what `model compare`
// reads. Then the node leading the registry's KV stream is shut down and
// one `model rollback`, issued once while it is down, must succeed; the node
// that was down then serves the new state and the whole audit trail.
func TestModelLifecycleOnCluster(t *testing.T) {
	t0 := time.Now()
	c := natstest.RunCluster(t, 3)
	n1, n2, n3 := c.Nodes[0].ClientURL(), c.Nodes[1].ClientURL(), c.Nodes[2].ClientURL()
	base := testEnviron("USER=release", "CARDIOSTREAM_STREAMS__REPLICAS=3")
	// model runs one CLI process against url (one node, or the list).
	model := func(url string, args ...string) string {
		t.Helper()
		t0 := time.Now()
		code, out, errOut := modelProcEnv(t, append(slices.Clone(base), "CARDIOSTREAM_NATS__URL="+url), args...)
		if took := time.Since(t0); took > 5*time.Second || testing.Verbose() {
			t.Logf("model %v via %s: exit %d after %s; stderr:\n%s", args, url, code, took.Round(time.Millisecond), errOut)
		}
		if code != 0 {
			t.Fatalf("model %v via %s: exit %d\nstdout:\n%s\nstderr:\n%s", args, url, code, out, errOut)
		}
		return out
	}
	list := func(url string) map[string]string {
		t.Helper()
		var vs []registry.VersionInfo
		if err := json.Unmarshal([]byte(model(url, "list", "--json")), &vs); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, v := range vs {
			out[v.Version] = status(v)
		}
		return out
	}
	wantList := func(url string, want map[string]string) {
		t.Helper()
		if got := list(url); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("list via %s: %v, want %v", url, got, want)
		}
	}
	wantOut := func(out, want string) {
		t.Helper()
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}

	scorer := start(t, append(slices.Clone(base), "CARDIOSTREAM_NATS__URL="+c.URLs()), "scorer", "--metrics-addr", "127.0.0.1:0")
	waitServing(t, scorer.info.MetricsAddr, "1.0.0", "") // the embedded model: no active pointer yet

	wantOut(model(n1, "push", "models/heart-xgb", "--version", "1.0.0", "--notes", "baseline"), "pushed heart-xgb 1.0.0")
	wantOut(model(n1, "push", "models/heart-xgb-1.1.0", "--version", "1.1.0", "--notes", "deeper trees"), "pushed heart-xgb 1.1.0")
	wantList(n2, map[string]string{"1.0.0": "-", "1.1.0": "-"})

	wantOut(model(n1, "activate", "1.0.0", "--reason", "the baseline"), "active: - -> 1.0.0")
	wantOut(model(n1, "activate", "1.1.0", "--reason", "the challenger"), "active: 1.0.0 -> 1.1.0")
	wantOut(model(n1, "shadow", "1.0.0", "--reason", "keep the baseline beside it"), "shadow: - -> 1.0.0")
	wantList(n3, map[string]string{"1.0.0": "shadow", "1.1.0": "active"})
	var shown struct {
		registry.VersionInfo
		Gates *registry.GateReport
	}
	if err := json.Unmarshal([]byte(model(n2, "show", "1.0.0", "--json")), &shown); err != nil {
		t.Fatal(err)
	}
	if !shown.Shadow || shown.Active || shown.Gates == nil || !shown.Gates.OK() || shown.PushedBy != "release@"+hostname(t) {
		t.Fatalf("show 1.0.0 via n2: shadow %v, active %v, pushed by %q, gates %+v", shown.Shadow, shown.Active, shown.PushedBy, shown.Gates)
	}
	if table := model(n3, "list"); !regexp.MustCompile(`(?m)^1\.1\.0\s+active\s+heart-xgb\s+4ad21a649672\s`).MatchString(table) ||
		!regexp.MustCompile(`(?m)^1\.0\.0\s+shadow\s`).MatchString(table) {
		t.Fatalf("list table via n3:\n%s", table)
	}

	// The scorer scores every record with 1.1.0 and, as shadow, 1.0.0.
	waitServing(t, scorer.info.MetricsAddr, "1.1.0", "1.0.0")
	const records = 40
	publishRecordsAndOutcomes(t, connectTo(t, n1), "clinic-c", records)
	js3 := connectTo(t, n3)
	natstest.Eventually(t, 60*time.Second, func() error {
		main, shadow := mainAndShadowPredictions(t, js3)
		if len(main) != records || len(shadow) != records {
			return fmt.Errorf("%d main and %d shadow predictions, want %d each", len(main), len(shadow), records)
		}
		return nil
	})
	want := wantComparison(t, js3, "1.1.0", "1.0.0")
	if want.N != records {
		t.Fatalf("%d joined records in the streams, want %d", want.N, records)
	}
	var got comparison
	if err := json.Unmarshal([]byte(model(n3, "compare", "1.1.0", "1.0.0", "--json")), &got); err != nil {
		t.Fatal(err)
	}
	checkComparison(t, got, want)
	table := model(n2, "compare", "1.1.0", "1.0.0")
	wantOut(table, fmt.Sprintf("records with predictions from both versions and an outcome: %d", records))
	wantOut(table, fmt.Sprintf("agreement (same label on the same records): %.4f", want.Agreement))

	wantOut(model(n1, "shadow", "--off", "--reason", "compared"), "shadow: 1.0.0 -> none")
	wantList(n2, map[string]string{"1.0.0": "-", "1.1.0": "active"})
	wantOut(model(n1, "rollback", "--to", "1.0.0", "--reason", "back to the baseline"), "active: 1.1.0 -> 1.0.0")
	wantList(n3, map[string]string{"1.0.0": "active", "1.1.0": "-"})
	// The same state as TestModelLifecycleCLI's standalone at that point:
	// the same golden file.
	checkGolden(t, "model_show_1.1.0.json", normalise(model(n2, "show", "1.1.0", "--json")))
	waitServing(t, scorer.info.MetricsAddr, "1.0.0", "")

	// Shut down the node leading the pointers' bucket and issue one
	// rollback (no retry by the test) with the cluster's URL list, as an
	// operator would: it lands once a new leader is elected.
	_, js := natstest.ConnectCluster(t, c)
	for _, stream := range []string{"KV_CARDIO_MODEL_REGISTRY", "OBJ_CARDIO_MODELS", "AUDIT"} {
		s, err := js.Stream(t.Context(), stream)
		if err != nil {
			t.Fatalf("%s: %v", stream, err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("%s: %d replicas, want 3", stream, r)
		}
	}
	leader := c.StreamLeader(t, "KV_CARDIO_MODEL_REGISTRY")
	leader.Shutdown()
	down := time.Now()
	wantOut(model(c.URLs(), "rollback", "--reason", "node lost"), "active: 1.0.0 -> 1.1.0")
	rollbackS := time.Since(down).Seconds()
	waitServing(t, scorer.info.MetricsAddr, "1.1.0", "")
	leader.Restart(t)
	c.WaitReady(t, 60*time.Second)

	// The node that was down reads the state and the trail written without it.
	wantList(leader.ClientURL(), map[string]string{"1.0.0": "-", "1.1.0": "active"})
	hist := model(leader.ClientURL(), "history", "--json")
	checkGolden(t, "model_history_cluster.json", normalise(hist))
	var entries []schemas.AuditEntry
	if err := json.Unmarshal([]byte(hist), &entries); err != nil {
		t.Fatal(err)
	}
	if msgs := natstest.StreamMessages(t, js, schemas.StreamAudit); len(msgs) != len(entries) {
		t.Fatalf("history has %d entries, AUDIT %d messages", len(entries), len(msgs))
	}
	t.Logf("FIGURE TestModelLifecycleOnCluster rollback_with_kv_leader_down_s=%.2f test_s=%.1f compare_n=%d agreement=%.4f accuracy_1.1.0=%.4f accuracy_1.0.0=%.4f",
		rollbackS, time.Since(t0).Seconds(), got.N, got.Agreement, got.A.Accuracy, got.B.Accuracy)
}

// publishRecordsAndOutcomes publishes n synthetic records of source and,
// for each, an outcome (labels of both classes).
func publishRecordsAndOutcomes(t testing.TB, js jetstream.JetStream, source string, n int) {
	t.Helper()
	subj := schemas.NewSubjects("")
	for i := range n {
		rec := syntheticRecord(i)
		if _, err := js.PublishMsg(t.Context(), &nats.Msg{Subject: subj.Records(source), Data: rec},
			jetstream.WithMsgID(fmt.Sprintf("%s/r-%06d", source, i))); err != nil {
			t.Fatal(err)
		}
		o, _ := json.Marshal(schemas.Outcome{SchemaVersion: schemas.Version, RecordID: fmt.Sprintf("r-%06d", i),
			Label: (i * 7) % 5 % 2, ObservedAt: time.Now().UTC()})
		if _, err := js.Publish(t.Context(), subj.Outcomes(source), o); err != nil {
			t.Fatal(err)
		}
	}
}
