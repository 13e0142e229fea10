package schemas

// ShadowToken is the subject token that puts shadow predictions under the
// predictions kind: <prefix>.predictions.shadow.<source>. It is reserved: no
// source may be called "shadow", or its predictions
// (<prefix>.predictions.shadow) could not be told apart from shadow ones by
// a consumer of <prefix>.predictions.>.
const ShadowToken = "shadow"

// ValidSource reports whether s can name a record source: a ValidToken that
// is not reserved (ShadowToken).
func ValidSource(s string) bool { return ValidToken(s) && s != ShadowToken }

// ShadowPrediction is the subject of a shadow model's prediction for a
// record of source: <prefix>.predictions.shadow.<source>. It is stored in
// PREDICTIONS (whose subjects, <prefix>.predictions.>, include it) but is
// not matched by <prefix>.predictions.*, the filter of every consumer of the
// predictions that count (the monitor's main input, the README's examples).
func (s Subjects) ShadowPrediction(source string) string {
	return s.Prefix + ".predictions." + ShadowToken + "." + source
}

// AllShadowPredictions covers the shadow predictions of every source.
func (s Subjects) AllShadowPredictions() string {
	return s.Prefix + ".predictions." + ShadowToken + ".>"
}

// ShadowKind is the kind to pass to SourceOf for a shadow prediction subject.
const ShadowKind = "predictions." + ShadowToken
