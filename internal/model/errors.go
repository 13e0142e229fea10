package model

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (ErrChecksum and ErrFormat may wrap an underlying I/O error as well).
var (
	// ErrFormat: the model bytes are not an XGBoost JSON model this package can
	// read (XGBoost binary, UBJSON, truncated or not JSON, inconsistent trees).
	ErrFormat = errors.New("model: unsupported or malformed model file")
	// ErrUnsupportedBooster: the booster is not gbtree (gblinear, dart).
	ErrUnsupportedBooster = errors.New("model: unsupported booster")
	// ErrUnsupportedObjective: the objective is not binary:logistic.
	ErrUnsupportedObjective = errors.New("model: unsupported objective")
	// ErrFeatureMismatch: the feature names or count differ from the schema.
	ErrFeatureMismatch = errors.New("model: feature mismatch")
	// ErrCategorical: the model has categorical features or splits.
	ErrCategorical = errors.New("model: categorical splits are not supported")
	// ErrChecksum: the model file's sha256 differs from the manifest.
	ErrChecksum = errors.New("model: checksum mismatch")
	// ErrManifest: manifest.json is missing, unreadable or invalid.
	ErrManifest = errors.New("model: invalid manifest")
	// ErrGolden: golden.csv is missing or malformed.
	ErrGolden = errors.New("model: invalid golden file")
	// ErrParity: predictions differ from XGBoost's golden values by more than
	// the tolerance.
	ErrParity = errors.New("model: predictions differ from golden values")
	// ErrInput: a batch call got inconsistent slice lengths.
	ErrInput = errors.New("model: invalid input")
)
