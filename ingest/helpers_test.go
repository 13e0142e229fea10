package ingest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/internal/natstest"
)

// datasetDir is the repository copy of the UCI files.
const datasetDir = "../datasets/uci-heart-disease"

var ucIFiles = []string{"processed.cleveland.data", "processed.hungarian.data", "processed.switzerland.data", "processed.va.data"}

// waitForDatasets waits until the four UCI files are in the repository
// (they are copied in by another step).
func waitForDatasets(tb testing.TB) {
	tb.Helper()
	natstest.Eventually(tb, 30*time.Second, func() error {
		for _, f := range ucIFiles {
			if st, err := os.Stat(filepath.Join(datasetDir, f)); err != nil || st.Size() == 0 {
				return fmt.Errorf("%s not there yet: %v", f, err)
			}
		}
		return nil
	})
}

func uciPaths() []string {
	out := make([]string, len(ucIFiles))
	for i, f := range ucIFiles {
		out[i] = filepath.Join(datasetDir, f)
	}
	return out
}

var (
	fsNotExist = os.ErrNotExist
	errAny     = errors.New("any error")
)

func writeFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}
