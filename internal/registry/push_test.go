package registry_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cardiostream/cardiostream/internal/registry"
)

// TestConcurrentPushesOfDifferentArtifacts: two pushers race to store
// different artifacts under one version. Exactly one wins, the other is
// refused before it uploads anything, and what is stored verifies.
func TestConcurrentPushesOfDifferentArtifacts(t *testing.T) {
	e := newEnv(t, nil)
	// variant copies 1.0.0 under version, its manifest's seed set to seed
	// (so two variants differ).
	variant := func(version, seed string) string {
		dir := copyArtifact(t, dirV100)
		p := filepath.Join(dir, "manifest.json")
		man, _ := os.ReadFile(p)
		man = bytes.Replace(man, []byte(`"version": "1.0.0"`), []byte(`"version": "`+version+`"`), 1)
		man = bytes.Replace(man, []byte("\"seed\": 20240601,\n  \"created_by\""), []byte("\"seed\": "+seed+",\n  \"created_by\""), 1)
		if err := os.WriteFile(p, man, 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for round := range 5 {
		version := fmt.Sprintf("3.0.%d", round)
		dirs := []string{variant(version, "1"), variant(version, "2")}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, dir := range dirs {
			r := openRegistry(t, e.js, nil)
			a := readArtifact(t, dir)
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = r.Push(ctx(t), a, registry.PushOptions{Version: version, Actor: "racer@host"})
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, registry.ErrVersionExists):
				t.Fatalf("push: %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("%s: %d pushes won, want exactly 1 (errors %v)", version, won, errs)
		}
		if _, err := e.r.Fetch(ctx(t), version); err != nil {
			t.Fatalf("%s: the winner's artifact does not verify: %v", version, err)
		}
	}
}

// TestInterruptedPushIsIncompleteUntilPushedAgain: a push that stopped after
// reserving the version (state uploading) cannot be fetched or activated;
// pushing the same artifact again finishes it.
func TestInterruptedPushIsIncompleteUntilPushedAgain(t *testing.T) {
	e := newEnv(t, nil)
	res := e.push(t, dirV110, "1.1.0")
	kv, err := e.js.KeyValue(ctx(t), registry.DefaultPointersBucket)
	if err != nil {
		t.Fatal(err)
	}
	md := res.Metadata
	md.State = registry.StateUploading
	b, _ := json.Marshal(md)
	if _, err := kv.Put(ctx(t), registry.VersionKey("1.1.0"), b); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Fetch(ctx(t), "1.1.0"); !errors.Is(err, registry.ErrIncomplete) {
		t.Fatalf("Fetch: err %v, want ErrIncomplete", err)
	}
	if _, err := e.r.Activate(ctx(t), "1.1.0", registry.ChangeOptions{Actor: "a@b", Force: true}); !errors.Is(err, registry.ErrGateRefused) {
		t.Fatalf("Activate: err %v, want a refusal", err)
	}
	again := e.push(t, dirV110, "1.1.0")
	if !again.Created || again.Metadata.State != registry.StateReady {
		t.Fatalf("resumed push: %+v", again)
	}
	if _, err := e.r.Activate(ctx(t), "1.1.0", registry.ChangeOptions{Actor: "a@b"}); err != nil {
		t.Fatal(err)
	}
}

func TestReadArtifact(t *testing.T) {
	byDir := readArtifact(t, dirV100)
	byManifest := readArtifact(t, filepath.Join(dirV100, "manifest.json"))
	if !bytes.Equal(byDir.Model, byManifest.Model) || !bytes.Equal(byDir.Manifest, byManifest.Manifest) ||
		!bytes.Equal(byDir.Golden, byManifest.Golden) || len(byDir.Golden) == 0 {
		t.Fatal("reading the directory and its manifest differ, or no golden file")
	}
	noGolden := copyArtifact(t, dirV100)
	if err := os.Remove(filepath.Join(noGolden, "golden.csv")); err != nil {
		t.Fatal(err)
	}
	if a := readArtifact(t, noGolden); a.Golden != nil {
		t.Fatal("golden read from nowhere")
	}
	for _, bad := range []string{t.TempDir(), filepath.Join(dirV100, "model.json"), filepath.Join(t.TempDir(), "missing")} {
		if _, err := registry.ReadArtifact(bad); !errors.Is(err, registry.ErrInvalidArtifact) {
			t.Errorf("ReadArtifact(%s): err %v, want ErrInvalidArtifact", bad, err)
		}
	}
}
