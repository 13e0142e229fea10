package registry

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/cardiostream/cardiostream/internal/model"
	"github.com/cardiostream/cardiostream/models"
	"github.com/cardiostream/cardiostream/schemas"
)

// Gate check names, as they appear in refusals and audit details.
const (
	CheckLoad     = "load"
	CheckFeatures = "features"
	CheckGolden   = "golden"
	CheckAccuracy = "accuracy"
	CheckAUC      = "auc"
	CheckBrier    = "brier"
)

// Check is the result of one gate check.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

func (c Check) String() string {
	word := "ok  "
	if !c.OK {
		word = "FAIL"
	}
	return fmt.Sprintf("%s %-8s %s", word, c.Name, c.Detail)
}

// GateReport is the outcome of the validation gates for one version.
type GateReport struct {
	Version  string  `json:"version"`
	Checks   []Check `json:"checks"`
	Rows     int     `json:"eval_rows"`
	Accuracy float64 `json:"accuracy"`
	AUC      float64 `json:"auc"`
	Brier    float64 `json:"brier"`

	sha256 string // of the evaluated model.json
}

// OK reports whether every check passed.
func (g *GateReport) OK() bool {
	for _, c := range g.Checks {
		if !c.OK {
			return false
		}
	}
	return len(g.Checks) > 0
}

// Failed returns the failed checks.
func (g *GateReport) Failed() []Check {
	var out []Check
	for _, c := range g.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// evalSet is the evaluation set: features and labels.
type evalSet struct {
	name   string
	rows   [][model.NumFeatures]float64
	labels []int
}

var (
	bundledOnce sync.Once
	bundled     *evalSet
	bundledErr  error
)

// loadEvalSet returns the configured evaluation set (cached).
func (r *Registry) loadEvalSet() (*evalSet, error) {
	if r.cfg.Gates.EvalSet == "" {
		bundledOnce.Do(func() {
			name := path.Join(models.DefaultDir, "heldout.csv")
			b, err := fs.ReadFile(models.Default(), name)
			if err != nil {
				bundledErr = fmt.Errorf("reading the bundled evaluation set: %w", err)
				return
			}
			bundled, bundledErr = parseEvalSet("models/"+name, b)
		})
		return bundled, bundledErr
	}
	r.evalMu.Lock()
	defer r.evalMu.Unlock()
	if r.evalSet != nil {
		return r.evalSet, nil
	}
	b, err := os.ReadFile(r.cfg.Gates.EvalSet)
	if err != nil {
		return nil, fmt.Errorf("reading registry.gates.eval_set: %w", err)
	}
	es, err := parseEvalSet(r.cfg.Gates.EvalSet, b)
	if err != nil {
		return nil, err
	}
	r.evalSet = es
	return es, nil
}

// parseEvalSet reads a CSV with a header naming the 13 features and label
// (other columns are ignored); empty cells are missing values.
func parseEvalSet(name string, data []byte) (*evalSet, error) {
	rd := csv.NewReader(bytes.NewReader(data))
	header, err := rd.Read()
	if err != nil {
		return nil, fmt.Errorf("evaluation set %s: header: %w", name, err)
	}
	col := func(c string) int { return slices.Index(header, c) }
	var idx [model.NumFeatures]int
	for i, f := range schemas.FeatureNames {
		if idx[i] = col(f); idx[i] < 0 {
			return nil, fmt.Errorf("evaluation set %s: no column %q", name, f)
		}
	}
	li := col("label")
	if li < 0 {
		return nil, fmt.Errorf("evaluation set %s: no column \"label\"", name)
	}
	es := &evalSet{name: name}
	for line := 2; ; line++ {
		rec, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("evaluation set %s: %w", name, err)
		}
		var row [model.NumFeatures]float64
		for i, c := range idx {
			if rec[c] == "" {
				row[i] = math.NaN()
				continue
			}
			if row[i], err = strconv.ParseFloat(rec[c], 64); err != nil {
				return nil, fmt.Errorf("evaluation set %s line %d column %s: %v", name, line, schemas.FeatureNames[i], err)
			}
		}
		switch rec[li] {
		case "0", "1":
			es.labels = append(es.labels, int(rec[li][0]-'0'))
		default:
			return nil, fmt.Errorf("evaluation set %s line %d: label %q is not 0 or 1", name, line, rec[li])
		}
		es.rows = append(es.rows, row)
	}
	if len(es.rows) == 0 {
		return nil, fmt.Errorf("evaluation set %s has no rows", name)
	}
	return es, nil
}

// Evaluate runs the validation gates on a fetched artifact. It returns an
// error only when the gates cannot run (e.g. the evaluation set is
// unreadable); failed checks are in the report.
func (r *Registry) Evaluate(a *Artifact) (*GateReport, error) {
	rep := &GateReport{Version: a.Version}
	add := func(name string, ok bool, format string, args ...any) {
		rep.Checks = append(rep.Checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}
	m, err := a.Load()
	if err != nil {
		add(CheckLoad, false, "%v", err)
		if errors.Is(err, model.ErrFeatureMismatch) {
			add(CheckFeatures, false, "feature names or order differ from the record schema %v", schemas.FeatureNames)
		}
		return rep, nil
	}
	add(CheckLoad, true, "%s %s, %d trees, sha256 %s", m.Name(), m.Version(), m.NumTrees(), m.SHA256())
	man := m.Manifest()
	if slices.Equal(man.FeatureNames, schemas.FeatureNames[:]) {
		add(CheckFeatures, true, "%d features in schema order", len(man.FeatureNames))
	} else {
		add(CheckFeatures, false, "manifest features %v differ from the record schema %v", man.FeatureNames, schemas.FeatureNames)
	}
	if a.Golden != nil {
		fsys, _ := a.FS() // Load succeeded, so the manifest parses
		par, err := m.CheckGolden(fsys, ".")
		if err != nil {
			add(CheckGolden, false, "%v", err)
		} else {
			add(CheckGolden, true, "%d rows, max |diff| %.3g <= %g", par.Rows, par.MaxAbsDiff, par.Tolerance)
		}
	} else {
		add(CheckGolden, true, "no golden predictions shipped (not checked)")
	}

	es, err := r.loadEvalSet()
	if err != nil {
		return nil, err
	}
	probs := make([]float64, len(es.rows))
	if err := m.PredictBatch(es.rows, probs); err != nil {
		return nil, fmt.Errorf("scoring the evaluation set: %w", err)
	}
	rep.Rows = len(probs)
	rep.Accuracy, rep.AUC, rep.Brier = accuracy(probs, es.labels, m.Threshold()), auc(probs, es.labels), brier(probs, es.labels)
	g := r.cfg.Gates
	add(CheckAccuracy, rep.Accuracy >= g.MinAccuracy, "%.4f (floor %.2f) on %d rows of %s", rep.Accuracy, g.MinAccuracy, rep.Rows, es.name)
	add(CheckAUC, rep.AUC >= g.MinAUC, "%.4f (floor %.2f)", rep.AUC, g.MinAUC)
	add(CheckBrier, rep.Brier <= g.MaxBrier, "%.4f (ceiling %.2f)", rep.Brier, g.MaxBrier)
	return rep, nil
}

// Validate fetches a version and runs the gates on it.
func (r *Registry) Validate(ctx context.Context, version string) (*GateReport, error) {
	a, err := r.Fetch(ctx, version)
	if err != nil {
		return nil, err
	}
	return r.Evaluate(a)
}

func accuracy(p []float64, y []int, threshold float64) float64 {
	right := 0
	for i := range p {
		if (p[i] >= threshold) == (y[i] == 1) {
			right++
		}
	}
	return float64(right) / float64(len(p))
}

func brier(p []float64, y []int) float64 {
	var s float64
	for i := range p {
		d := p[i] - float64(y[i])
		s += d * d
	}
	return s / float64(len(p))
}

// auc is the Mann-Whitney statistic with average ranks for ties; 0.5 when
// one class is absent.
func auc(p []float64, y []int) float64 {
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return p[idx[a]] < p[idx[b]] })
	ranks := make([]float64, len(p))
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && p[idx[j+1]] == p[idx[i]] {
			j++
		}
		avg := float64(i+j)/2 + 1
		for k := i; k <= j; k++ {
			ranks[idx[k]] = avg
		}
		i = j + 1
	}
	var pos, neg int
	var sumPos float64
	for i := range y {
		if y[i] == 1 {
			pos++
			sumPos += ranks[i]
		} else {
			neg++
		}
	}
	if pos == 0 || neg == 0 {
		return 0.5
	}
	return (sumPos - float64(pos)*float64(pos+1)/2) / (float64(pos) * float64(neg))
}
