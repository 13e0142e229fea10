package scorer

import "github.com/cardiostream/cardiostream/schemas"

// Model scores one feature vector. It must be safe for concurrent use when
// Config.Workers > 1.
type Model interface {
	// Predict returns the probability of heart disease for features in
	// schemas.FeatureNames order; NaN means missing. A NaN or infinite
	// result is a scoring failure, not a prediction.
	Predict(features *[schemas.NumFeatures]float64) float64
	// Ref names the model in every prediction and in the model_info metric.
	Ref() schemas.ModelRef
	// Threshold is the probability at or above which a record is labelled 1.
	Threshold() float64
}

// BatchModel is optionally implemented by a Model that scores many rows in
// one call faster than one at a time (internal/model.Model does). The scorer
// uses it when present; when it returns an error or panics, the batch is
// scored again one record at a time so the failure is attributed to the
// record that caused it.
type BatchModel interface {
	PredictBatch(rows [][schemas.NumFeatures]float64, out []float64) error
}
