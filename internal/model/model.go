package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/dmitryikh/leaves"

	"github.com/cardiostream/cardiostream/models"
	"github.com/cardiostream/cardiostream/schemas"
)

// NumFeatures is the length of a feature vector, in schemas.FeatureNames order.
const NumFeatures = schemas.NumFeatures

const maxManifestBytes = 1 << 20

// Model is a loaded, checked artifact. It is safe for concurrent use.
type Model struct {
	manifest Manifest
	raw      *leaves.Ensemble // margins; the sigmoid is applied here to keep Predict allocation-free
	fsys     fs.FS
	dir      string
	single   sync.Pool // *singleBuf
}

type singleBuf struct {
	in  [NumFeatures]float64
	out [1]float64
}

// schemaNames returns the schema's feature names as a fresh slice.
func schemaNames() []string {
	names := schemas.FeatureNames
	return names[:]
}

// LoadDefault loads the artifact embedded in the binary (models.DefaultDir).
func LoadDefault() (*Model, error) {
	return LoadDir(models.Default(), models.DefaultDir)
}

// LoadPath loads an artifact from disk. path is the artifact directory or
// the manifest file inside it.
func LoadPath(p string) (*Model, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v; pass the artifact directory (e.g. models/heart-xgb) or its manifest.json", ErrManifest, err)
	}
	if st.IsDir() {
		return LoadDir(os.DirFS(p), ".")
	}
	return loadDir(os.DirFS(filepath.Dir(p)), ".", filepath.Base(p))
}

// LoadDir loads the artifact in directory dir of fsys: manifest.json, then the
// model file it names, whose sha256 must equal the manifest's model_sha256.
func LoadDir(fsys fs.FS, dir string) (*Model, error) {
	return loadDir(fsys, dir, ManifestFile)
}

func loadDir(fsys fs.FS, dir, manifestName string) (*Model, error) {
	mpath := path.Join(dir, manifestName)
	raw, err := readLimited(fsys, mpath, maxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrManifest, mpath, err)
	}
	var man Manifest
	if err := json.Unmarshal(raw, &man); err != nil {
		return nil, fmt.Errorf("%w: %s is not valid JSON: %s", ErrManifest, mpath, schemas.ErrorDetail(err))
	}
	if man.ModelFile == "" && strings.Contains(string(raw), `"learner"`) {
		return nil, fmt.Errorf("%w: %s is an XGBoost model, not a manifest; pass the artifact directory or its manifest.json", ErrManifest, mpath)
	}
	if err := man.validate(schemaNames()); err != nil {
		return nil, fmt.Errorf("%s: %w", mpath, err)
	}

	modelPath := path.Join(dir, man.ModelFile)
	data, err := readLimited(fsys, modelPath, MaxModelBytes)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, fmt.Errorf("%w: %s: %s", ErrFormat, schemas.Clip(modelPath, schemas.MaxErrorDetail), schemas.ErrorDetail(err))
		}
		return nil, fmt.Errorf("%w: reading model file %s: %s", ErrManifest, schemas.Clip(modelPath, schemas.MaxErrorDetail), schemas.ErrorDetail(err))
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, man.ModelSHA256) {
		return nil, fmt.Errorf("%w: %s has sha256 %s, manifest says %s; the model file was changed or the manifest is stale: re-run training/train.py or restore the file",
			ErrChecksum, modelPath, got, man.ModelSHA256)
	}
	ens, err := ParseXGBoostJSON(data, schemaNames())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", modelPath, err)
	}
	m := &Model{manifest: man, raw: ens.EnsembleWithRawPredictions(), fsys: fsys, dir: dir}
	m.single.New = func() any { return new(singleBuf) }
	return m, nil
}

var errTooLarge = errors.New("file too large")

func readLimited(fsys fs.FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", errTooLarge, limit)
	}
	return data, nil
}

// Predict returns the probability of heart disease for one feature vector in
// schemas.FeatureNames order. NaN means missing (never use 0 for missing).
// Each value is rounded to float32 first, as XGBoost does. It does not allocate.
func (m *Model) Predict(features *[NumFeatures]float64) float64 {
	b := m.single.Get().(*singleBuf)
	for i, v := range features {
		b.in[i] = float64(float32(v))
	}
	p := math.NaN()
	// Predict only fails on slice lengths, which are fixed here.
	if err := m.raw.Predict(b.in[:], 0, b.out[:]); err == nil {
		p = sigmoid(b.out[0])
	}
	m.single.Put(b)
	return p
}

// PredictBatch writes the probability of rows[i] to out[i] on the calling
// goroutine. out must be at least as long as rows. It does not allocate.
//
// It calls leaves' single-row Predict per row rather than PredictDense with one
// thread: both run the same loop, but PredictDense allocates on every call
// (variables captured by its multi-threaded branch escape to the heap).
func (m *Model) PredictBatch(rows [][NumFeatures]float64, out []float64) error {
	if len(out) < len(rows) {
		return fmt.Errorf("%w: out has %d elements for %d rows; make it at least as long as rows", ErrInput, len(out), len(rows))
	}
	b := m.single.Get().(*singleBuf)
	defer m.single.Put(b)
	for i := range rows {
		for j, v := range &rows[i] {
			b.in[j] = float64(float32(v))
		}
		if err := m.raw.Predict(b.in[:], 0, out[i:i+1]); err != nil {
			return fmt.Errorf("%w: row %d: %v", ErrInput, i, err)
		}
		out[i] = sigmoid(out[i])
	}
	return nil
}

// sigmoid is the same expression leaves uses for binary:logistic.
func sigmoid(x float64) float64 { return 1.0 / (1.0 + math.Exp(-x)) }

// Name is the manifest's artifact name (e.g. "heart-xgb").
func (m *Model) Name() string { return m.manifest.Name }

// Version is the manifest's artifact version.
func (m *Model) Version() string { return m.manifest.Version }

// SHA256 is the manifest's model_sha256: the sha256 of the model file's bytes,
// verified at load time. It identifies the trees, not the whole artifact.
func (m *Model) SHA256() string { return strings.ToLower(m.manifest.ModelSHA256) }

// Threshold is the probability at or above which a record is labelled 1.
func (m *Model) Threshold() float64 { return m.manifest.Threshold }

// NumTrees is the number of trees in the ensemble.
func (m *Model) NumTrees() int { return m.raw.NEstimators() }

// Manifest returns a copy of the artifact's manifest.
func (m *Model) Manifest() Manifest {
	man := m.manifest
	man.FeatureNames = append([]string(nil), man.FeatureNames...)
	return man
}
