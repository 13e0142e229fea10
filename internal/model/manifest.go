package model

import (
	"encoding/hex"
	"fmt"
	"io/fs"
	"math"
	"path"

	"github.com/cardiostream/cardiostream/schemas"
)

// ManifestFile is the manifest's file name inside an artifact directory.
const ManifestFile = "manifest.json"

// Manifest mirrors manifest.json, written by training/train.py.
type Manifest struct {
	Name         string   `json:"name"`
	Version      string   `json:"version"`
	FeatureNames []string `json:"feature_names"`
	// Threshold turns a probability into a label: label = probability >= Threshold.
	Threshold float64 `json:"threshold"`
	Objective string  `json:"objective"`
	Booster   string  `json:"booster,omitempty"`
	// TrainingDataSHA256 is the sha256 of the four UCI processed.*.data files
	// concatenated in the order cleveland, hungarian, switzerland, va.
	TrainingDataSHA256 string `json:"training_data_sha256"`
	ModelFile          string `json:"model_file"`
	// ModelSHA256 is the sha256 of the model file's bytes.
	ModelSHA256    string  `json:"model_sha256"`
	Metrics        Metrics `json:"metrics"`
	GoldenFile     string  `json:"golden_file,omitempty"`
	XGBoostVersion string  `json:"xgboost_version,omitempty"`
	Seed           int64   `json:"seed,omitempty"`
	CreatedBy      string  `json:"created_by,omitempty"`
}

// Metrics are the held-out evaluation numbers recorded at training time.
type Metrics struct {
	HeldoutAUC      float64 `json:"heldout_auc"`
	HeldoutAccuracy float64 `json:"heldout_accuracy"`
	HeldoutBrier    float64 `json:"heldout_brier"`
	HeldoutRows     int     `json:"heldout_rows"`
	TrainRows       int     `json:"train_rows"`
	CVAUC           float64 `json:"cv_auc,omitempty"`
}

const defaultGoldenFile = "golden.csv"

// golden returns the golden file name, defaulting to golden.csv.
func (m *Manifest) golden() string {
	if m.GoldenFile == "" {
		return defaultGoldenFile
	}
	return m.GoldenFile
}

// validate checks the manifest against the schema names. It does not touch the model file.
func (m *Manifest) validate(wantFeatures []string) error {
	if m.Name == "" {
		return fmt.Errorf("%w: field name is empty; set it to the artifact name (e.g. \"heart-xgb\")", ErrManifest)
	}
	if m.Version == "" {
		return fmt.Errorf("%w: field version is empty; set it to the artifact version (e.g. \"1.0.0\")", ErrManifest)
	}
	if math.IsNaN(m.Threshold) || m.Threshold <= 0 || m.Threshold >= 1 {
		return fmt.Errorf("%w: field threshold is %v; it must be in (0, 1)", ErrManifest, m.Threshold)
	}
	if m.Objective != objectiveLogistic {
		return fmt.Errorf("%w: manifest objective is %s; only %q is supported", ErrUnsupportedObjective, schemas.Quote(m.Objective), objectiveLogistic)
	}
	if m.Booster != "" && m.Booster != boosterGBTree {
		return fmt.Errorf("%w: manifest booster is %s; only %q is supported", ErrUnsupportedBooster, schemas.Quote(m.Booster), boosterGBTree)
	}
	if err := sameNames("manifest feature_names", m.FeatureNames, wantFeatures); err != nil {
		return err
	}
	for _, f := range []struct{ field, name string }{{"model_file", m.ModelFile}, {"golden_file", m.golden()}} {
		if f.name == "" || !fs.ValidPath(f.name) || path.Base(f.name) != f.name || f.name == "." {
			return fmt.Errorf("%w: field %s is %s; it must be a plain file name inside the artifact directory", ErrManifest, f.field, schemas.Quote(f.name))
		}
	}
	if b, err := hex.DecodeString(m.ModelSHA256); err != nil || len(b) != 32 {
		return fmt.Errorf("%w: field model_sha256 is %s; it must be 64 hex digits (sha256sum of the model file)", ErrManifest, schemas.Quote(m.ModelSHA256))
	}
	return nil
}

// sameNames reports ErrFeatureMismatch naming the first difference.
func sameNames(what string, got, want []string) error {
	if len(got) != len(want) {
		return fmt.Errorf("%w: %s has %d names, the schema has %d (%v); retrain or fix the artifact", ErrFeatureMismatch, what, len(got), len(want), want)
	}
	for i := range want {
		if got[i] != want[i] {
			return fmt.Errorf("%w: %s[%d] is %s, the schema expects %q (order matters); retrain with the schema's feature order", ErrFeatureMismatch, what, i, schemas.Quote(got[i]), want[i])
		}
	}
	return nil
}
