package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/registry"
	"github.com/cardiostream/cardiostream/schemas"
)

// refusalEnv is what a refusal case works with: the server, two signing
// keys (a, whose public key the scorer is configured with, and b, which it
// does not know) and the bearer token of the scorer's /metrics.
type refusalEnv struct {
	url        string
	js         jetstream.JetStream
	kv         jetstream.KeyValue // the registry bucket, once a push made it; see registryKV
	keyA, keyB string             // PEM private key files
	pubA       string             // base64 of a's public key
	token      string             // MONITORING_KEY of a production scorer

	sha100, sha110 string
	withheld       []byte // a version's metadata, kept out of the registry for a while
}

// cli runs `cardiostream model ARGS` as an operator whose CLI has no
// registry.public_keys (development): its gates verify integrity but ask
// for no signature.
func (e *refusalEnv) cli(t testing.TB, out any, args ...string) {
	t.Helper()
	lifecycle(t, e.url, out, args...)
}

// sha returns a pushed version's sha256 (its model.json's).
func (e *refusalEnv) sha(t testing.TB, version string) string {
	t.Helper()
	var show struct {
		SHA256 string `json:"sha256"`
	}
	e.cli(t, &show, "show", version)
	return show.SHA256
}

// registryKV opens the registry's KV bucket (made by the first push).
func (e *refusalEnv) registryKV(t testing.TB) jetstream.KeyValue {
	t.Helper()
	if e.kv == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		kv, err := e.js.KeyValue(ctx, registry.DefaultPointersBucket)
		if err != nil {
			t.Fatal(err)
		}
		e.kv = kv
	}
	return e.kv
}

// putActive writes the active pointer directly, as a tool writing the KV
// bucket (not `model activate`, whose gates would refuse) would.
func (e *refusalEnv) putActive(t testing.TB, version, sha, previous string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ptr, _ := json.Marshal(registry.Pointer{Version: version, SHA256: sha, ChangedAt: time.Now().UTC(), Actor: "refusal-test", Previous: previous})
	if _, err := e.registryKV(t).Put(ctx, registry.KeyActive, ptr); err != nil {
		t.Fatal(err)
	}
}

// refusalCase is one way the active pointer comes to name an artifact a
// scorer must refuse.
type refusalCase struct {
	name   string
	reason string // cardiostream_scorer_artifact_refusals_total{reason}
	// production runs the scorer with DEPLOYMENT_ENV=production (and what
	// production requires); signed configures public key a.
	production, signed bool
	// setup pushes and activates 1.0.0 and prepares the refused version,
	// before the scorer starts; it returns that version.
	setup func(t *testing.T, e *refusalEnv) string
	// point moves the active pointer to it, while the scorer serves 1.0.0.
	point func(t *testing.T, e *refusalEnv, version string)
	// recover moves the active pointer back to 1.0.0.
	recover func(t *testing.T, e *refusalEnv)
}

func pushActivate100(t *testing.T, e *refusalEnv, signed bool) {
	t.Helper()
	args := []string{"push", artifactV100, "--version", "1.0.0"}
	if signed {
		args = append(args, "--sign-key", e.keyA)
	}
	e.cli(t, nil, args...)
	e.cli(t, nil, "activate", "1.0.0", "--reason", "initial")
}

func rollbackCLI(t *testing.T, e *refusalEnv) {
	e.cli(t, nil, "rollback", "--to", "1.0.0", "--reason", "refused artifact")
}

// unloadableArtifact writes 1.0.0 with its model's objective changed to
// reg:squarederror (which the loader refuses) as version 1.2.0-broken: a
// well-formed artifact whose manifest names the changed model's sha256, so
// push accepts it and every sha256 in the registry matches.
func unloadableArtifact(t *testing.T) string {
	t.Helper()
	model, err := os.ReadFile(filepath.Join(artifactV100, "model.json"))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(model), `"name":"binary:logistic"`, `"name":"reg:squarederror"`, 1)
	if broken == string(model) {
		t.Fatal("model.json has no binary:logistic objective to change")
	}
	var man map[string]any
	b, err := os.ReadFile(filepath.Join(artifactV100, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &man); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(broken))
	man["version"], man["model_sha256"] = "1.2.0-broken", hex.EncodeToString(sum[:])
	dir := t.TempDir()
	mb, _ := json.Marshal(man)
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), mb, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.json"), []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestArtifactRefusedByScorer: beside TestTamperedArtifactRefused (reason
// tampered), every other refusal reason a scorer process defines, end to
// end. A `cardiostream scorer` OS process serves 1.0.0; the active pointer
// is moved to an artifact it must refuse; the scorer keeps serving 1.0.0
// (records published afterwards are scored by 1.0.0), /readyz says
// degraded (still 200) naming the version and reason, the degraded gauge
// is 1, the refusal counter counts exactly the expected reason, AUDIT holds
// one artifact_refused entry by this scorer process, and a monitor process
// raises the model_artifact_refused alert in ALERTS. Moving the pointer
// back to 1.0.0 clears the degradation.
func TestArtifactRefusedByScorer(t *testing.T) {
	cases := []refusalCase{
		{
			// Production with a public key configured: the scorer requires
			// signatures. The operator's CLI has no key configured, so its
			// gates let the unsigned 1.1.0 through (the registry tests cover
			// a CLI that has the key); the scorer is the last line.
			name: "unsigned in production", reason: "unsigned", production: true, signed: true,
			setup: func(t *testing.T, e *refusalEnv) string {
				pushActivate100(t, e, true)
				e.cli(t, nil, "push", artifactV110, "--version", "1.1.0")
				return "1.1.0"
			},
			point:   func(t *testing.T, e *refusalEnv, v string) { e.cli(t, nil, "activate", v, "--reason", "unsigned") },
			recover: rollbackCLI,
		},
		{
			// Signed, but with a key the scorer does not know.
			name: "signed by an unknown key", reason: "bad_signature", signed: true,
			setup: func(t *testing.T, e *refusalEnv) string {
				pushActivate100(t, e, true)
				e.cli(t, nil, "push", artifactV110, "--version", "1.1.0", "--sign-key", e.keyB)
				return "1.1.0"
			},
			point:   func(t *testing.T, e *refusalEnv, v string) { e.cli(t, nil, "activate", v, "--reason", "other key") },
			recover: rollbackCLI,
		},
		{
			// A well-formed push of a model the loader refuses (its sha256
			// matches the registry). The gates refuse it (load FAIL); in
			// development `--force` bypasses failed checks, recorded as
			// forced, so an operator can deploy it there; the scorer still
			// must not.
			name: "unloadable, forced past the gates", reason: "unloadable",
			setup: func(t *testing.T, e *refusalEnv) string {
				pushActivate100(t, e, false)
				e.cli(t, nil, "push", unloadableArtifact(t), "--version", "1.2.0-broken")
				return "1.2.0-broken"
			},
			point: func(t *testing.T, e *refusalEnv, v string) {
				var res registry.ChangeResult
				e.cli(t, &res, "activate", v, "--force", "--reason", "forced")
				if !res.Forced || res.Gates == nil || len(res.Gates.Failed()) == 0 || res.Gates.Failed()[0].Name != registry.CheckLoad {
					t.Fatalf("activate --force: forced %v, gates %+v; want forced past a failed load check", res.Forced, res.Gates)
				}
			},
			recover: rollbackCLI,
		},
		{
			// A pointer naming a version the registry does not hold (e.g.
			// restored from another cluster's backup).
			name: "version not in the registry", reason: "not_found",
			setup: func(t *testing.T, e *refusalEnv) string {
				pushActivate100(t, e, false)
				return "9.9.9"
			},
			point: func(t *testing.T, e *refusalEnv, v string) {
				e.putActive(t, v, strings.Repeat("ab", 32), "1.0.0")
			},
			recover: rollbackCLI,
		},
		{
			// The registry lists 1.1.0 but its object store cannot be read
			// (deleted here; in a cluster, a bucket that lost its quorum).
			// 1.1.0's metadata is withheld (deleted, put back later) until
			// the bucket is gone: the scorer prefetches every listed
			// version, and a prefetched model needs no fetch.
			name: "object store unavailable", reason: "unavailable",
			setup: func(t *testing.T, e *refusalEnv) string {
				pushActivate100(t, e, false)
				e.cli(t, nil, "push", artifactV110, "--version", "1.1.0")
				e.sha100, e.sha110 = e.sha(t, "1.0.0"), e.sha(t, "1.1.0")
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				md, err := e.registryKV(t).Get(ctx, registry.VersionKey("1.1.0"))
				if err != nil {
					t.Fatal(err)
				}
				e.withheld = md.Value()
				if err := e.registryKV(t).Delete(ctx, registry.VersionKey("1.1.0")); err != nil {
					t.Fatal(err)
				}
				return "1.1.0"
			},
			point: func(t *testing.T, e *refusalEnv, v string) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := e.js.DeleteStream(ctx, "OBJ_"+registry.DefaultModelsBucket); err != nil {
					t.Fatal(err)
				}
				if _, err := e.registryKV(t).Put(ctx, registry.VersionKey(v), e.withheld); err != nil {
					t.Fatal(err)
				}
				e.putActive(t, v, e.sha110, "1.0.0")
			},
			// A CLI rollback's gates would read 1.0.0 from the missing
			// bucket; the pointer is written back directly (the scorer
			// still holds 1.0.0).
			recover: func(t *testing.T, e *refusalEnv) { e.putActive(t, "1.0.0", e.sha100, "1.1.0") },
		},
	}
	for _, c := range cases {
		t.Run(c.reason, func(t *testing.T) { runRefusal(t, c) })
	}
}

// writeSigningKey writes a fresh ed25519 key as a PEM PKCS #8 file and
// returns the file and the base64 public key.
func writeSigningKey(t *testing.T) (file, pub string) {
	t.Helper()
	pk, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(t.TempDir(), "signing.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, base64.StdEncoding.EncodeToString(pk)
}

// scrapeToken is scrape with a bearer token ("" for none).
func scrapeToken(t testing.TB, addr, token string) map[string]*dto.MetricFamily {
	t.Helper()
	if token == "" {
		return scrape(t, addr)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scraping %s: %v", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s", addr, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parsing metrics: %v", err)
	}
	return fams
}

func runRefusal(t *testing.T, c refusalCase) {
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns)
	natstest.EnsureStreams(t, js, nil)
	e := &refusalEnv{url: ns.ClientURL(), js: js}
	e.keyA, e.pubA = writeSigningKey(t)
	e.keyB, _ = writeSigningKey(t)
	version := c.setup(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var env []string
	if c.signed {
		env = append(env, "CARDIOSTREAM_REGISTRY__PUBLIC_KEYS="+e.pubA)
	}
	if c.production {
		e.token = "monitoring-" + strings.Repeat("m", 24)
		env = append(env, "DEPLOYMENT_ENV=production", "ALERT_WEBHOOK=https://alerts.example.invalid/hook",
			"ALERT_WEBHOOK_SECRET="+strings.Repeat("s", 40), "API_KEY=api-"+strings.Repeat("k", 24), "MONITORING_KEY="+e.token)
	}
	sc := startProcessEnv(t, env, "scorer", "--nats-url", e.url)
	startProcess(t, "monitor", "--nats-url", e.url)
	pid := strconv.Itoa(sc.cmd.Process.Pid)
	natstest.Eventually(t, 90*time.Second, func() error {
		if v, _ := metricValue(scrapeToken(t, sc.metricsAddr, e.token), "cardiostream_scorer_model_info", "version", "1.0.0"); v != 1 {
			return fmt.Errorf("scorer does not serve 1.0.0 yet")
		}
		return nil
	})
	if c.production && !strings.Contains(sc.stderr.String(), `"env":"production"`) {
		t.Fatalf("the scorer does not say it runs in production:\n%s", sc.stderr.String())
	}
	defer func() {
		if t.Failed() {
			t.Logf("scorer stderr:\n%s", sc.stderr.String())
		}
		if testing.Verbose() {
			for _, l := range strings.Split(sc.stderr.String(), "\n") {
				if strings.Contains(l, "refused") {
					t.Log(l)
				}
			}
		}
	}()

	c.point(t, e, version)
	natstest.Eventually(t, 90*time.Second, func() error {
		fams := scrapeToken(t, sc.metricsAddr, e.token)
		if v := mustMetric(t, fams, "cardiostream_scorer_model_degraded"); v != 1 {
			return fmt.Errorf("model_degraded = %v", v)
		}
		if v := mustMetric(t, fams, "cardiostream_scorer_artifact_refusals_total", "reason", c.reason); v != 1 {
			return fmt.Errorf("artifact_refusals_total{reason=%s} = %v", c.reason, v)
		}
		return nil
	})
	fams := scrapeToken(t, sc.metricsAddr, e.token)
	for _, r := range refusalReasons {
		if v := mustMetric(t, fams, "cardiostream_scorer_artifact_refusals_total", "reason", r); r != c.reason && v != 0 {
			t.Errorf("artifact_refusals_total{reason=%s} = %v; only %s was expected", r, v, c.reason)
		}
	}
	if v, _ := metricValue(fams, "cardiostream_scorer_model_info", "version", "1.0.0"); v != 1 {
		t.Errorf("the scorer no longer reports serving 1.0.0")
	}
	want := fmt.Sprintf("%s refused (%s)", version, c.reason)
	if code, body := readyz(t, sc.metricsAddr); code != http.StatusOK || !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, want) {
		t.Errorf("/readyz: %d %s; want 200, degraded, %q", code, body, want)
	}
	var entries []schemas.AuditEntry
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamAudit) {
		var a schemas.AuditEntry
		if err := json.Unmarshal(m.Data(), &a); err != nil {
			t.Fatal(err)
		}
		if a.Action == schemas.AuditArtifactRefused {
			entries = append(entries, a)
		}
	}
	if len(entries) != 1 || entries[0].ToVersion != version || entries[0].FromVersion != "1.0.0" ||
		!strings.HasPrefix(entries[0].Reason, c.reason+" ") || !strings.HasPrefix(entries[0].Actor, "cardiostream-scorer@") || !strings.HasSuffix(entries[0].Actor, " pid "+pid) {
		t.Fatalf("artifact_refused audit entries: %+v; want one by the scorer process (pid %s), %s, 1.0.0 -> %s", entries, pid, c.reason, version)
	}
	natstest.Eventually(t, 90*time.Second, func() error {
		for _, m := range natstest.StreamMessages(t, js, schemas.StreamAlerts) {
			var a schemas.Alert
			if json.Unmarshal(m.Data(), &a) == nil && a.Rule == "model_artifact_refused" && a.Status == schemas.AlertFiring && strings.Contains(a.Summary, version) {
				return nil
			}
		}
		return fmt.Errorf("no model_artifact_refused alert for %s in ALERTS", version)
	})

	// The old model keeps serving, and the outputs say which process made them.
	for i := range 50 {
		if _, err := js.Publish(ctx, "cardio.records.after", syntheticRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, 90*time.Second, func() error {
		ms := natstest.StreamMessages(t, js, schemas.StreamPredictions)
		if len(ms) != 50 {
			return fmt.Errorf("%d of 50 predictions", len(ms))
		}
		for _, m := range ms {
			var p schemas.Prediction
			if err := json.Unmarshal(m.Data(), &p); err != nil {
				t.Fatal(err)
			}
			if p.Model.Version != "1.0.0" || !strings.HasSuffix(m.Headers().Get(schemas.ScorerHeader), " pid "+pid) {
				t.Fatalf("prediction by %s (scorer %q) while %s is refused", p.Model.Version, m.Headers().Get(schemas.ScorerHeader), version)
			}
		}
		return nil
	})

	c.recover(t, e)
	natstest.Eventually(t, 90*time.Second, func() error {
		if v := mustMetric(t, scrapeToken(t, sc.metricsAddr, e.token), "cardiostream_scorer_model_degraded"); v != 0 {
			return fmt.Errorf("model_degraded = %v after the pointer went back to 1.0.0", v)
		}
		return nil
	})
	if code, body := readyz(t, sc.metricsAddr); code != http.StatusOK || strings.Contains(body, "degraded") {
		t.Errorf("/readyz after the pointer went back: %d %s", code, body)
	}
	if err := sc.healthy(); err != nil {
		t.Fatal(err)
	}
}
