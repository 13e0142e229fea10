package ingest

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardiostream/cardiostream/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// render prints rows and parse errors in a stable, reviewable form.
func render(rows []Row, errs []ParseError) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "line %d id=%s from_file=%v", r.Line, r.ID, r.IDFromFile)
		if r.Label != nil {
			fmt.Fprintf(&b, " label=%d", *r.Label)
		} else {
			b.WriteString(" label=none")
		}
		if r.PatientRef != "" {
			fmt.Fprintf(&b, " patient_ref=%s", r.PatientRef)
		}
		if !r.ObservedAt.IsZero() {
			fmt.Fprintf(&b, " observed_at=%s", r.ObservedAt.Format("2006-01-02T15:04:05Z07:00"))
		}
		b.WriteString("\n   ")
		for i, v := range r.Features {
			if math.IsNaN(v) {
				fmt.Fprintf(&b, " %s=NA", schemas.FeatureNames[i])
			} else {
				fmt.Fprintf(&b, " %s=%g", schemas.FeatureNames[i], v)
			}
		}
		b.WriteString("\n")
	}
	for _, e := range errs {
		fmt.Fprintf(&b, "error %s\n", e.Error())
	}
	return b.String()
}

func checkGolden(tb testing.TB, name, got string) {
	tb.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if got != string(want) {
		tb.Errorf("%s differs from the golden file (go test -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestReadFileGolden(t *testing.T) {
	tests := []struct {
		file   string
		format Format
		cfg    func(*Config)
	}{
		{file: "mixed.data"},
		{file: "crlf.data"},
		{file: "header.csv"},
		{file: "header.csv", format: FormatCSV, cfg: func(c *Config) { c.ZeroMeansMissing = false; c.Source = "zeros-kept" }},
		{file: "partial.csv"},
		{file: "partial.csv", cfg: func(c *Config) { c.LabelColumn = "SEX"; c.Source = "sex-label" }},
		{file: "nolabel.csv"},
		{file: "records.jsonl"},
	}
	for _, tt := range tests {
		name := strings.TrimSuffix(tt.file, filepath.Ext(tt.file)) + "." + strings.TrimPrefix(filepath.Ext(tt.file), ".")
		cfg := DefaultConfig()
		if tt.cfg != nil {
			tt.cfg(&cfg)
			name += "." + cfg.Source
		}
		t.Run(name, func(t *testing.T) {
			rows, errs, err := ReadFile(filepath.Join("testdata", tt.file), tt.format, cfg)
			if err != nil {
				if tt.cfg != nil && cfg.LabelColumn == "SEX" {
					// A label column that is also a feature is refused.
					if !errors.Is(err, ErrDuplicateColumn) {
						t.Fatalf("err = %v, want ErrDuplicateColumn", err)
					}
					return
				}
				t.Fatal(err)
			}
			checkGolden(t, name, render(rows, errs))
		})
	}
}

func TestParseUCILine(t *testing.T) {
	nan := math.NaN()
	one, zero := 1, 0
	tests := []struct {
		name      string
		line      string
		want      schemas.Features
		wantLabel *int
		wantErr   error
	}{
		{name: "cleveland floats", line: "63.0,1.0,1.0,145.0,233.0,1.0,2.0,150.0,0.0,2.3,3.0,0.0,6.0,0",
			want: schemas.Features{63, 1, 1, 145, 233, 1, 2, 150, 0, 2.3, 3, 0, 6}, wantLabel: &zero},
		{name: "integers and ?", line: "63,1,4,140,260,0,1,112,1,3,2,?,?,2",
			want: schemas.Features{63, 1, 4, 140, 260, 0, 1, 112, 1, 3, 2, nan, nan}, wantLabel: &one},
		{name: "no leading zero", line: "54,1,3,120,200,0,0,150,0,.7,1,0,3,0",
			want: schemas.Features{54, 1, 3, 120, 200, 0, 0, 150, 0, 0.7, 1, 0, 3}, wantLabel: &zero},
		{name: "negative no leading zero", line: "54,1,3,120,200,0,0,150,0,-.5,1,0,3,4",
			want: schemas.Features{54, 1, 3, 120, 200, 0, 0, 150, 0, -0.5, 1, 0, 3}, wantLabel: &one},
		{name: "negative", line: "54,1,3,120,200,0,0,150,0,-0.5,1,0,3,1",
			want: schemas.Features{54, 1, 3, 120, 200, 0, 0, 150, 0, -0.5, 1, 0, 3}, wantLabel: &one},
		{name: "chol 0 and trestbps 0 are missing", line: "54,1,3,0,0,0,0,150,0,0,1,0,3,1",
			want: schemas.Features{54, 1, 3, nan, nan, 0, 0, 150, 0, 0, 1, 0, 3}, wantLabel: &one},
		{name: "num ? means no label", line: "54,1,3,120,200,0,0,150,0,0,1,0,3,?",
			want: schemas.Features{54, 1, 3, 120, 200, 0, 0, 150, 0, 0, 1, 0, 3}},
		{name: "spaces around cells", line: " 54 , 1,3,120,200,0,0,150,0,0,1,0,3, 0 ",
			want: schemas.Features{54, 1, 3, 120, 200, 0, 0, 150, 0, 0, 1, 0, 3}, wantLabel: &zero},
		{name: "out of range values still parse", line: "540,7,9,999,9999,5,5,999,5,99,9,9,9,0",
			want: schemas.Features{540, 7, 9, 999, 9999, 5, 5, 999, 5, 99, 9, 9, 9}, wantLabel: &zero},
		{name: "too few columns", line: "1,2,3", wantErr: ErrColumnCount},
		{name: "too many columns", line: "54,1,3,120,200,0,0,150,0,0,1,0,3,0,9", wantErr: ErrColumnCount},
		{name: "empty line", line: "", wantErr: ErrColumnCount},
		{name: "text", line: "54,1,3,high,200,0,0,150,0,0,1,0,3,0", wantErr: ErrNotNumber},
		{name: "inf", line: "54,1,3,inf,200,0,0,150,0,0,1,0,3,0", wantErr: ErrNotNumber},
		{name: "hex float", line: "54,1,3,0x1p3,200,0,0,150,0,0,1,0,3,0", wantErr: ErrNotNumber},
		{name: "overflow", line: "1e999,1,3,120,200,0,0,150,0,0,1,0,3,0", wantErr: ErrNotNumber},
		{name: "lone sign", line: "-,1,3,120,200,0,0,150,0,0,1,0,3,0", wantErr: ErrNotNumber},
		{name: "negative num", line: "54,1,3,120,200,0,0,150,0,0,1,0,3,-1", wantErr: ErrBadLabel},
		{name: "text num", line: "54,1,3,120,200,0,0,150,0,0,1,0,3,sick", wantErr: ErrBadLabel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row, err := parseUCILine(tt.line)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !sameFeatures(row.Features, tt.want) {
				t.Errorf("features = %v, want %v", row.Features, tt.want)
			}
			if !sameLabel(row.Label, tt.wantLabel) {
				t.Errorf("label = %v, want %v", fmtLabel(row.Label), fmtLabel(tt.wantLabel))
			}
		})
	}
}

func TestCSVHeaders(t *testing.T) {
	full := "age,sex,cp,trestbps,chol,fbs,restecg,thalach,exang,oldpeak,slope,ca,thal"
	tests := []struct {
		name        string
		cfg         func(*Config)
		input       string
		wantErr     error
		wantMissing []string
		wantLabel   string
		wantIDs     []string
		wantLabels  []string
	}{
		{name: "plain with num", input: full + ",num\n63,1,1,145,233,1,2,150,0,2.3,3,0,6,2\n",
			wantLabel: "num", wantIDs: []string{"src-000002"}, wantLabels: []string{"1"}},
		{name: "upper case and spaces, BOM, extra column", input: "\ufeff AGE , Sex,CP,TRESTBPS,chol,fbs,restecg,thalach,exang,oldpeak,slope,ca,thal,Num,comment\n63,1,1,145,233,1,2,150,0,2.3,3,0,6,0,x\n",
			wantLabel: "num", wantIDs: []string{"src-000002"}, wantLabels: []string{"0"}},
		{name: "label fallback", input: full + ",label\n63,1,1,145,233,1,2,150,0,2.3,3,0,6,1\n",
			wantLabel: "label", wantIDs: []string{"src-000002"}, wantLabels: []string{"1"}},
		{name: "num preferred over label", input: full + ",label,num\n63,1,1,145,233,1,2,150,0,2.3,3,0,6,0,3\n",
			wantLabel: "num", wantIDs: []string{"src-000002"}, wantLabels: []string{"1"}},
		{name: "configured label column", cfg: func(c *Config) { c.LabelColumn = "Target" },
			input:     full + ",num,target\n63,1,1,145,233,1,2,150,0,2.3,3,0,6,0,1\n",
			wantLabel: "target", wantIDs: []string{"src-000002"}, wantLabels: []string{"1"}},
		{name: "configured label column absent", cfg: func(c *Config) { c.LabelColumn = "target" },
			input:     full + ",num\n63,1,1,145,233,1,2,150,0,2.3,3,0,6,0\n",
			wantLabel: "", wantIDs: []string{"src-000002"}, wantLabels: []string{"none"}},
		{name: "missing columns", input: "id,age,chol\na-1,63,233\n",
			wantMissing: []string{"sex", "cp", "trestbps", "fbs", "restecg", "thalach", "exang", "oldpeak", "slope", "ca", "thal"},
			wantIDs:     []string{"a-1"}, wantLabels: []string{"none"}},
		{name: "blank lines before header", input: "\n\n" + full + "\n63,1,1,145,233,1,2,150,0,2.3,3,0,6\n",
			wantIDs: []string{"src-000004"}, wantLabels: []string{"none"}},
		{name: "empty file", input: "", wantLabel: ""},
		{name: "headerless UCI data", input: "63,1,1,145,233,1,2,150,0,2.3,3,0,6,0\n", wantErr: ErrNoFeatureColumns},
		{name: "duplicate column", input: "age,sex,Age\n1,2,3\n", wantErr: ErrDuplicateColumn},
		{name: "label column is a feature", cfg: func(c *Config) { c.LabelColumn = "thal" }, input: full + "\n", wantErr: ErrDuplicateColumn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			r, err := NewReader(strings.NewReader(tt.input), "in.csv", FormatAuto, cfg, "src")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(r.MissingFeatures(), ","); got != strings.Join(tt.wantMissing, ",") {
				t.Errorf("missing = %s, want %s", got, strings.Join(tt.wantMissing, ","))
			}
			if tt.wantLabel != "" && r.LabelColumn() != tt.wantLabel {
				t.Errorf("label column = %q, want %q", r.LabelColumn(), tt.wantLabel)
			}
			var ids, labels []string
			for {
				row, err := r.Next()
				if err != nil {
					break
				}
				ids = append(ids, row.ID)
				labels = append(labels, fmtLabel(row.Label))
			}
			if strings.Join(ids, " ") != strings.Join(tt.wantIDs, " ") || strings.Join(labels, " ") != strings.Join(tt.wantLabels, " ") {
				t.Errorf("ids %v labels %v, want %v %v", ids, labels, tt.wantIDs, tt.wantLabels)
			}
		})
	}
}

func TestParseJSONLine(t *testing.T) {
	tests := []struct {
		name      string
		line      string
		wantErr   error
		wantID    string
		wantLabel string
	}{
		{name: "wire record", line: `{"schema_version":1,"id":"a","features":{"age":63}}`, wantID: "a", wantLabel: "none"},
		{name: "label", line: `{"id":"a","features":{},"label":1}`, wantID: "a", wantLabel: "1"},
		{name: "num", line: `{"id":"a","features":{},"num":0}`, wantID: "a", wantLabel: "0"},
		{name: "num and label agree", line: `{"id":"a","features":{},"num":4,"label":1}`, wantID: "a", wantLabel: "1"},
		{name: "null label", line: `{"id":"a","features":{},"label":null}`, wantID: "a", wantLabel: "none"},
		{name: "label 2", line: `{"id":"a","features":{},"label":2}`, wantErr: ErrBadLabel},
		{name: "label and num disagree", line: `{"features":{},"label":0,"num":2}`, wantErr: ErrBadLabel},
		{name: "negative num", line: `{"features":{},"num":-1}`, wantErr: ErrBadLabel},
		{name: "unknown feature", line: `{"features":{"cholesterol":200}}`, wantErr: ErrUnknownFeature},
		{name: "string feature", line: `{"features":{"chol":"200"}}`, wantErr: ErrBadJSON},
		{name: "no features", line: `{"id":"a"}`, wantErr: ErrBadJSON},
		{name: "schema version", line: `{"schema_version":3,"features":{}}`, wantErr: ErrBadJSON},
		{name: "not an object", line: `"a"`, wantErr: ErrBadJSON},
		{name: "truncated", line: `{"features":{"age":`, wantErr: ErrBadJSON},
		{name: "control character in id", line: `{"id":"a\nb","features":{}}`, wantErr: ErrBadID},
		{name: "bad timestamp", line: `{"features":{},"observed_at":"yesterday"}`, wantErr: ErrBadJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row, err := parseJSONLine([]byte(tt.line))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if row.ID != tt.wantID || fmtLabel(row.Label) != tt.wantLabel {
				t.Errorf("id %q label %s, want %q %s", row.ID, fmtLabel(row.Label), tt.wantID, tt.wantLabel)
			}
		})
	}
}

// TestUCIDatasets reads the four UCI files and checks them against the
// counts in their README: rows, class balance, and missing values per
// column (the "?" table plus the hidden chol/trestbps zeros).
func TestUCIDatasets(t *testing.T) {
	waitForDatasets(t)
	type counts struct {
		rows, zeros, ones int
		missing           map[string]int
	}
	want := map[string]counts{
		"processed.cleveland.data":   {303, 164, 139, map[string]int{"ca": 4, "thal": 2}},
		"processed.hungarian.data":   {294, 188, 106, map[string]int{"trestbps": 1, "chol": 23, "fbs": 8, "restecg": 1, "thalach": 1, "exang": 1, "slope": 190, "ca": 291, "thal": 266}},
		"processed.switzerland.data": {123, 8, 115, map[string]int{"trestbps": 2, "chol": 123, "fbs": 75, "restecg": 1, "thalach": 1, "exang": 1, "oldpeak": 6, "slope": 17, "ca": 118, "thal": 52}},
		"processed.va.data":          {200, 51, 149, map[string]int{"trestbps": 56 + 1, "chol": 7 + 49, "fbs": 7, "thalach": 53, "exang": 53, "oldpeak": 56, "slope": 102, "ca": 198, "thal": 166}},
	}
	for file, w := range want {
		t.Run(file, func(t *testing.T) {
			rows, errs, err := ReadFile(filepath.Join(datasetDir, file), FormatAuto, DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			if len(errs) != 0 {
				t.Fatalf("parse errors: %v", errs)
			}
			got := counts{rows: len(rows), missing: map[string]int{}}
			for _, r := range rows {
				switch {
				case r.Label == nil:
					t.Fatalf("line %d: no label", r.Line)
				case *r.Label == 0:
					got.zeros++
				default:
					got.ones++
				}
				for i, v := range r.Features {
					if math.IsNaN(v) {
						got.missing[schemas.FeatureNames[i]]++
					}
				}
			}
			if got.rows != w.rows || got.zeros != w.zeros || got.ones != w.ones {
				t.Errorf("rows %d (%d/%d), want %d (%d/%d)", got.rows, got.zeros, got.ones, w.rows, w.zeros, w.ones)
			}
			for _, name := range schemas.FeatureNames {
				if got.missing[name] != w.missing[name] {
					t.Errorf("missing %s = %d, want %d", name, got.missing[name], w.missing[name])
				}
			}
			if rows[0].ID != SourceFromPath(file)+"-000001" || rows[len(rows)-1].Line != w.rows {
				t.Errorf("first id %s, last line %d", rows[0].ID, rows[len(rows)-1].Line)
			}
		})
	}
}

func TestLongLine(t *testing.T) {
	in := "1,2,3\n" + strings.Repeat("9", MaxLineBytes+10) + "\n63,1,1,145,233,1,2,150,0,2.3,3,0,6,0\n"
	r, err := NewReader(strings.NewReader(in), "x.data", FormatAuto, DefaultConfig(), "x")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for {
		row, err := r.Next()
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				break
			}
			lines = append(lines, fmt.Sprintf("%d:%v", pe.Line, errors.Is(err, ErrLineTooLong)))
			continue
		}
		lines = append(lines, fmt.Sprintf("%d:%s", row.Line, row.ID))
	}
	if got := strings.Join(lines, " "); got != "1:false 2:true 3:x-000003" {
		t.Errorf("got %s", got)
	}
}

func sameFeatures(a, b schemas.Features) bool {
	for i := range a {
		if a[i] != b[i] && !(math.IsNaN(a[i]) && math.IsNaN(b[i])) {
			return false
		}
	}
	return true
}

func sameLabel(a, b *int) bool { return fmtLabel(a) == fmtLabel(b) }

func fmtLabel(l *int) string {
	if l == nil {
		return "none"
	}
	return fmt.Sprint(*l)
}
