package webhook

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The snippets in docs/webhooks.md must be the code the tests run: the
// Python verify() of docs/examples/verify_webhook.py and the receiver of
// example_test.go.

func readFile(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// codeBlock returns the first fenced block of the given language in doc.
func codeBlock(tb testing.TB, doc, lang string) string {
	tb.Helper()
	m := regexp.MustCompile("(?s)```" + lang + "\n(.*?)```").FindStringSubmatch(doc)
	if m == nil {
		tb.Fatalf("no ```%s block in docs/webhooks.md", lang)
	}
	return m[1]
}

// from returns the Python definition starting with prefix: up to the first
// following line that is not indented.
func from(tb testing.TB, s, prefix string) string {
	tb.Helper()
	i := strings.Index(s, "\n"+prefix)
	if i < 0 {
		tb.Fatalf("%q not found", prefix)
	}
	lines := strings.Split(s[i+1:], "\n")
	end := 1
	for end < len(lines) && (lines[end] == "" || strings.HasPrefix(lines[end], " ")) {
		end++
	}
	return strings.TrimRight(strings.Join(lines[:end], "\n"), "\n")
}

func TestDocsSnippetsAreTheTestedCode(t *testing.T) {
	doc := readFile(t, filepath.Join("..", "..", "docs", "webhooks.md"))

	py := codeBlock(t, doc, "python")
	pyFile := readFile(t, pythonRecipe)
	if got, want := from(t, "\n"+py, "def verify("), from(t, pyFile, "def verify("); got != want {
		t.Errorf("the Python verify() in docs/webhooks.md differs from %s:\n--- doc\n%s\n--- file\n%s", pythonRecipe, got, want)
	}

	goBlock := strings.TrimSpace(codeBlock(t, doc, "go"))
	if example := readFile(t, "example_test.go"); !strings.Contains(example, goBlock) {
		t.Errorf("the Go receiver in docs/webhooks.md is not verbatim in example_test.go:\n%s", goBlock)
	}

	if !strings.Contains(doc, knownVectorHex) {
		t.Error("docs/webhooks.md does not show the known-answer signature that TestSignKnownVector checks")
	}
}
