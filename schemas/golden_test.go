package schemas

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestErrorMessagesGolden records, for every rejected example, the stage, each
// problem as it goes into a dead letter, and the redacted Error() text that
// gets logged, so that wording changes show up in review. Run with -update to
// rewrite testdata/errors.golden.
func TestErrorMessagesGolden(t *testing.T) {
	var b bytes.Buffer
	for _, ex := range loadExamples(t) {
		if ex.verdict == "valid" {
			continue
		}
		err := decodeKind(ex.kind, ex.payload)
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s/%s/%s: err = %v, want *ValidationError", ex.verdict, ex.kind, ex.name, err)
			continue
		}
		b.WriteString("== " + ex.verdict + "/" + ex.kind + "/" + ex.name + " [" + string(ve.Stage) + "]\n")
		for _, p := range ve.Problems {
			b.WriteString("  " + p.String() + "\n")
		}
		b.WriteString("  logged: " + err.Error() + "\n")
	}
	compareGolden(t, filepath.Join("testdata", "errors.golden"), b.Bytes())
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w []byte
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if !bytes.Equal(g, w) {
				t.Fatalf("%s differs at line %d:\n got: %s\nwant: %s\n(run with -update if the change is intended)", path, i+1, g, w)
			}
		}
	}
}
