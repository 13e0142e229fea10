package registry_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/natstest"
	"github.com/cardiostream/cardiostream/internal/registry"
	"github.com/cardiostream/cardiostream/schemas"
)

// Artifact directories committed in the repository.
var (
	dirV100 = filepath.Join("..", "..", "models", "heart-xgb")
	dirV110 = filepath.Join("..", "..", "models", "heart-xgb-1.1.0")
	dirPoor = filepath.Join("testdata", "poor")
)

const poorVersion = "0.0.1-shuffled"

type env struct {
	js jetstream.JetStream
	r  *registry.Registry
}

// newEnv starts a JetStream server and opens a registry on it.
func newEnv(t testing.TB, mutate func(*registry.Config)) *env {
	t.Helper()
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns)
	return &env{js: js, r: openRegistry(t, js, mutate)}
}

func openRegistry(t testing.TB, js jetstream.JetStream, mutate func(*registry.Config)) *registry.Registry {
	t.Helper()
	cfg := registry.DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := registry.Open(ctx(t), js, cfg, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func readArtifact(t testing.TB, dir string) *registry.LocalArtifact {
	t.Helper()
	a, err := registry.ReadArtifact(dir)
	if err != nil {
		t.Fatalf("ReadArtifact(%s): %v", dir, err)
	}
	return a
}

// push pushes dir under version; it must succeed.
func (e *env) push(t testing.TB, dir, version string) *registry.PushResult {
	t.Helper()
	res, err := e.r.Push(ctx(t), readArtifact(t, dir), registry.PushOptions{Version: version, Actor: "tester@host", Notes: "test push"})
	if err != nil {
		t.Fatalf("Push %s: %v", version, err)
	}
	return res
}

// auditEntries reads AUDIT with a plain ordered consumer (not through the
// registry), so the test checks what any NATS client sees.
func auditEntries(t testing.TB, js jetstream.JetStream) []schemas.AuditEntry {
	t.Helper()
	var out []schemas.AuditEntry
	for _, m := range natstest.StreamMessages(t, js, schemas.StreamAudit) {
		var e schemas.AuditEntry
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			t.Fatalf("audit message %s: %v", m.Subject(), err)
		}
		if want := "cardio.audit.model." + e.Action; m.Subject() != want {
			t.Errorf("audit entry %s on subject %s, want %s", e.Action, m.Subject(), want)
		}
		if e.SchemaVersion != schemas.Version || e.At.IsZero() || e.Actor == "" {
			t.Errorf("audit entry %+v: schema_version, at and actor must be set", e)
		}
		out = append(out, e)
	}
	return out
}

func actions(es []schemas.AuditEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Action
	}
	return out
}

// copyArtifact copies dir into a temp dir so a test can modify it.
func copyArtifact(t testing.TB, dir string) string {
	t.Helper()
	out := t.TempDir()
	for _, f := range []string{"manifest.json", "model.json", "golden.csv"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
