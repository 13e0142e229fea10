package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/cardiostream/cardiostream/schemas"
)

const (
	boosterGBTree     = "gbtree"
	objectiveLogistic = "binary:logistic"

	// MaxModelBytes bounds what LoadDir reads and ParseXGBoostJSON accepts.
	// The shipped model is ~75 KB; this leaves room for far larger ensembles.
	MaxModelBytes = 64 << 20
	// maxTreeNodes bounds one tree; a depth-20 full binary tree has 2^21-1 nodes.
	maxTreeNodes = 1 << 21
)

// xgbFile is the subset of XGBoost's JSON model schema (1.x) this package reads.
// Unknown fields are ignored; every field read here is checked in checkModel.
type xgbFile struct {
	Learner *xgbLearner `json:"learner"`
	Version []int64     `json:"version"`
}

type xgbLearner struct {
	FeatureNames    []string         `json:"feature_names"`
	FeatureTypes    []string         `json:"feature_types"`
	GradientBooster *xgbBooster      `json:"gradient_booster"`
	ModelParam      *xgbLearnerParam `json:"learner_model_param"`
	Objective       *struct {
		Name string `json:"name"`
	} `json:"objective"`
}

type xgbLearnerParam struct {
	BaseScore  string `json:"base_score"`
	NumClass   string `json:"num_class"`
	NumFeature string `json:"num_feature"`
	NumTarget  string `json:"num_target"`
}

type xgbBooster struct {
	Name  string        `json:"name"`
	Model *xgbTreeModel `json:"model"`
}

type xgbTreeModel struct {
	Param struct {
		NumTrees        string `json:"num_trees"`
		NumParallelTree string `json:"num_parallel_tree"`
		SizeLeafVector  string `json:"size_leaf_vector"`
	} `json:"gbtree_model_param"`
	TreeInfo []int64   `json:"tree_info"`
	Trees    []xgbTree `json:"trees"`
}

type xgbTree struct {
	LeftChildren    []int32   `json:"left_children"`
	RightChildren   []int32   `json:"right_children"`
	SplitIndices    []int64   `json:"split_indices"`
	SplitConditions []float64 `json:"split_conditions"`
	DefaultLeft     []int64   `json:"default_left"`
	SplitType       []int64   `json:"split_type"`
	CategoriesNodes []int64   `json:"categories_nodes"`
	Categories      []int64   `json:"categories"`
	TreeParam       struct {
		NumNodes       string `json:"num_nodes"`
		NumFeature     string `json:"num_feature"`
		SizeLeafVector string `json:"size_leaf_vector"`
	} `json:"tree_param"`
}

// checkedModel is a model that passed every check: safe to convert.
type checkedModel struct {
	baseMargin float32 // logit(base_score)
	numFeature int
	trees      []xgbTree
}

// sniffFormat names a non-JSON model format from its first bytes, for the error message.
func sniffFormat(data []byte) error {
	switch {
	case len(data) == 0:
		return fmt.Errorf("%w: the model file is empty; point model_file at the XGBoost JSON model (Booster.save_model(\"model.json\"))", ErrFormat)
	case bytes.HasPrefix(data, []byte("binf")):
		return fmt.Errorf("%w: this is an XGBoost 1.x binary model ('binf' marker), which leaves would crash on; re-save it as JSON with Booster.save_model(\"model.json\")", ErrFormat)
	case len(data) >= 2 && data[0] == '{' && bytes.IndexByte([]byte("iUIlLdD$#"), data[1]) >= 0 && !json.Valid(data):
		return fmt.Errorf("%w: this looks like UBJSON (XGBoost .ubj); re-save it as JSON with Booster.save_model(\"model.json\")", ErrFormat)
	case !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0:
		return fmt.Errorf("%w: the model file is binary, not JSON; only XGBoost JSON models (save_model(\"model.json\")) are supported", ErrFormat)
	}
	return nil
}

// decodeXGBoostJSON parses and checks data; nothing is handed to leaves here.
func decodeXGBoostJSON(data []byte, wantFeatures []string) (*checkedModel, error) {
	if len(data) > MaxModelBytes {
		return nil, fmt.Errorf("%w: the model file is %d bytes, more than the %d-byte limit", ErrFormat, len(data), MaxModelBytes)
	}
	if err := sniffFormat(data); err != nil {
		return nil, err
	}
	var f xgbFile
	if err := json.Unmarshal(data, &f); err != nil {
		// XGBoost writes NaN for the thresholds of categorical splits, which is
		// not JSON. Re-read with those tokens as null so the checks can still
		// say what is unsupported (categorical, booster, ...); a model that
		// passes them anyway is refused for its non-finite numbers.
		if clean, ok := nonFiniteToNull(data); ok {
			var g xgbFile
			if json.Unmarshal(clean, &g) == nil {
				if _, cerr := checkModel(&g, wantFeatures); cerr != nil {
					return nil, cerr
				}
				return nil, fmt.Errorf("%w: the model contains NaN or Infinity numbers; re-export a model with finite thresholds and leaf values", ErrFormat)
			}
		}
		var syn *json.SyntaxError
		if errors.As(err, &syn) && syn.Offset >= int64(len(bytes.TrimRight(data, " \t\r\n"))) {
			return nil, fmt.Errorf("%w: the JSON ends early (truncated file?): %v; re-copy or re-export the model", ErrFormat, err)
		}
		return nil, fmt.Errorf("%w: not an XGBoost JSON model: %s", ErrFormat, schemas.ErrorDetail(err))
	}
	return checkModel(&f, wantFeatures)
}

func checkModel(f *xgbFile, wantFeatures []string) (*checkedModel, error) {
	l := f.Learner
	if l == nil || l.GradientBooster == nil || l.ModelParam == nil || l.Objective == nil {
		return nil, fmt.Errorf("%w: JSON lacks learner.gradient_booster, learner.learner_model_param or learner.objective; this is not an XGBoost JSON model", ErrFormat)
	}
	if len(f.Version) < 1 || f.Version[0] < 1 {
		return nil, fmt.Errorf("%w: JSON lacks a version [major, minor, patch] >= 1.0; save the model with XGBoost >= 1.0", ErrFormat)
	}
	if name := l.GradientBooster.Name; name != boosterGBTree {
		return nil, fmt.Errorf("%w: booster is %q; only %q is supported; retrain with booster=gbtree", ErrUnsupportedBooster, name, boosterGBTree)
	}
	if name := l.Objective.Name; name != objectiveLogistic {
		return nil, fmt.Errorf("%w: objective is %q; only %q is supported; retrain with objective=binary:logistic", ErrUnsupportedObjective, name, objectiveLogistic)
	}
	p := l.ModelParam
	if n, err := strconv.Atoi(p.NumClass); p.NumClass != "" && (err != nil || n > 1) {
		return nil, fmt.Errorf("%w: num_class is %q; only binary models (0) are supported", ErrUnsupportedObjective, p.NumClass)
	}
	if n, err := strconv.Atoi(p.NumTarget); p.NumTarget != "" && (err != nil || n != 1) {
		return nil, fmt.Errorf("%w: num_target is %q; only single-target models are supported", ErrUnsupportedObjective, p.NumTarget)
	}
	numFeature, err := strconv.Atoi(p.NumFeature)
	if err != nil || numFeature != len(wantFeatures) {
		return nil, fmt.Errorf("%w: model num_feature is %q, the schema has %d features; retrain on the schema's features", ErrFeatureMismatch, p.NumFeature, len(wantFeatures))
	}
	if len(l.FeatureNames) == 0 {
		return nil, fmt.Errorf("%w: the model has no feature_names; train with DMatrix(..., feature_names=schema names) so the order can be checked", ErrFeatureMismatch)
	}
	if err := sameNames("model feature_names", l.FeatureNames, wantFeatures); err != nil {
		return nil, err
	}
	for i, t := range l.FeatureTypes {
		switch t {
		case "float", "q", "int", "i":
		case "c":
			return nil, fmt.Errorf("%w: feature %d (%s) has type \"c\"; retrain without enable_categorical", ErrCategorical, i, l.FeatureNames[i])
		default:
			return nil, fmt.Errorf("%w: feature %d has unknown type %q", ErrFormat, i, t)
		}
	}
	base, err := strconv.ParseFloat(p.BaseScore, 32)
	if err != nil || !(base > 0 && base < 1) {
		return nil, fmt.Errorf("%w: base_score is %q; binary:logistic needs a probability in (0, 1)", ErrFormat, p.BaseScore)
	}

	m := l.GradientBooster.Model
	if m == nil {
		return nil, fmt.Errorf("%w: gradient_booster has no model", ErrFormat)
	}
	numTrees, err := strconv.Atoi(m.Param.NumTrees)
	if err != nil || numTrees < 1 || numTrees != len(m.Trees) || numTrees != len(m.TreeInfo) {
		return nil, fmt.Errorf("%w: num_trees is %q but there are %d trees and %d tree_info entries", ErrFormat, m.Param.NumTrees, len(m.Trees), len(m.TreeInfo))
	}
	if s := m.Param.SizeLeafVector; s != "" && s != "0" {
		return nil, fmt.Errorf("%w: size_leaf_vector is %q; vector leaves are not supported", ErrFormat, s)
	}
	for i, g := range m.TreeInfo {
		if g != 0 {
			return nil, fmt.Errorf("%w: tree %d belongs to output group %d; only single-output models are supported", ErrUnsupportedObjective, i, g)
		}
	}
	for i := range m.Trees {
		if err := checkTree(&m.Trees[i], numFeature); err != nil {
			return nil, fmt.Errorf("tree %d: %w", i, err)
		}
	}
	margin := math.Log(base / (1 - base))
	return &checkedModel{baseMargin: float32(margin), numFeature: numFeature, trees: m.Trees}, nil
}

// checkTree verifies that the arrays describe one binary tree rooted at node
// 0: consistent lengths, children in range, every node reached at most once
// (no cycles, no shared subtrees), split features in range, finite numbers
// and no categorical splits.
func checkTree(t *xgbTree, numFeature int) error {
	n := len(t.LeftChildren)
	if n < 1 || n > maxTreeNodes {
		return fmt.Errorf("%w: %d nodes; want 1..%d", ErrFormat, n, maxTreeNodes)
	}
	if len(t.RightChildren) != n || len(t.SplitIndices) != n || len(t.SplitConditions) != n || len(t.DefaultLeft) != n {
		return fmt.Errorf("%w: array lengths differ (left_children %d, right_children %d, split_indices %d, split_conditions %d, default_left %d)",
			ErrFormat, n, len(t.RightChildren), len(t.SplitIndices), len(t.SplitConditions), len(t.DefaultLeft))
	}
	if nn, err := strconv.Atoi(t.TreeParam.NumNodes); err != nil || nn != n {
		return fmt.Errorf("%w: tree_param.num_nodes is %q, arrays have %d nodes", ErrFormat, t.TreeParam.NumNodes, n)
	}
	if nf, err := strconv.Atoi(t.TreeParam.NumFeature); err != nil || nf < 0 || nf > numFeature {
		return fmt.Errorf("%w: tree_param.num_feature is %q, the model has %d features", ErrFormat, t.TreeParam.NumFeature, numFeature)
	}
	if s := t.TreeParam.SizeLeafVector; s != "" && s != "0" {
		return fmt.Errorf("%w: size_leaf_vector is %q; vector leaves are not supported", ErrFormat, s)
	}
	if len(t.CategoriesNodes) > 0 || len(t.Categories) > 0 {
		return fmt.Errorf("%w: %d categorical split nodes; retrain without enable_categorical", ErrCategorical, len(t.CategoriesNodes))
	}
	if len(t.SplitType) != 0 && len(t.SplitType) != n {
		return fmt.Errorf("%w: split_type has %d entries, want %d", ErrFormat, len(t.SplitType), n)
	}
	for i, s := range t.SplitType {
		if s != 0 {
			return fmt.Errorf("%w: node %d has split_type %d; retrain without enable_categorical", ErrCategorical, i, s)
		}
	}
	seen := make([]bool, n)
	seen[0] = true
	stack := []int32{0}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		l, r := t.LeftChildren[i], t.RightChildren[i]
		v := t.SplitConditions[i]
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > math.MaxFloat32 {
			return fmt.Errorf("%w: node %d has split_condition %v; want a finite float32", ErrFormat, i, v)
		}
		if l == -1 && r == -1 {
			continue // leaf; split_conditions holds the leaf value
		}
		if t.DefaultLeft[i] != 0 && t.DefaultLeft[i] != 1 {
			return fmt.Errorf("%w: node %d has default_left %d; want 0 or 1", ErrFormat, i, t.DefaultLeft[i])
		}
		if si := t.SplitIndices[i]; si < 0 || si >= int64(numFeature) {
			return fmt.Errorf("%w: node %d splits on feature %d; the model has %d features", ErrFormat, i, si, numFeature)
		}
		for _, c := range [2]int32{l, r} {
			if c <= 0 || int(c) >= n {
				return fmt.Errorf("%w: node %d has child %d; want 1..%d (a leaf has both children -1)", ErrFormat, i, c, n-1)
			}
			if seen[c] {
				return fmt.Errorf("%w: node %d is reached twice (cycle or shared subtree)", ErrFormat, c)
			}
			seen[c] = true
			stack = append(stack, c)
		}
	}
	return nil
}

// nonFiniteToNull replaces the bare tokens NaN, Infinity and -Infinity outside
// JSON strings with null. It reports whether it replaced anything.
func nonFiniteToNull(data []byte) ([]byte, bool) {
	var out []byte
	inString, escaped, replaced := false, false, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			out = append(out, c)
			continue
		}
		if c == '"' {
			inString = true
			out = append(out, c)
			continue
		}
		matched := false
		for _, tok := range []string{"NaN", "Infinity", "-Infinity"} {
			if bytes.HasPrefix(data[i:], []byte(tok)) {
				out = append(out, "null"...)
				i += len(tok) - 1
				matched, replaced = true, true
				break
			}
		}
		if !matched {
			out = append(out, c)
		}
	}
	return out, replaced
}
