package model

import (
	"errors"
	"math"
	"testing"
	"testing/fstest"
)

// FuzzLoadManifest: whatever manifest.json holds, next to the real model
// file, LoadDir either refuses it with one of the package's sentinel errors
// or returns a model with a threshold in (0, 1) that predicts probabilities.
// Seeds: the embedded manifest and the edits of TestLoadDirRefuses. The
// model file is testdata/tiny.json (two trees), so an accepted manifest
// costs little to load and the fuzzer spends its time on the manifest.
func FuzzLoadManifest(f *testing.F) {
	tiny := readTestdata(f, "tiny.json")
	useTiny := func(fsys fstest.MapFS, m map[string]any) {
		fsys["a/model.json"] = &fstest.MapFile{Data: tiny}
		m["model_sha256"] = sha(tiny)
	}
	base := artifactFS(f, useTiny)
	f.Add(base["a/manifest.json"].Data)
	for _, edit := range []func(map[string]any){
		func(m map[string]any) { m["threshold"] = 0 },
		func(m map[string]any) { m["threshold"] = 1e-320 },
		func(m map[string]any) { m["model_file"] = "../model.json" },
		func(m map[string]any) { m["model_file"] = "/etc/passwd" },
		func(m map[string]any) { m["feature_names"] = []string{"age"} },
		func(m map[string]any) { m["objective"] = "reg:squarederror" },
		func(m map[string]any) { m["model_sha256"] = "XYZ" },
		func(m map[string]any) { delete(m, "name") },
	} {
		fsys := artifactFS(f, func(fs fstest.MapFS, m map[string]any) { useTiny(fs, m); edit(m) })
		f.Add(fsys["a/manifest.json"].Data)
	}
	f.Add([]byte(`{"learner":{}}`))
	f.Add([]byte(`null`))
	sentinels := []error{ErrManifest, ErrChecksum, ErrFormat, ErrUnsupportedBooster, ErrUnsupportedObjective, ErrFeatureMismatch, ErrCategorical, ErrGolden, ErrParity}
	f.Fuzz(func(t *testing.T, manifest []byte) {
		fsys := fstest.MapFS{}
		for k, v := range base {
			fsys[k] = v
		}
		fsys["a/manifest.json"] = &fstest.MapFile{Data: manifest}
		m, err := LoadDir(fsys, "a")
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error wraps no sentinel: %v", err)
		}
		if th := m.Threshold(); !(th > 0 && th < 1) {
			t.Fatalf("accepted threshold %v", th)
		}
		for _, fill := range []float64{math.NaN(), 0, 60, -1e300} {
			var in [NumFeatures]float64
			for i := range in {
				in[i] = fill
			}
			if p := m.Predict(&in); !(p >= 0 && p <= 1) {
				t.Fatalf("probability %v", p)
			}
		}
	})
}
