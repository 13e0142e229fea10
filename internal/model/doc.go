// Package model loads the project's heart-disease model artifact and scores
// feature vectors with it.
//
// An artifact is a directory (see models/heart-xgb and training/README.md)
// holding manifest.json, the XGBoost JSON model it names, and golden.csv with
// XGBoost's own probabilities for every UCI row. LoadDir reads the manifest,
// verifies the model file's sha256, parses and checks the XGBoost JSON
// (booster, objective, feature names, tree structure, no categorical splits)
// and only then converts it to the XGBoost 0.x binary layout that
// github.com/dmitryikh/leaves reads. leaves never sees bytes this package has
// not produced itself: it cannot read XGBoost 1.x files, and the wrong file
// kills the process instead of returning an error.
//
// Conversion details that parity depends on (measured, see
// /work/shared/notes/xgboost-leaves.md): base_score becomes logit(base_score),
// default_left goes into bit 31 of the split index, every threshold t becomes
// math.Nextafter32(t, -Inf) because leaves tests x <= t where XGBoost tests
// x < t, and inputs are rounded to float32 before prediction. NaN means
// missing.
//
// Every failure is reported with one of the sentinel errors in errors.go,
// wrapped with what was wrong; match with errors.Is.
//
// This package owns model loading and prediction only. It imports schemas
// (feature names) and models (the embedded default artifact); it must not
// import NATS, metrics, config or anything from cmd.
package model
