package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestStringNeverPrintsValue(t *testing.T) {
	const value = "s3cr3t-value-xyz"
	s := String(value)
	type wrapper struct{ Key String }
	w := wrapper{Key: s}

	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("msg", "key", s, "w", w)
	js, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v": fmt.Sprintf("%v", s), "%s": fmt.Sprintf("%s", s), "%q": fmt.Sprintf("%q", s),
		"%+v struct": fmt.Sprintf("%+v", w), "%#v struct": fmt.Sprintf("%#v", w),
		"%x": fmt.Sprintf("%x", s), "json": string(js), "slog": logBuf.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, value) {
			t.Errorf("%s leaks the secret: %s", name, out)
		}
		if !strings.Contains(out, redacted) {
			t.Errorf("%s does not say REDACTED: %s", name, out)
		}
	}
	if s.Reveal() != value {
		t.Errorf("Reveal() = %q, want the value", s.Reveal())
	}
	if String("").String() != "" || String("").IsSet() {
		t.Error("empty secret should print empty and not be set")
	}
}
