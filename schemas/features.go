package schemas

import (
	"math"
	"math/big"
	"strconv"
	"strings"
)

// FeatureKind says how a feature's value is constrained.
type FeatureKind string

const (
	// Continuous features accept any number in [Min, Max].
	Continuous FeatureKind = "continuous"
	// Categorical features accept only the integral codes listed in Codes.
	Categorical FeatureKind = "categorical"
)

// Code is one allowed value of a categorical feature.
type Code struct {
	Value   int    `json:"value"`
	Meaning string `json:"meaning"`
}

// FeatureSpec describes one feature on the wire: its JSON key, what it means
// and which values are accepted. The validator, the JSON Schema files and the
// README table are all derived from (and tested against) FeatureSpecs.
type FeatureSpec struct {
	Index       int         // position in Features and in the model's columns
	Name        string      // JSON key inside "features"
	Description string      // what the value is (UCI documentation)
	Kind        FeatureKind // Continuous or Categorical
	Unit        string      // unit of a continuous value, "" for codes
	// Min and Max bound the value (inclusive). For categorical features they are
	// the smallest and largest code.
	Min, Max float64
	Codes    []Code // allowed codes of a categorical feature, ascending
	// ZeroHint, when set, replaces the range problem for a value of exactly 0:
	// some UCI sources wrote 0 for "not measured", which must arrive as null.
	ZeroHint string
}

// FeatureSpecs is the one table of feature constraints, in FeatureNames order.
// Treat it as read-only.
var FeatureSpecs = [NumFeatures]FeatureSpec{
	Age: {Index: Age, Name: "age", Description: "age", Kind: Continuous, Unit: "years", Min: 1, Max: 120},
	Sex: {Index: Sex, Name: "sex", Description: "sex", Kind: Categorical, Min: 0, Max: 1,
		Codes: []Code{{0, "female"}, {1, "male"}}},
	CP: {Index: CP, Name: "cp", Description: "chest pain type", Kind: Categorical, Min: 1, Max: 4,
		Codes: []Code{{1, "typical angina"}, {2, "atypical angina"}, {3, "non-anginal pain"}, {4, "asymptomatic"}}},
	Trestbps: {Index: Trestbps, Name: "trestbps", Description: "resting blood pressure on admission",
		Kind: Continuous, Unit: "mm Hg", Min: 50, Max: 250,
		ZeroHint: "0 is not a valid resting blood pressure; send null when unknown"},
	Chol: {Index: Chol, Name: "chol", Description: "serum cholesterol", Kind: Continuous, Unit: "mg/dl",
		Min: 50, Max: 700, ZeroHint: "0 is not a valid cholesterol; send null when unknown"},
	FBS: {Index: FBS, Name: "fbs", Description: "fasting blood sugar > 120 mg/dl", Kind: Categorical, Min: 0, Max: 1,
		Codes: []Code{{0, "false"}, {1, "true"}}},
	RestECG: {Index: RestECG, Name: "restecg", Description: "resting electrocardiographic result",
		Kind: Categorical, Min: 0, Max: 2,
		Codes: []Code{{0, "normal"}, {1, "ST-T wave abnormality"}, {2, "left ventricular hypertrophy"}}},
	Thalach: {Index: Thalach, Name: "thalach", Description: "maximum heart rate achieved", Kind: Continuous,
		Unit: "bpm", Min: 40, Max: 250},
	Exang: {Index: Exang, Name: "exang", Description: "exercise-induced angina", Kind: Categorical, Min: 0, Max: 1,
		Codes: []Code{{0, "no"}, {1, "yes"}}},
	Oldpeak: {Index: Oldpeak, Name: "oldpeak", Description: "ST depression induced by exercise relative to rest",
		Kind: Continuous, Unit: "mm", Min: -5, Max: 10},
	Slope: {Index: Slope, Name: "slope", Description: "slope of the peak exercise ST segment",
		Kind: Categorical, Min: 1, Max: 3,
		Codes: []Code{{1, "upsloping"}, {2, "flat"}, {3, "downsloping"}}},
	CA: {Index: CA, Name: "ca", Description: "number of major vessels coloured by fluoroscopy",
		Kind: Categorical, Min: 0, Max: 3,
		Codes: []Code{{0, "0 vessels"}, {1, "1 vessel"}, {2, "2 vessels"}, {3, "3 vessels"}}},
	Thal: {Index: Thal, Name: "thal", Description: "thallium stress test result", Kind: Categorical, Min: 3, Max: 7,
		Codes: []Code{{3, "normal"}, {6, "fixed defect"}, {7, "reversible defect"}}},
}

// featureIndex maps a JSON key to its index in Features, or -1. A switch on
// string(b) compiles to a comparison without allocating.
func featureIndex(key []byte) int {
	switch string(key) {
	case "age":
		return Age
	case "sex":
		return Sex
	case "cp":
		return CP
	case "trestbps":
		return Trestbps
	case "chol":
		return Chol
	case "fbs":
		return FBS
	case "restecg":
		return RestECG
	case "thalach":
		return Thalach
	case "exang":
		return Exang
	case "oldpeak":
		return Oldpeak
	case "slope":
		return Slope
	case "ca":
		return CA
	case "thal":
		return Thal
	}
	return -1
}

// Accepts reports whether v is an acceptable value of the feature. NaN
// (missing) is always acceptable; this is the property a decoded record
// guarantees for every feature.
func (s *FeatureSpec) Accepts(v float64) bool {
	if math.IsNaN(v) {
		return true
	}
	if s.Kind == Categorical {
		for _, c := range s.Codes {
			if v == float64(c.Value) {
				return true
			}
		}
		return false
	}
	return v >= s.Min && v <= s.Max
}

// Rule is the human-readable constraint, e.g. "must be between 50 and 700
// mg/dl" or "must be one of 0 (female), 1 (male)".
func (s *FeatureSpec) Rule() string {
	if s.Kind == Categorical {
		var b strings.Builder
		b.WriteString("must be one of ")
		for i, c := range s.Codes {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.Itoa(c.Value))
			b.WriteString(" (")
			b.WriteString(c.Meaning)
			b.WriteString(")")
		}
		return b.String()
	}
	r := "must be between " + formatBound(s.Min) + " and " + formatBound(s.Max)
	if s.Unit != "" {
		r += " " + s.Unit
	}
	return r
}

func formatBound(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// check validates one present feature value. raw is the JSON number text and
// integral says whether that text denotes an integer exactly. It returns the
// problem text, or "" when the value is accepted. Only called on values that
// parsed as numbers; overflow arrives as ±Inf.
func (s *FeatureSpec) check(v float64, raw []byte, integral bool) string {
	if s.Kind == Categorical {
		if integral && s.Accepts(v) {
			return ""
		}
		return withGot(s.Rule(), raw)
	}
	if (v > s.Min && v < s.Max) || ((v == s.Min || v == s.Max) && exactlyWithin(raw, s.Min, s.Max)) {
		return ""
	}
	if v == 0 && s.ZeroHint != "" {
		return s.ZeroHint + " (" + s.Rule() + ")"
	}
	return withGot(s.Rule(), raw)
}

// gotSep separates a rule from the offending value in Problem texts;
// ValidationError.Error cuts there so that logged errors carry no values.
const gotSep = ", got "

// maxQuoted bounds how much of an offending value a problem quotes.
const maxQuoted = 40

// withGot appends the offending raw JSON token, shortened, to a rule.
func withGot(rule string, raw []byte) string {
	return rule + gotSep + shorten(raw)
}

// shorten returns at most maxQuoted bytes of b, cut at a rune boundary, with
// "…" when cut.
func shorten(b []byte) string {
	if len(b) <= maxQuoted {
		return string(b)
	}
	n := maxQuoted
	for n > 0 && b[n]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		n--
	}
	return string(b[:n]) + "…"
}

// exactlyWithin decides a value whose float64 rounding landed exactly on a
// bound: 120.000000000000000001 rounds to 120 but is above a maximum of 120
// (and JSON Schema, which compares decimals exactly, says so too). Numbers of
// at most 15 significant digits cannot round onto a bound from outside, so
// only longer ones pay for the exact comparison.
func exactlyWithin(raw []byte, lo, hi float64) bool {
	digits := 0
	for _, c := range raw {
		if c == 'e' || c == 'E' {
			break
		}
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	if digits <= 15 {
		return true
	}
	r, ok := new(big.Rat).SetString(string(raw))
	if !ok {
		return false
	}
	return r.Cmp(new(big.Rat).SetFloat64(lo)) >= 0 && r.Cmp(new(big.Rat).SetFloat64(hi)) <= 0
}
