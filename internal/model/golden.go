package model

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"strconv"

	"github.com/cardiostream/cardiostream/schemas"
)

// ParityTolerance is the largest accepted |Go − XGBoost| probability
// difference. XGBoost sums leaves in float32 and leaves in float64, which
// leaves ~1e-7; a conversion bug shows up as 1e-2 or more.
const ParityTolerance = 1e-6

const maxGoldenBytes = 64 << 20

// ParityReport is the result of comparing predictions with a golden file.
type ParityReport struct {
	File       string  `json:"file"`
	Rows       int     `json:"rows"`
	MaxAbsDiff float64 `json:"max_abs_diff"`
	// WorstLine is the CSV line (header = line 1) with the largest difference.
	WorstLine int     `json:"worst_line"`
	Tolerance float64 `json:"tolerance"`
}

// OK reports whether every row was within Tolerance.
func (r ParityReport) OK() bool { return r.Rows > 0 && r.MaxAbsDiff <= r.Tolerance }

// VerifyGolden runs CheckGolden on the artifact the model was loaded from.
func (m *Model) VerifyGolden() (ParityReport, error) {
	return m.CheckGolden(m.fsys, m.dir)
}

// CheckGolden predicts every row of the golden file (manifest golden_file,
// default golden.csv) in dir of fsys and compares with XGBoost's probability.
// The header must be the schema feature names followed by "probability";
// empty or NaN cells are missing values. It returns ErrParity, with the
// report filled in, when a row differs by more than ParityTolerance.
func (m *Model) CheckGolden(fsys fs.FS, dir string) (ParityReport, error) {
	name := path.Join(dir, m.manifest.golden())
	rep := ParityReport{File: name, Tolerance: ParityTolerance}
	data, err := readLimited(fsys, name, maxGoldenBytes)
	if err != nil {
		return rep, fmt.Errorf("%w: reading %s: %w", ErrGolden, name, err)
	}
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = NumFeatures + 1
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return rep, fmt.Errorf("%w: %s header: %v", ErrGolden, name, err)
	}
	want := append(schemaNames(), "probability")
	for i := range want {
		if header[i] != want[i] {
			return rep, fmt.Errorf("%w: %s column %d is %s, want %q; regenerate it with training/train.py", ErrGolden, name, i+1, schemas.Quote(header[i]), want[i])
		}
	}
	var row [NumFeatures]float64
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return rep, fmt.Errorf("%w: %s: %v", ErrGolden, name, err)
		}
		for i := range row {
			if row[i], err = parseCell(rec[i]); err != nil {
				return rep, fmt.Errorf("%w: %s line %d column %s: %s is not a number (empty or NaN for a missing value)", ErrGolden, name, line, want[i], schemas.Quote(rec[i]))
			}
		}
		wantP, err := strconv.ParseFloat(rec[NumFeatures], 64)
		if err != nil || math.IsNaN(wantP) || wantP < 0 || wantP > 1 {
			return rep, fmt.Errorf("%w: %s line %d: probability %s is not in [0, 1]", ErrGolden, name, line, schemas.Quote(rec[NumFeatures]))
		}
		d := math.Abs(m.Predict(&row) - wantP)
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		if d > rep.MaxAbsDiff || rep.Rows == 0 {
			rep.MaxAbsDiff, rep.WorstLine = d, line
		}
		rep.Rows++
	}
	if rep.Rows == 0 {
		return rep, fmt.Errorf("%w: %s has no rows", ErrGolden, name)
	}
	if !rep.OK() {
		return rep, fmt.Errorf("%w: %s line %d differs by %.3g (tolerance %g) over %d rows; the conversion or the model file is wrong",
			ErrParity, name, rep.WorstLine, rep.MaxAbsDiff, rep.Tolerance, rep.Rows)
	}
	return rep, nil
}

func parseCell(s string) (float64, error) {
	if s == "" || s == "NaN" || s == "nan" {
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	return v, nil
}
