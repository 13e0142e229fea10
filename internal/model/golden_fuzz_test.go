package model

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"testing/fstest"
	"unicode/utf8"
)

// FuzzCheckGolden: whatever golden.csv holds (it ships inside an artifact,
// signed or not), CheckGolden against the bundled model either accepts it
// with a report that says every row is within tolerance, or refuses it with
// ErrGolden (malformed) or ErrParity (a report that names a row outside the
// tolerance), with an error that quotes at most a clipped cell.
// Seeds: the bundled golden file's first rows, the edits of
// TestCheckGoldenRefuses and hostile cells.
func FuzzCheckGolden(f *testing.F) {
	m := loadDefault(f)
	golden := artifactFS(f, func(fstest.MapFS, map[string]any) {})["a/golden.csv"].Data
	lines := bytes.SplitAfter(golden, []byte("\n"))
	head := bytes.Join(lines[:4], nil) // header and three rows
	header := lines[0]
	f.Add(head)
	f.Add(bytes.TrimSuffix(head, []byte("\n")))
	f.Add(bytes.Replace(head, []byte("age,"), []byte("AGE,"), 1))
	f.Add(header)
	f.Add(bytes.Replace(head, []byte("63.0,"), []byte("x,"), 1))
	f.Add(bytes.Replace(head, []byte("63.0,"), []byte(","), 1))
	f.Add(bytes.Replace(head, []byte("63.0,"), []byte("NaN,"), 1))
	f.Add(bytes.Replace(head, []byte("63.0,"), []byte("+Inf,"), 1))
	f.Add(bytes.Replace(head, []byte("63.0,"), []byte("1e400,"), 1))
	f.Add(bytes.Replace(head, []byte("63.0,"), []byte(strings.Repeat("9", 3000)+"x,"), 1))
	f.Add(bytes.Replace(head, []byte("63.0,"), []byte("\"6\"\"3\","), 1))
	f.Add(bytes.Replace(head, []byte("63.0,"), []byte("\xff\xfe,"), 1))
	f.Add(append(append([]byte{}, header...), []byte("63,1,1,145,233,1,2,150,0,2.3,3,0,6,NaN\n")...))
	f.Add(append(append([]byte{}, header...), []byte("63,1,1,145,233,1,2,150,0,2.3,3,0,6,1.5\n")...))
	f.Add(append(append([]byte{}, header...), []byte("63,1,1,145,233,1,2,150,0,2.3,3,0,6\n")...))
	f.Add(append(append([]byte{}, header...), []byte("63,1,1,145,233,1,2,150,0,2.3,3,0,6,0.01\n")...))
	f.Add([]byte("\xef\xbb\xbf" + string(head))) // a byte-order mark
	f.Add([]byte(strings.ReplaceAll(string(head), "\n", "\r\n")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := fstest.MapFS{"a/golden.csv": &fstest.MapFile{Data: data}}
		rep, err := m.CheckGolden(fsys, "a")
		if rep.File != "a/golden.csv" || rep.Tolerance != ParityTolerance || math.IsNaN(rep.MaxAbsDiff) {
			t.Fatalf("report %+v", rep)
		}
		rowsOK := rep.Rows >= 1 && rep.WorstLine >= 2 && rep.WorstLine <= rep.Rows+1 && rep.Rows < max(bytes.Count(data, []byte("\n")), 1)+1
		switch {
		case err == nil:
			if !rep.OK() || !rowsOK {
				t.Fatalf("accepted with report %+v", rep)
			}
			return
		case errors.Is(err, ErrParity):
			if errors.Is(err, ErrGolden) || rep.OK() || !rowsOK || !(rep.MaxAbsDiff > ParityTolerance) {
				t.Fatalf("parity error %v with report %+v", err, rep)
			}
		case !errors.Is(err, ErrGolden):
			t.Fatalf("error wraps neither ErrGolden nor ErrParity: %v", err)
		}
		if msg := err.Error(); len(msg) > 400 || !utf8.ValidString(msg) {
			t.Fatalf("error of %d bytes (valid UTF-8 %v): %.300q", len(msg), utf8.ValidString(msg), msg)
		}
	})
}
