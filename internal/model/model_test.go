package model

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cardiostream/cardiostream/models"
)

var update = flag.Bool("update", false, "rewrite testdata/refusals.golden and the committed fuzz seed corpus")

func loadDefault(tb testing.TB) *Model {
	tb.Helper()
	m, err := LoadDefault()
	if err != nil {
		tb.Fatalf("LoadDefault: %v", err)
	}
	return m
}

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// goldenRows reads the embedded golden.csv as feature rows and XGBoost probabilities.
func goldenRows(tb testing.TB) ([][NumFeatures]float64, []float64) {
	tb.Helper()
	data, err := fs.ReadFile(models.Default(), models.DefaultDir+"/golden.csv")
	if err != nil {
		tb.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		tb.Fatal(err)
	}
	rows := make([][NumFeatures]float64, 0, len(recs)-1)
	probs := make([]float64, 0, len(recs)-1)
	for _, rec := range recs[1:] {
		var r [NumFeatures]float64
		for i := range r {
			if r[i], err = parseCell(rec[i]); err != nil {
				tb.Fatal(err)
			}
		}
		p, err := strconv.ParseFloat(rec[NumFeatures], 64)
		if err != nil {
			tb.Fatal(err)
		}
		rows = append(rows, r)
		probs = append(probs, p)
	}
	return rows, probs
}

func TestDefaultParity(t *testing.T) {
	m := loadDefault(t)
	rep, err := m.VerifyGolden()
	if err != nil {
		t.Fatalf("VerifyGolden: %v (report %+v)", err, rep)
	}
	if rep.Rows != 920 {
		t.Fatalf("compared %d rows, want 920", rep.Rows)
	}
	if rep.MaxAbsDiff > ParityTolerance {
		t.Fatalf("max |Go-XGBoost| = %g at line %d, tolerance %g", rep.MaxAbsDiff, rep.WorstLine, ParityTolerance)
	}
	t.Logf("parity: %d rows, max abs diff %.3g (line %d)", rep.Rows, rep.MaxAbsDiff, rep.WorstLine)
}

func TestDefaultManifest(t *testing.T) {
	m := loadDefault(t)
	if m.Name() != "heart-xgb" || m.Version() == "" || len(m.SHA256()) != 64 {
		t.Fatalf("name %q version %q sha %q", m.Name(), m.Version(), m.SHA256())
	}
	if m.Threshold() != 0.5 {
		t.Errorf("threshold %v, want 0.5", m.Threshold())
	}
	man := m.Manifest()
	if man.Metrics.HeldoutRows == 0 || man.Metrics.HeldoutAUC < 0.85 || man.Metrics.HeldoutAccuracy < 0.80 {
		t.Errorf("metrics %+v below the 0.85 AUC / 0.80 accuracy target", man.Metrics)
	}
	man.FeatureNames[0] = "changed"
	if m.Manifest().FeatureNames[0] != "age" {
		t.Error("Manifest() shares its FeatureNames slice with the model")
	}
}

func TestPredictBatchMatchesPredict(t *testing.T) {
	m := loadDefault(t)
	rows, want := goldenRows(t)
	out := make([]float64, len(rows))
	if err := m.PredictBatch(rows, out); err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		if p := m.Predict(&rows[i]); p != out[i] {
			t.Fatalf("row %d: Predict %v, PredictBatch %v", i, p, out[i])
		}
		if d := math.Abs(out[i] - want[i]); d > ParityTolerance {
			t.Fatalf("row %d: PredictBatch %v, XGBoost %v (diff %g)", i, out[i], want[i], d)
		}
	}
	if err := m.PredictBatch(rows, out[:1]); !errors.Is(err, ErrInput) {
		t.Fatalf("short out: err %v, want ErrInput", err)
	}
}

func TestPredictMissingAndRounding(t *testing.T) {
	m := loadDefault(t)
	var allMissing [NumFeatures]float64
	for i := range allMissing {
		allMissing[i] = math.NaN()
	}
	if p := m.Predict(&allMissing); math.IsNaN(p) || p <= 0 || p >= 1 {
		t.Fatalf("all-missing probability %v, want a probability", p)
	}
	rows, _ := goldenRows(t)
	r := rows[0]
	nudged := r
	for i := range nudged {
		nudged[i] = float64(float32(nudged[i]))
	}
	if m.Predict(&r) != m.Predict(&nudged) {
		t.Fatal("Predict is not invariant under float32 rounding of its inputs")
	}
}

func TestPredictAllocs(t *testing.T) {
	m := loadDefault(t)
	rows, _ := goldenRows(t)
	out := make([]float64, len(rows))
	_ = m.PredictBatch(rows, out) // warm the pool
	if n := testing.AllocsPerRun(100, func() { m.Predict(&rows[0]) }); n != 0 {
		t.Errorf("Predict allocates %v times per call, want 0", n)
	}
	if n := testing.AllocsPerRun(20, func() { _ = m.PredictBatch(rows, out) }); n != 0 {
		t.Errorf("PredictBatch allocates %v times per call, want 0", n)
	}
}

func TestLoadPath(t *testing.T) {
	dir := filepath.Join("..", "..", "models", models.DefaultDir)
	for _, tc := range []struct {
		name    string
		path    string
		wantErr error
	}{
		{name: "directory", path: dir},
		{name: "manifest", path: filepath.Join(dir, ManifestFile)},
		{name: "model file instead of manifest", path: filepath.Join(dir, "model.json"), wantErr: ErrManifest},
		{name: "missing", path: filepath.Join(t.TempDir(), "nope"), wantErr: ErrManifest},
		{name: "empty directory", path: t.TempDir(), wantErr: ErrManifest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := LoadPath(tc.path)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err == nil {
				if _, err := m.VerifyGolden(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// mutateJSON decodes tiny.json, lets f change it and re-encodes it.
func mutateJSON(tb testing.TB, f func(learner map[string]any, tree0 map[string]any)) []byte {
	tb.Helper()
	var doc map[string]any
	if err := json.Unmarshal(readTestdata(tb, "tiny.json"), &doc); err != nil {
		tb.Fatal(err)
	}
	learner := doc["learner"].(map[string]any)
	gb := learner["gradient_booster"].(map[string]any)
	tree0 := gb["model"].(map[string]any)["trees"].([]any)[0].(map[string]any)
	f(learner, tree0)
	b, err := json.Marshal(doc)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

type refusalCase struct {
	name    string
	data    []byte
	wantErr error
}

func refusalCases(tb testing.TB) []refusalCase {
	tb.Helper()
	tiny := readTestdata(tb, "tiny.json")
	rnd := make([]byte, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range rnd {
		rnd[i] = byte(r.Uint32())
	}
	return []refusalCase{
		{"empty", nil, ErrFormat},
		{"truncated JSON", tiny[:len(tiny)/2], ErrFormat},
		{"random bytes", rnd, ErrFormat},
		{"text", []byte("hello, not a model\n"), ErrFormat},
		{"JSON array", []byte("[1,2,3]"), ErrFormat},
		{"empty object", []byte("{}"), ErrFormat},
		{"XGBoost 1.7 binary", readTestdata(tb, "tiny-xgb17.bin"), ErrFormat},
		{"UBJSON", readTestdata(tb, "tiny.ubj"), ErrFormat},
		{"gblinear", readTestdata(tb, "gblinear.json"), ErrUnsupportedBooster},
		{"dart", readTestdata(tb, "dart.json"), ErrUnsupportedBooster},
		{"objective reg:squarederror", readTestdata(tb, "objective-squarederror.json"), ErrUnsupportedObjective},
		{"objective binary:logitraw", readTestdata(tb, "objective-logitraw.json"), ErrUnsupportedObjective},
		{"feature names swapped", readTestdata(tb, "features-swapped.json"), ErrFeatureMismatch},
		{"categorical", readTestdata(tb, "categorical.json"), ErrCategorical},
		{"no feature names", mutateJSON(tb, func(l, _ map[string]any) { delete(l, "feature_names") }), ErrFeatureMismatch},
		{"num_feature 12", mutateJSON(tb, func(l, _ map[string]any) {
			l["learner_model_param"].(map[string]any)["num_feature"] = "12"
		}), ErrFeatureMismatch},
		{"base_score 1", mutateJSON(tb, func(l, _ map[string]any) {
			l["learner_model_param"].(map[string]any)["base_score"] = "1"
		}), ErrFormat},
		{"cycle", mutateJSON(tb, func(_, t0 map[string]any) { t0["left_children"].([]any)[1] = 0.0 }), ErrFormat},
		{"self loop", mutateJSON(tb, func(_, t0 map[string]any) { t0["left_children"].([]any)[1] = 1.0 }), ErrFormat},
		{"child out of range", mutateJSON(tb, func(_, t0 map[string]any) { t0["right_children"].([]any)[0] = 1000.0 }), ErrFormat},
		{"half leaf", mutateJSON(tb, func(_, t0 map[string]any) { t0["right_children"].([]any)[0] = -1.0 }), ErrFormat},
		{"split index out of range", mutateJSON(tb, func(_, t0 map[string]any) { t0["split_indices"].([]any)[0] = 13.0 }), ErrFormat},
		{"split index negative", mutateJSON(tb, func(_, t0 map[string]any) { t0["split_indices"].([]any)[0] = -1.0 }), ErrFormat},
		{"array lengths differ", mutateJSON(tb, func(_, t0 map[string]any) {
			t0["split_conditions"] = t0["split_conditions"].([]any)[1:]
		}), ErrFormat},
		{"num_nodes wrong", mutateJSON(tb, func(_, t0 map[string]any) {
			t0["tree_param"].(map[string]any)["num_nodes"] = "1000000000"
		}), ErrFormat},
		{"huge threshold", mutateJSON(tb, func(_, t0 map[string]any) { t0["split_conditions"].([]any)[0] = 1e300 }), ErrFormat},
		{"split_type categorical", mutateJSON(tb, func(_, t0 map[string]any) { t0["split_type"].([]any)[0] = 1.0 }), ErrCategorical},
		{"no trees", mutateJSON(tb, func(l, _ map[string]any) {
			m := l["gradient_booster"].(map[string]any)["model"].(map[string]any)
			m["trees"], m["tree_info"] = []any{}, []any{}
			m["gbtree_model_param"].(map[string]any)["num_trees"] = "0"
		}), ErrFormat},
		{"NaN threshold", regexp.MustCompile(`"split_conditions":\[[^,]+`).ReplaceAll(tiny, []byte(`"split_conditions":[NaN`)), ErrFormat},
		{"Infinity leaf", regexp.MustCompile(`(-?[0-9.]+E-?[0-9]+)\],"split_indices"`).ReplaceAll(tiny, []byte(`-Infinity],"split_indices"`)), ErrFormat},
		{"multi-output tree_info", mutateJSON(tb, func(l, _ map[string]any) {
			l["gradient_booster"].(map[string]any)["model"].(map[string]any)["tree_info"].([]any)[1] = 1.0
		}), ErrUnsupportedObjective},
	}
}

func TestParseXGBoostJSONRefuses(t *testing.T) {
	var golden strings.Builder
	for _, tc := range refusalCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			ens, err := ParseXGBoostJSON(tc.data, schemaNames())
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if ens != nil {
				t.Fatal("got an ensemble with an error")
			}
		})
		_, err := ParseXGBoostJSON(tc.data, schemaNames())
		fmt.Fprintf(&golden, "%s: %v\n", tc.name, err)
	}
	checkGoldenFile(t, "refusals.golden", golden.String())
}

func checkGoldenFile(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs; run with -update if the change is intended\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

func TestParseXGBoostJSONAccepts(t *testing.T) {
	ens, err := ParseXGBoostJSON(readTestdata(t, "tiny.json"), schemaNames())
	if err != nil {
		t.Fatal(err)
	}
	if ens.NFeatures() != NumFeatures || ens.NEstimators() != 2 {
		t.Fatalf("features %d trees %d", ens.NFeatures(), ens.NEstimators())
	}
}

// artifactFS copies the embedded artifact into a MapFS under "a/" and applies edit.
func artifactFS(tb testing.TB, edit func(fsys fstest.MapFS, man map[string]any)) fstest.MapFS {
	tb.Helper()
	fsys := fstest.MapFS{}
	for _, f := range []string{"manifest.json", "model.json", "golden.csv"} {
		b, err := fs.ReadFile(models.Default(), models.DefaultDir+"/"+f)
		if err != nil {
			tb.Fatal(err)
		}
		fsys["a/"+f] = &fstest.MapFile{Data: b}
	}
	var man map[string]any
	if err := json.Unmarshal(fsys["a/manifest.json"].Data, &man); err != nil {
		tb.Fatal(err)
	}
	edit(fsys, man)
	b, err := json.Marshal(man)
	if err != nil {
		tb.Fatal(err)
	}
	fsys["a/manifest.json"] = &fstest.MapFile{Data: b}
	return fsys
}

func sha(b []byte) string {
	s := fmt.Sprintf("%x", sha256Sum(b))
	return s
}

func TestLoadDirRefuses(t *testing.T) {
	bin := readTestdata(t, "tiny-xgb17.bin")
	for _, tc := range []struct {
		name    string
		edit    func(fstest.MapFS, map[string]any)
		wantErr error
	}{
		{"unchanged", func(fstest.MapFS, map[string]any) {}, nil},
		{"wrong sha", func(_ fstest.MapFS, m map[string]any) { m["model_sha256"] = strings.Repeat("0", 64) }, ErrChecksum},
		{"model edited", func(f fstest.MapFS, _ map[string]any) {
			f["a/model.json"].Data = append(bytes.Clone(f["a/model.json"].Data), ' ')
		}, ErrChecksum},
		{"sha not hex", func(_ fstest.MapFS, m map[string]any) { m["model_sha256"] = "xyz" }, ErrManifest},
		{"manifest features swapped", func(_ fstest.MapFS, m map[string]any) {
			n := m["feature_names"].([]any)
			n[0], n[1] = n[1], n[0]
		}, ErrFeatureMismatch},
		{"manifest objective", func(_ fstest.MapFS, m map[string]any) { m["objective"] = "reg:squarederror" }, ErrUnsupportedObjective},
		{"threshold 0", func(_ fstest.MapFS, m map[string]any) { m["threshold"] = 0 }, ErrManifest},
		{"no name", func(_ fstest.MapFS, m map[string]any) { delete(m, "name") }, ErrManifest},
		{"model_file escapes", func(_ fstest.MapFS, m map[string]any) { m["model_file"] = "../model.json" }, ErrManifest},
		{"model file missing", func(f fstest.MapFS, _ map[string]any) { delete(f, "a/model.json") }, ErrManifest},
		{"XGBoost 1.7 binary with matching sha", func(f fstest.MapFS, m map[string]any) {
			f["a/model.bin"] = &fstest.MapFile{Data: bin}
			m["model_file"], m["model_sha256"] = "model.bin", sha(bin)
		}, ErrFormat},
		{"gblinear with matching sha", func(f fstest.MapFS, m map[string]any) {
			b := readTestdata(t, "gblinear.json")
			f["a/model.json"] = &fstest.MapFile{Data: b}
			m["model_sha256"] = sha(b)
		}, ErrUnsupportedBooster},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := LoadDir(artifactFS(t, tc.edit), "a")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err == nil && m.Name() != "heart-xgb" {
				t.Fatalf("name %q", m.Name())
			}
		})
	}
	t.Run("manifest missing", func(t *testing.T) {
		if _, err := LoadDir(fstest.MapFS{}, "a"); !errors.Is(err, ErrManifest) {
			t.Fatalf("err %v, want ErrManifest", err)
		}
	})
	t.Run("manifest not JSON", func(t *testing.T) {
		fsys := fstest.MapFS{"a/manifest.json": &fstest.MapFile{Data: []byte("{")}}
		if _, err := LoadDir(fsys, "a"); !errors.Is(err, ErrManifest) {
			t.Fatalf("err %v, want ErrManifest", err)
		}
	})
}

func TestCheckGoldenRefuses(t *testing.T) {
	m := loadDefault(t)
	for _, tc := range []struct {
		name    string
		golden  func([]byte) []byte
		wantErr error
	}{
		{"unchanged", func(b []byte) []byte { return b }, nil},
		{"probability off", func(b []byte) []byte {
			lines := strings.SplitN(string(b), "\n", 3)
			cells := strings.Split(lines[1], ",")
			cells[len(cells)-1] = "0.01"
			lines[1] = strings.Join(cells, ",")
			return []byte(strings.Join(lines, "\n"))
		}, ErrParity},
		{"wrong header", func(b []byte) []byte { return bytes.Replace(b, []byte("age,"), []byte("AGE,"), 1) }, ErrGolden},
		{"header only", func(b []byte) []byte { return b[:bytes.IndexByte(b, '\n')+1] }, ErrGolden},
		{"bad cell", func(b []byte) []byte { return bytes.Replace(b, []byte("63.0,"), []byte("x,"), 1) }, ErrGolden},
		{"missing", nil, ErrGolden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := artifactFS(t, func(f fstest.MapFS, _ map[string]any) {
				if tc.golden == nil {
					delete(f, "a/golden.csv")
					return
				}
				f["a/golden.csv"].Data = tc.golden(f["a/golden.csv"].Data)
			})
			rep, err := m.CheckGolden(fsys, "a")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v (report %+v)", err, tc.wantErr, rep)
			}
			if tc.wantErr == ErrParity && (rep.OK() || rep.WorstLine != 2) {
				t.Fatalf("report %+v, want worst line 2 and not OK", rep)
			}
		})
	}
}

func BenchmarkPredict(b *testing.B) {
	m := loadDefault(b)
	rows, _ := goldenRows(b)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		m.Predict(&rows[i])
		if i++; i == len(rows) {
			i = 0
		}
	}
}

func BenchmarkPredictBatch(b *testing.B) {
	m := loadDefault(b)
	rows, _ := goldenRows(b)
	out := make([]float64, len(rows))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := m.PredictBatch(rows, out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(rows))/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkLoadDefault(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadDefault(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestPredictConcurrent(t *testing.T) {
	m := loadDefault(t)
	rows, want := goldenRows(t)
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			out := make([]float64, len(rows))
			for i := range rows {
				if p := m.Predict(&rows[i]); math.Abs(p-want[i]) > ParityTolerance {
					errs <- fmt.Errorf("row %d: %v, want %v", i, p, want[i])
					return
				}
			}
			if err := m.PredictBatch(rows, out); err != nil {
				errs <- err
				return
			}
			errs <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
