package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/registry"
	"github.com/cardiostream/cardiostream/schemas"
)

// A flag of its own (not -update) so it cannot clash with another test file's.
var updateRegistryGolden = flag.Bool("update-registry", false, "rewrite the model registry CLI golden files in testdata/")

// startStandaloneProcess runs `cardiostream standalone` as a real OS process
// (the test binary re-executed as the program) and waits until it is ready.
func startStandaloneProcess(t *testing.T) (natsURL string) {
	t.Helper()
	natsAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	var stderr syncBuffer
	cmd := exec.Command(os.Args[0], "standalone", "--data-dir", t.TempDir(), "--nats-listen", natsAddr, "--metrics-addr", metricsAddr)
	cmd.Env = append(testEnviron(), "CARDIOSTREAM_TEST_RUN_MAIN=1")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	natstest.Eventually(t, 60*time.Second, func() error {
		select {
		case <-exited:
			t.Fatalf("standalone exited early; stderr:\n%s", stderr.String())
		default:
		}
		resp, err := http.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz %s", resp.Status)
		}
		return nil
	})
	return "nats://" + natsAddr
}

// modelProc runs `cardiostream model ARGS` as a real process.
func modelProc(t testing.TB, natsURL string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return modelProcEnv(t, testEnviron("USER=operator", "CARDIOSTREAM_NATS__URL="+natsURL), args...)
}

// modelProcEnv runs `cardiostream model ARGS` as a real process with the
// environment env, from the repository root.
func modelProcEnv(t testing.TB, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"model"}, args...)...)
	cmd.Env = append(slices.Clone(env), "CARDIOSTREAM_TEST_RUN_MAIN=1")
	cmd.Dir = filepath.Join("..", "..") // repository root: artifact paths as a user types them
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// TestModelLifecycleCLI drives the registry commands as real processes
// against a real standalone process: push, refusals, activate, shadow,
// rollback, history, list, show, with the audit trail read back by a plain
// client, and compare over predictions and outcomes stored in its streams.
func TestModelLifecycleCLI(t *testing.T) {
	url := startStandaloneProcess(t)
	run := func(wantCode int, args ...string) string {
		t.Helper()
		code, out, errOut := modelProc(t, url, args...)
		if code != wantCode {
			t.Fatalf("model %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, wantCode, out, errOut)
		}
		return out + errOut
	}
	out := run(0, "push", "models/heart-xgb", "--version", "1.0.0", "--notes", "baseline")
	if !strings.Contains(out, "pushed heart-xgb 1.0.0: sha256 15c11c2afce19b043f4c1b0cde83b057c160286909ab63180eb6256f48faa2ef") {
		t.Fatalf("push output:\n%s", out)
	}
	run(0, "push", "models/heart-xgb-1.1.0", "--version", "1.1.0", "--notes", "deeper trees")
	if out := run(0, "push", "models/heart-xgb-1.1.0", "--version", "1.1.0"); !strings.Contains(out, "nothing changed") {
		t.Fatalf("second push:\n%s", out)
	}
	if out := run(1, "push", "models/heart-xgb-1.1.0", "--version", "1.0.0"); !strings.Contains(out, "manifest says version") {
		t.Fatalf("mismatched version:\n%s", out)
	}
	run(0, "push", "internal/registry/testdata/poor", "--notes", "shuffled labels")

	out = run(1, "activate", "0.0.1-shuffled", "--reason", "should be refused")
	for _, c := range []string{"FAIL accuracy", "FAIL auc", "FAIL brier"} {
		if !strings.Contains(out, c) {
			t.Errorf("refusal does not name %q:\n%s", c, out)
		}
	}
	if out := run(2, "shadow"); !strings.Contains(out, "VERSION or --off") {
		t.Errorf("shadow without arguments:\n%s", out)
	}
	run(0, "activate", "1.0.0", "--reason", "initial")
	if out := run(0, "activate", "1.1.0", "--reason", "promote"); !strings.Contains(out, "active: 1.0.0 -> 1.1.0") {
		t.Fatalf("activate output:\n%s", out)
	}
	run(0, "shadow", "1.0.0", "--reason", "challenger")
	if out := run(0, "rollback", "--reason", "drill"); !strings.Contains(out, "active: 1.1.0 -> 1.0.0") {
		t.Fatalf("rollback output:\n%s", out)
	}
	run(0, "shadow", "--off")
	if out := run(1, "rollback", "--to", "9.9.9"); !strings.Contains(out, "not found") {
		t.Fatalf("rollback to unknown:\n%s", out)
	}

	var list []registry.VersionInfo
	if err := json.Unmarshal([]byte(run(0, "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, v := range list {
		status[v.Version] = fmt.Sprintf("%v %v %s", v.Active, v.Shadow, v.PushedBy)
	}
	want := map[string]string{"1.0.0": "true false operator@" + hostname(t), "1.1.0": "false false operator@" + hostname(t), "0.0.1-shuffled": "false false operator@" + hostname(t)}
	if fmt.Sprint(status) != fmt.Sprint(want) {
		t.Fatalf("list: %v, want %v", status, want)
	}
	if table := run(0, "list"); !regexp.MustCompile(`(?m)^1\.0\.0\s+active\s+heart-xgb\s+15c11c2afce1\s+0\.8370\s+0\.9088\s+0\.1236`).MatchString(table) {
		t.Errorf("list table:\n%s", table)
	}

	// The history as JSON, and AUDIT as any NATS client reads it, agree.
	var hist []schemas.AuditEntry
	if err := json.Unmarshal([]byte(run(0, "history", "--json")), &hist); err != nil {
		t.Fatal(err)
	}
	js := connectTo(t, url)
	msgs := natstest.StreamMessages(t, js, schemas.StreamAudit)
	if len(msgs) != len(hist) {
		t.Fatalf("history has %d entries, AUDIT %d messages", len(hist), len(msgs))
	}
	var got []string
	for _, e := range hist {
		got = append(got, e.Action+":"+e.FromVersion+">"+e.ToVersion)
	}
	wantHist := []string{"push:>1.0.0", "push:>1.1.0", "push:>0.0.1-shuffled", "gate_refused:>0.0.1-shuffled",
		"activate:>1.0.0", "activate:1.0.0>1.1.0", "shadow_set:>1.0.0", "rollback:1.1.0>1.0.0", "shadow_off:1.0.0>"}
	if strings.Join(got, " ") != strings.Join(wantHist, " ") {
		t.Fatalf("history\n got %v\nwant %v", got, wantHist)
	}

	// Golden files for the stable JSON outputs (times and actors normalised).
	checkGolden(t, "model_show_1.1.0.json", normalise(run(0, "show", "1.1.0", "--json")))
	checkGolden(t, "model_history.json", normalise(run(0, "history", "--json")))

	// compare reads the standalone's streams: predictions of both versions
	// (main and shadow subjects) and outcomes, published as a scorer and a
	// source would.
	publishComparisonFixture(t, js)
	wantCmp := wantComparison(t, js, "1.0.0", "1.1.0")
	if wantCmp.N == 0 || wantCmp.N == wantCmp.Outcomes {
		t.Fatalf("fixture: %d joined of %d outcomes; want some, not all", wantCmp.N, wantCmp.Outcomes)
	}
	cmpJSON := run(0, "compare", "1.0.0", "1.1.0", "--json")
	var cmp comparison
	if err := json.Unmarshal([]byte(cmpJSON), &cmp); err != nil {
		t.Fatalf("%v: %s", err, cmpJSON)
	}
	checkComparison(t, cmp, wantCmp)
	checkGolden(t, "model_compare.json", cmpJSON)
	checkGolden(t, "model_compare.txt", run(0, "compare", "1.0.0", "1.1.0"))
	if out := run(1, "compare", "1.0.0", "0.0.1-shuffled"); !strings.Contains(out, "no record has predictions from both 1.0.0 and 0.0.1-shuffled") {
		t.Errorf("compare with a version that predicted nothing:\n%s", out)
	}
}

// publishComparisonFixture stores predictions of 1.0.0 (main subject) and
// 1.1.0 (shadow subject) for 24 records of two sources, some records
// without one of them or without an outcome, one shadow prediction stored
// twice, and outcomes: fixed numbers, so compare's output is a golden file.
func publishComparisonFixture(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	subj := schemas.NewSubjects("")
	pub := func(subject string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := js.Publish(t.Context(), subject, b); err != nil {
			t.Fatal(err)
		}
	}
	pred := func(subject, src, id, version string, p float64) {
		l := 0
		if p >= 0.5 {
			l = 1
		}
		pub(subject, schemas.Prediction{SchemaVersion: schemas.Version, RecordID: id, Source: src, Probability: p, Label: l,
			Threshold: 0.5, Model: schemas.ModelRef{Name: "heart-xgb", Version: version}})
	}
	for i := range 24 {
		src, id := []string{"clinic-a", "clinic-b"}[i%2], fmt.Sprintf("cmp-%02d", i)
		y := (i * 5) % 7 % 2
		a := float64((i*37)%100) / 100
		b := float64((i*53+11)%100) / 100
		if i%9 != 4 {
			pred(subj.Predictions(src), src, id, "1.0.0", a)
		}
		if i%8 != 3 {
			pred(subj.ShadowPrediction(src), src, id, "1.1.0", b)
		}
		if i == 5 {
			pred(subj.ShadowPrediction(src), src, id, "1.1.0", 1-b) // a duplicate: the first stored counts
		}
		if i%6 != 1 {
			pub(subj.Outcomes(src), schemas.Outcome{SchemaVersion: schemas.Version, RecordID: id, Label: y,
				ObservedAt: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)})
		}
	}
}

func hostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

var (
	timeRE  = regexp.MustCompile(`"(pushed_at|at|changed_at)": "[^"]+"`)
	actorRE = regexp.MustCompile(`"(pushed_by|actor)": "[^"]+"`)
)

func normalise(s string) string {
	s = timeRE.ReplaceAllString(s, `"$1": "TIME"`)
	return actorRE.ReplaceAllString(s, `"$1": "ACTOR"`)
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateRegistryGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/cardiostream -run TestModelLifecycleCLI -update-registry)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (rerun with -update-registry if intended):\n%s", name, got)
	}
}

// TestModelCLIExternalNATSProductionSignatures runs the registry commands
// against an external NATS (not a standalone) in production with a public
// key configured: unsigned artifacts are refused, signed ones activate,
// --force is refused, and no key material reaches the output.
func TestModelCLIExternalNATSProductionSignatures(t *testing.T) {
	ns := natstest.RunServer(t)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "signing.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pubB64 := base64.StdEncoding.EncodeToString(pub)
	env := testEnviron("USER=release", "CARDIOSTREAM_NATS__URL="+ns.ClientURL(), "CARDIOSTREAM_REGISTRY__PUBLIC_KEYS="+pubB64)
	root := filepath.Join("..", "..")
	run := func(wantCode int, args ...string) string {
		t.Helper()
		code, out, errOut := runCmd(t, env, append([]string{"model"}, args...)...)
		if code != wantCode {
			t.Fatalf("model %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, wantCode, out, errOut)
		}
		if strings.Contains(out+errOut, pubB64) || strings.Contains(out+errOut, "PRIVATE KEY") {
			t.Fatalf("model %v printed key material", args)
		}
		return out + errOut
	}
	if out := run(0, "push", filepath.Join(root, "models", "heart-xgb"), "--version", "1.0.0", "--sign-key", keyFile, "--env", "production"); !strings.Contains(out, "signed") {
		t.Fatalf("signed push:\n%s", out)
	}
	run(0, "push", filepath.Join(root, "models", "heart-xgb-1.1.0"), "--env", "production")

	if out := run(1, "activate", "1.1.0", "--env", "production"); !strings.Contains(out, "FAIL integrity") || !strings.Contains(out, "not signed") {
		t.Fatalf("unsigned in production:\n%s", out)
	}
	run(0, "activate", "1.1.0", "--env", "development") // keys set, not production: unsigned accepted
	if out := run(1, "activate", "1.0.0", "--env", "production", "--force"); !strings.Contains(out, "refused in production") {
		t.Fatalf("force in production:\n%s", out)
	}
	if out := run(0, "rollback", "--to", "1.0.0", "--env", "production", "--reason", "signed baseline"); !strings.Contains(out, "active: 1.1.0 -> 1.0.0") {
		t.Fatalf("rollback to the signed version:\n%s", out)
	}
	// Signing the unsigned version later (same artifact, --sign-key) makes it deployable.
	if out := run(0, "push", filepath.Join(root, "models", "heart-xgb-1.1.0"), "--sign-key", keyFile, "--env", "production"); !strings.Contains(out, "signature added") {
		t.Fatalf("adding a signature:\n%s", out)
	}
	run(0, "activate", "1.1.0", "--env", "production")
	if out := run(0, "list", "--env", "production"); !regexp.MustCompile(`(?m)^1\.1\.0\s+active.*\byes\b`).MatchString(out) {
		t.Fatalf("list:\n%s", out)
	}
}
