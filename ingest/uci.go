package ingest

import (
	"fmt"
	"math"
	"strings"

	"github.com/cardiostream/cardiostream/schemas"
)

// uciColumns is the UCI processed.*.data width: 13 features, then num.
const uciColumns = schemas.NumFeatures + 1

// parseUCILine parses one line of a UCI processed.*.data file.
//
// Missing values are "?" (and, leniently, empty/NA/NaN as written by edited
// copies). In chol and trestbps a 0 is UCI's hidden "missing" code (all of
// Switzerland's chol, 49 VA rows, one VA trestbps) and becomes NaN too.
// Numbers may be floats ("63.0"), integers, or lack the leading zero
// (".7", "-0.5"). The label is num > 0; a "?" num means no label.
func parseUCILine(line string) (Row, error) {
	var row Row
	n := strings.Count(line, ",") + 1
	if n != uciColumns {
		return row, fmt.Errorf("%w: %d, want %d (13 features and num)", ErrColumnCount, n, uciColumns)
	}
	rest := line
	for i := 0; i < schemas.NumFeatures; i++ {
		cell, tail, _ := strings.Cut(rest, ",")
		rest = tail
		v, err := parseFeature(cell)
		if err != nil {
			return row, fmt.Errorf("column %d (%s): %w", i+1, schemas.FeatureNames[i], err)
		}
		row.Features[i] = v
	}
	for _, i := range [...]int{schemas.Chol, schemas.Trestbps} {
		if row.Features[i] == 0 {
			row.Features[i] = math.NaN()
		}
	}
	label, err := parseLabelCell(rest)
	if err != nil {
		return row, fmt.Errorf("column 14 (num): %w", err)
	}
	row.Label = label
	return row, nil
}
