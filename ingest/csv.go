package ingest

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/cardiostream/cardiostream/schemas"
)

// csvLayout maps header columns to meanings.
type csvLayout struct {
	width      int
	feature    [schemas.NumFeatures]int // column index, -1 when absent
	id         int
	patientRef int
	observedAt int
	label      int
	labelName  string   // "" when there is no label column
	missing    []string // features the header does not name
	zeroMiss   bool     // chol/trestbps 0 → missing
}

// newCSVLayout reads a header. Names match case-insensitively after
// trimming; unknown columns are ignored. labelColumn "" means "num", else
// "label".
func newCSVLayout(header []string, labelColumn string, zeroMissing bool) (csvLayout, error) {
	l := csvLayout{width: len(header), id: -1, patientRef: -1, observedAt: -1, label: -1, zeroMiss: zeroMissing}
	for i := range l.feature {
		l.feature[i] = -1
	}
	index := make(map[string]int, len(header))
	dupes := make(map[string]int) // name → second column; only an error for columns we use
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // a UTF-8 byte order mark from spreadsheet exports
		}
		name := strings.ToLower(strings.TrimSpace(h))
		if name == "" {
			continue
		}
		if _, dup := index[name]; dup {
			if _, seen := dupes[name]; !seen {
				dupes[name] = i
			}
			continue
		}
		index[name] = i
	}
	var err error
	lookup := func(name string) int {
		i, ok := index[name]
		if !ok {
			return -1
		}
		if j, dup := dupes[name]; dup && err == nil {
			err = fmt.Errorf("%w: %q is column %d and %d", ErrDuplicateColumn, name, i+1, j+1)
		}
		return i
	}
	found := 0
	for fi, name := range schemas.FeatureNames {
		if i := lookup(name); i >= 0 {
			l.feature[fi] = i
			found++
		} else {
			l.missing = append(l.missing, name)
		}
	}
	if found == 0 {
		return l, fmt.Errorf("%w (a CSV file needs a header row naming the features, e.g. age,sex,cp,...; a headerless UCI file needs --format uci)", ErrNoFeatureColumns)
	}
	l.id = lookup("id")
	l.patientRef = lookup("patient_ref")
	l.observedAt = lookup("observed_at")
	candidates := []string{DefaultLabelColumn, "label"}
	if labelColumn != "" {
		candidates = []string{labelColumn}
	}
	for _, name := range candidates {
		if i := lookup(name); i >= 0 {
			if isFeatureName(name) {
				return l, fmt.Errorf("%w: label column %q is also a feature", ErrDuplicateColumn, name)
			}
			l.label, l.labelName = i, name
			break
		}
	}
	return l, err
}

func isFeatureName(name string) bool {
	for _, f := range schemas.FeatureNames {
		if f == name {
			return true
		}
	}
	return false
}

// parse turns one CSV record into a row.
func (l *csvLayout) parse(rec []string) (Row, error) {
	var row Row
	if len(rec) != l.width {
		return row, fmt.Errorf("%w: %d, want %d as in the header", ErrColumnCount, len(rec), l.width)
	}
	for fi, ci := range l.feature {
		if ci < 0 {
			row.Features[fi] = math.NaN()
			continue
		}
		v, err := parseFeature(rec[ci])
		if err != nil {
			return row, fmt.Errorf("column %d (%s): %w", ci+1, schemas.FeatureNames[fi], err)
		}
		row.Features[fi] = v
	}
	if l.zeroMiss {
		for _, i := range [...]int{schemas.Chol, schemas.Trestbps} {
			if row.Features[i] == 0 {
				row.Features[i] = math.NaN()
			}
		}
	}
	if l.id >= 0 {
		id := strings.TrimSpace(rec[l.id])
		if err := checkID(id); err != nil {
			return row, fmt.Errorf("column %d (id): %w", l.id+1, err)
		}
		row.ID = id
	}
	if l.patientRef >= 0 {
		ref := strings.TrimSpace(rec[l.patientRef])
		if err := checkID(ref); err != nil {
			return row, fmt.Errorf("column %d (patient_ref): %w", l.patientRef+1, err)
		}
		row.PatientRef = ref
	}
	if l.observedAt >= 0 {
		t, err := parseTimestamp(rec[l.observedAt])
		if err != nil {
			return row, fmt.Errorf("column %d (observed_at): %w", l.observedAt+1, err)
		}
		row.ObservedAt = t
	}
	if l.label >= 0 {
		label, err := parseLabelCell(rec[l.label])
		if err != nil {
			return row, fmt.Errorf("column %d (%s): %w", l.label+1, l.labelName, err)
		}
		row.Label = label
	}
	return row, nil
}

// csvReader reads rows after the header. encoding/csv handles quoted cells
// with commas and newlines; we check the column count ourselves so that a
// short row is a parse error and not a stop.
type csvReader struct {
	r      *csv.Reader
	layout csvLayout
}

func newCSVReader(rd io.Reader, opts readOptions) (*csvReader, error) {
	r := csv.NewReader(rd)
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	r.ReuseRecord = true
	c := &csvReader{r: r}
	header, err := r.Read()
	if err == io.EOF {
		// An empty file has no rows; give it an empty layout so Next ends.
		c.layout.width = -1
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the CSV header: %w", err)
	}
	c.layout, err = newCSVLayout(header, opts.labelColumn, opts.zeroMissing)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// next returns a row, its line, skip=true for an all-empty row, or an error.
func (c *csvReader) next() (row Row, line int, skip bool, err error) {
	if c.layout.width < 0 {
		return row, 0, false, io.EOF
	}
	rec, err := c.r.Read()
	if err == io.EOF {
		return row, 0, false, io.EOF
	}
	var perr *csv.ParseError
	if errors.As(err, &perr) {
		return row, perr.StartLine, false, &ParseError{Line: perr.StartLine, Err: fmt.Errorf("%w: %v", ErrBadQuoting, perr.Err)}
	}
	if err != nil {
		return row, 0, false, err
	}
	line, _ = c.r.FieldPos(0)
	if allEmpty(rec) {
		return row, line, true, nil
	}
	row, err = c.layout.parse(rec)
	if err != nil {
		return row, line, false, &ParseError{Line: line, Err: err}
	}
	return row, line, false, nil
}

func allEmpty(rec []string) bool {
	for _, c := range rec {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}
