package ingest

import (
	"bytes"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
)

// The fuzz targets are seeded from the table tests and fixtures; they check
// that no input panics, that every row has finite-or-NaN features and a
// usable id, and that failures are *ParseError or file-level errors.

var uciSeeds = []string{
	"63.0,1.0,1.0,145.0,233.0,1.0,2.0,150.0,0.0,2.3,3.0,0.0,6.0,0",
	"63,1,4,140,260,0,1,112,1,3,2,?,?,2",
	"54,1,3,0,0,?,0,?,?,.7,?,?,?,1",
	"55,0,2,120,180,0,0,150,0,-0.5,1,0,3,?",
	"1,2,3",
	"54,1,3,inf,200,0,0,150,0,0,1,0,3,0",
	"54,1,3,0x1p3,200,0,0,150,0,0,1,0,3,0",
	" 61 , 1 , 4 , 130 , 210 , 0 , 1 , 120 , 1 , 1 , 2 , ? , ? , 3\r",
	"1e999,1,3,120,200,0,0,150,0,0,1,0,3,-1",
}

func FuzzParseUCILine(f *testing.F) {
	for _, s := range uciSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		row, err := parseUCILine(line)
		if err != nil {
			if !errors.Is(err, ErrColumnCount) && !errors.Is(err, ErrNotNumber) && !errors.Is(err, ErrBadLabel) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		checkRow(t, row)
		if row.Features[3] == 0 || row.Features[4] == 0 {
			t.Fatalf("chol/trestbps 0 not mapped to missing: %v", row.Features)
		}
	})
}

func FuzzCSVReader(f *testing.F) {
	f.Add([]byte("ID,Age,SEX,cp,trestbps,chol,fbs,restecg,thalach,exang,oldpeak,slope,ca,thal,num\np1,63,1,1,145,233,1,2,150,0,2.3,3,0,6,0\np2,1,2\n"))
	f.Add([]byte("\ufeffage,chol,label,observed_at,patient_ref\n63,233,1,2024-05-01T12:00:00Z,MRN-1\n\"6\n3\",NA,?,,\n"))
	f.Add([]byte("age,age\n1,2\n"))
	f.Add([]byte("age,\"x\n1,2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data), "fuzz.csv", FormatCSV, DefaultConfig(), "fuzz")
		if err != nil {
			return
		}
		drain(t, r)
	})
}

func FuzzJSONLines(f *testing.F) {
	f.Add([]byte(`{"id":"j1","features":{"age":63,"chol":null},"label":0}` + "\n" + `{"features":{},"num":3,"observed_at":"2024-05-01T12:00:00+02:00"}`))
	f.Add([]byte("not json\n{\"features\":{\"Age\":1}}\n[1]\n{\"id\":\"a\\u0000\",\"features\":{}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data), "fuzz.jsonl", FormatJSONL, DefaultConfig(), "fuzz")
		if err != nil {
			t.Fatal(err)
		}
		drain(t, r)
	})
}

func drain(t *testing.T, r *Reader) {
	t.Helper()
	last := 0
	for {
		row, err := r.Next()
		if err == io.EOF {
			return
		}
		var pe *ParseError
		if errors.As(err, &pe) {
			if pe.Line < last {
				t.Fatalf("parse error line %d after line %d", pe.Line, last)
			}
			continue
		}
		if err != nil {
			t.Fatalf("file-level error after the header: %v", err)
		}
		if row.Line < last || row.Line < 1 {
			t.Fatalf("row line %d after %d", row.Line, last)
		}
		last = row.Line
		checkRow(t, row)
	}
}

func checkRow(t *testing.T, row Row) {
	t.Helper()
	for i, v := range row.Features {
		if math.IsInf(v, 0) {
			t.Fatalf("feature %d infinite", i)
		}
	}
	if row.Label != nil && *row.Label != 0 && *row.Label != 1 {
		t.Fatalf("label %d", *row.Label)
	}
	if err := checkID(row.ID); err != nil && row.IDFromFile {
		t.Fatalf("id %q accepted: %v", row.ID, err)
	}
	if strings.ContainsAny(row.ID, "\r\n") {
		t.Fatalf("id with newline: %q", row.ID)
	}
}
