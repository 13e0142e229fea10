package registry_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cardiostream/cardiostream/internal/registry"
	"github.com/cardiostream/cardiostream/schemas"
)

func TestPushIsIdempotentAndRefusesADifferentArtifact(t *testing.T) {
	e := newEnv(t, nil)
	first := e.push(t, dirV100, "1.0.0")
	if !first.Created || first.Metadata.State != registry.StateReady {
		t.Fatalf("first push: %+v", first)
	}
	md := first.Metadata
	if md.SHA256 != "15c11c2afce19b043f4c1b0cde83b057c160286909ab63180eb6256f48faa2ef" || md.Size == 0 ||
		!slices.Equal(md.FeatureNames, schemas.FeatureNames[:]) || md.Metrics.HeldoutRows != 184 || len(md.Files) != 3 {
		t.Errorf("metadata %+v", md)
	}
	again := e.push(t, dirV100, "1.0.0")
	if again.Created {
		t.Errorf("second push of the same artifact created it again")
	}

	// A different artifact under the same version (same manifest version,
	// different bytes) is refused, and the stored one is untouched.
	dir := copyArtifact(t, dirV100)
	man, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	man = bytes.Replace(man, []byte(`"created_by": "training/train.py"`), []byte(`"created_by": "someone else"`), 1)
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), man, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := e.r.Push(ctx(t), readArtifact(t, dir), registry.PushOptions{Version: "1.0.0", Actor: "x@y"})
	if !errors.Is(err, registry.ErrVersionExists) {
		t.Fatalf("different artifact under 1.0.0: err %v, want ErrVersionExists", err)
	}
	if _, err := e.r.Fetch(ctx(t), "1.0.0"); err != nil {
		t.Fatalf("the stored 1.0.0 must still verify: %v", err)
	}

	// --version must match the manifest; bad version strings are refused.
	for _, tc := range []struct {
		dir, version string
		want         error
	}{
		{dirV110, "1.0.0", registry.ErrInvalidArtifact},
		{dirV110, "1..0", registry.ErrInvalidVersion},
		{dirV110, "../1.1.0", registry.ErrInvalidVersion},
		{dirV110, "", registry.ErrInvalidVersion},
	} {
		if _, err := e.r.Push(ctx(t), readArtifact(t, tc.dir), registry.PushOptions{Version: tc.version, Actor: "x@y"}); !errors.Is(err, tc.want) {
			t.Errorf("push %s as %q: err %v, want %v", tc.dir, tc.version, err, tc.want)
		}
	}
	// Exactly one push entry: the no-op and the refusals are not audited.
	if got := actions(auditEntries(t, e.js)); !slices.Equal(got, []string{schemas.AuditPush}) {
		t.Errorf("audit actions %v, want [push]", got)
	}
}

func TestGates(t *testing.T) {
	e := newEnv(t, nil)
	e.push(t, dirV100, "1.0.0")
	e.push(t, dirV110, "1.1.0")
	e.push(t, dirPoor, poorVersion)

	// Broken variants of 1.0.0, each under its own version.
	variant := func(version string, edit func(dir string)) {
		dir := copyArtifact(t, dirV100)
		edit(dir)
		p := filepath.Join(dir, "manifest.json")
		man, _ := os.ReadFile(p)
		man = bytes.Replace(man, []byte(`"version": "1.0.0"`), []byte(`"version": "`+version+`"`), 1)
		if err := os.WriteFile(p, man, 0o644); err != nil {
			t.Fatal(err)
		}
		e.push(t, dir, version)
	}
	variant("9.0.0-swapped", func(dir string) {
		p := filepath.Join(dir, "manifest.json")
		man, _ := os.ReadFile(p)
		man = bytes.Replace(man, []byte("\"age\",\n    \"sex\""), []byte("\"sex\",\n    \"age\""), 1)
		os.WriteFile(p, man, 0o644)
	})
	variant("9.0.0-golden", func(dir string) {
		p := filepath.Join(dir, "golden.csv")
		g, _ := os.ReadFile(p)
		g = bytes.Replace(g, []byte(",0.48803436756134033\n"), []byte(",0.49803436756134033\n"), 1)
		os.WriteFile(p, g, 0o644)
	})

	tests := []struct {
		version    string
		wantFailed []string
	}{
		{"1.0.0", nil},
		{"1.1.0", nil},
		{poorVersion, []string{registry.CheckAccuracy, registry.CheckAUC, registry.CheckBrier}},
		{"9.0.0-swapped", []string{registry.CheckLoad, registry.CheckFeatures}},
		{"9.0.0-golden", []string{registry.CheckGolden}},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			rep, err := e.r.Validate(ctx(t), tt.version)
			if err != nil {
				t.Fatal(err)
			}
			var failed []string
			for _, c := range rep.Failed() {
				failed = append(failed, c.Name)
			}
			if !slices.Equal(failed, tt.wantFailed) {
				t.Fatalf("failed checks %v, want %v; report %+v", failed, tt.wantFailed, rep.Checks)
			}
			if rep.Rows > 0 {
				t.Logf("FIGURE TestGates version=%s accuracy=%.4f auc=%.4f brier=%.4f rows=%d", tt.version, rep.Accuracy, rep.AUC, rep.Brier, rep.Rows)
			}

			before := len(auditEntries(t, e.js))
			_, err = e.r.Activate(ctx(t), tt.version, registry.ChangeOptions{Actor: "tester@host", Reason: "gate test"})
			if tt.wantFailed == nil {
				if err != nil {
					t.Fatalf("activate: %v", err)
				}
				return
			}
			var ge *registry.GateError
			if !errors.As(err, &ge) || !errors.Is(err, registry.ErrGateRefused) {
				t.Fatalf("activate: err %v, want a GateError", err)
			}
			// One line per failed check, naming it.
			lines := strings.Split(err.Error(), "\n")[1:]
			if len(lines) != len(tt.wantFailed) {
				t.Fatalf("refusal lines %q, want one per failed check %v", lines, tt.wantFailed)
			}
			for i, name := range tt.wantFailed {
				if !strings.Contains(lines[i], "FAIL "+name) {
					t.Errorf("line %q does not name check %s", lines[i], name)
				}
			}
			es := auditEntries(t, e.js)
			if len(es) != before+1 || es[len(es)-1].Action != schemas.AuditGateRefused || es[len(es)-1].ToVersion != tt.version ||
				len(es[len(es)-1].Details) != 1+len(tt.wantFailed) {
				t.Fatalf("audit after refusal: %+v", es[before:])
			}
			p, err := e.r.Pointers(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			if p.Active != nil && p.Active.Version == tt.version {
				t.Fatalf("refused version %s became active", tt.version)
			}
		})
	}
}

func TestForce(t *testing.T) {
	e := newEnv(t, nil)
	e.push(t, dirPoor, poorVersion)
	res, err := e.r.Activate(ctx(t), poorVersion, registry.ChangeOptions{Actor: "tester@host", Reason: "incident drill", Force: true})
	if err != nil {
		t.Fatalf("forced activate: %v", err)
	}
	if !res.Forced || !res.Pointer.Forced {
		t.Errorf("result %+v: forced not recorded", res)
	}
	es := auditEntries(t, e.js)
	last := es[len(es)-1]
	if last.Action != schemas.AuditActivate || !last.Forced || len(last.Details) != 3 {
		t.Errorf("audit %+v: want a forced activate with the three bypassed checks", last)
	}

	// Production refuses force outright, before looking at the version.
	prod := openRegistry(t, e.js, func(c *registry.Config) { c.Production = true })
	if _, err := prod.Activate(ctx(t), poorVersion, registry.ChangeOptions{Actor: "a@b", Force: true}); !errors.Is(err, registry.ErrForceRefused) {
		t.Fatalf("production force: err %v, want ErrForceRefused", err)
	}
	if _, err := prod.SetShadow(ctx(t), poorVersion, registry.ChangeOptions{Actor: "a@b", Force: true}); !errors.Is(err, registry.ErrForceRefused) {
		t.Fatalf("production force shadow: err %v, want ErrForceRefused", err)
	}
}

// TestPointerSemanticsAndAudit walks activate, rollback, shadow and checks
// the pointers after each step and the whole audit trail at the end.
func TestPointerSemanticsAndAudit(t *testing.T) {
	e := newEnv(t, nil)
	e.push(t, dirV100, "1.0.0")
	e.push(t, dirV110, "1.1.0")
	opts := registry.ChangeOptions{Actor: "tester@host", Reason: "walk"}
	type want struct{ active, previous, shadow string }
	steps := []struct {
		name    string
		do      func() (*registry.ChangeResult, error)
		want    want
		wantErr error
	}{
		{"rollback with nothing active", func() (*registry.ChangeResult, error) { return e.r.Rollback(ctx(t), "", opts) }, want{}, registry.ErrNoPrevious},
		{"activate 1.0.0", func() (*registry.ChangeResult, error) { return e.r.Activate(ctx(t), "1.0.0", opts) }, want{"1.0.0", "", ""}, nil},
		{"activate 1.0.0 again (no-op)", func() (*registry.ChangeResult, error) { return e.r.Activate(ctx(t), "1.0.0", opts) }, want{"1.0.0", "", ""}, nil},
		{"activate 1.1.0", func() (*registry.ChangeResult, error) { return e.r.Activate(ctx(t), "1.1.0", opts) }, want{"1.1.0", "1.0.0", ""}, nil},
		{"rollback", func() (*registry.ChangeResult, error) { return e.r.Rollback(ctx(t), "", opts) }, want{"1.0.0", "1.1.0", ""}, nil},
		{"rollback --to 1.1.0", func() (*registry.ChangeResult, error) { return e.r.Rollback(ctx(t), "1.1.0", opts) }, want{"1.1.0", "1.0.0", ""}, nil},
		{"shadow the active version", func() (*registry.ChangeResult, error) { return e.r.SetShadow(ctx(t), "1.1.0", opts) }, want{"1.1.0", "1.0.0", ""}, errAny},
		{"shadow 1.0.0", func() (*registry.ChangeResult, error) { return e.r.SetShadow(ctx(t), "1.0.0", opts) }, want{"1.1.0", "1.0.0", "1.0.0"}, nil},
		{"promote the shadow: activate 1.0.0", func() (*registry.ChangeResult, error) {
			res, err := e.r.Activate(ctx(t), "1.0.0", opts)
			if err == nil && !res.ShadowCleared {
				t.Errorf("activating the shadow version: ShadowCleared false")
			}
			return res, err
		}, want{"1.0.0", "1.1.0", ""}, nil},
		{"shadow 1.1.0", func() (*registry.ChangeResult, error) { return e.r.SetShadow(ctx(t), "1.1.0", opts) }, want{"1.0.0", "1.1.0", "1.1.0"}, nil},
		{"activate unknown", func() (*registry.ChangeResult, error) { return e.r.Activate(ctx(t), "7.7.7", opts) }, want{"1.0.0", "1.1.0", "1.1.0"}, registry.ErrNotFound},
		{"shadow off", func() (*registry.ChangeResult, error) { return e.r.ShadowOff(ctx(t), opts) }, want{"1.0.0", "1.1.0", ""}, nil},
		{"shadow off again (no-op)", func() (*registry.ChangeResult, error) { return e.r.ShadowOff(ctx(t), opts) }, want{"1.0.0", "1.1.0", ""}, nil},
	}
	for _, s := range steps {
		_, err := s.do()
		switch {
		case s.wantErr == errAny && err == nil:
			t.Fatalf("%s: no error", s.name)
		case s.wantErr != nil && s.wantErr != errAny && !errors.Is(err, s.wantErr):
			t.Fatalf("%s: err %v, want %v", s.name, err, s.wantErr)
		case s.wantErr == nil && err != nil:
			t.Fatalf("%s: %v", s.name, err)
		}
		p, err := e.r.Pointers(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		var got want
		if p.Active != nil {
			got.active, got.previous = p.Active.Version, p.Active.Previous
			if p.Active.SHA256 == "" || p.Active.Actor != "tester@host" {
				t.Errorf("%s: active pointer %+v lacks sha256 or actor", s.name, p.Active)
			}
		}
		if p.Shadow != nil {
			got.shadow = p.Shadow.Version
		}
		if got != s.want {
			t.Fatalf("%s: pointers %+v, want %+v", s.name, got, s.want)
		}
	}

	type entry struct{ action, from, to string }
	var got []entry
	for _, a := range auditEntries(t, e.js) {
		got = append(got, entry{a.Action, a.FromVersion, a.ToVersion})
	}
	wantAudit := []entry{
		{"push", "", "1.0.0"}, {"push", "", "1.1.0"},
		{"activate", "", "1.0.0"}, {"activate", "1.0.0", "1.1.0"},
		{"rollback", "1.1.0", "1.0.0"}, {"rollback", "1.0.0", "1.1.0"},
		{"shadow_set", "", "1.0.0"}, {"activate", "1.1.0", "1.0.0"}, {"shadow_off", "1.0.0", ""},
		{"shadow_set", "", "1.1.0"}, {"shadow_off", "1.1.0", ""},
	}
	if !slices.Equal(got, wantAudit) {
		t.Fatalf("audit trail\n got %v\nwant %v", got, wantAudit)
	}
	hist, err := e.r.History(ctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != len(wantAudit) || hist[2].Reason != "walk" || hist[2].SHA256 == "" {
		t.Fatalf("History: %+v", hist)
	}
	last2, err := e.r.History(ctx(t), 2)
	if err != nil || len(last2) != 2 || last2[1].Action != schemas.AuditShadowOff {
		t.Fatalf("History(2): %+v, %v", last2, err)
	}
	list, err := e.r.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Version != "1.0.0" || !list[0].Active || list[1].Active || list[1].Version != "1.1.0" {
		t.Fatalf("List: %+v", list)
	}
	vi, err := e.r.Show(ctx(t), "1.0.0")
	if err != nil || !vi.Active || vi.Notes != "test push" || vi.PushedBy != "tester@host" {
		t.Fatalf("Show: %+v, %v", vi, err)
	}
}

var errAny = errors.New("any error")

// TestConcurrentActivations: many actors flip the active pointer at once.
// Compare-and-set makes the audit trail one unbroken chain: every entry's
// from_version is the previous entry's to_version.
func TestConcurrentActivations(t *testing.T) {
	e := newEnv(t, nil)
	e.push(t, dirV100, "1.0.0")
	e.push(t, dirV110, "1.1.0")
	if _, err := e.r.Activate(ctx(t), "1.0.0", registry.ChangeOptions{Actor: "setup@host"}); err != nil {
		t.Fatal(err)
	}
	// Separate handles, as separate processes would have.
	var wg sync.WaitGroup
	var mu sync.Mutex
	changed, conflicts := 0, 0
	for i := range 8 {
		r := openRegistry(t, e.js, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 3 {
				v := []string{"1.0.0", "1.1.0"}[(i+j)%2]
				res, err := r.Activate(ctx(t), v, registry.ChangeOptions{Actor: "actor@host"})
				mu.Lock()
				switch {
				case errors.Is(err, registry.ErrConflict):
					conflicts++
				case err != nil:
					t.Errorf("activate: %v", err)
				case !res.Unchanged:
					changed++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	es := auditEntries(t, e.js)
	var acts []schemas.AuditEntry
	for _, a := range es {
		if a.Action == schemas.AuditActivate {
			acts = append(acts, a)
		}
	}
	if len(acts) != changed+1 {
		t.Fatalf("%d activate entries, want %d (changes) + 1 (setup)", len(acts), changed)
	}
	for i := 1; i < len(acts); i++ {
		if acts[i].FromVersion != acts[i-1].ToVersion {
			t.Fatalf("entry %d: from %s, previous entry went to %s: a lost update", i, acts[i].FromVersion, acts[i-1].ToVersion)
		}
	}
	p, _ := e.r.Pointers(ctx(t))
	if p.Active.Version != acts[len(acts)-1].ToVersion {
		t.Fatalf("active %s, last audit entry says %s", p.Active.Version, acts[len(acts)-1].ToVersion)
	}
	t.Logf("FIGURE TestConcurrentActivations changes=%d conflicts_given_up=%d", changed, conflicts)
}

func TestTamperedArtifactIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	e.push(t, dirV100, "1.0.0")
	obj, err := e.js.ObjectStore(ctx(t), registry.DefaultModelsBucket)
	if err != nil {
		t.Fatal(err)
	}
	model, err := obj.GetBytes(ctx(t), "1.0.0/model.json")
	if err != nil {
		t.Fatal(err)
	}
	// Someone with write access to the bucket replaces the model (the object
	// store's own digest is updated, so only the registry's record can tell).
	tampered := bytes.Replace(model, []byte(`"base_score":"`), []byte(`"base_score":"0`), 1)
	if bytes.Equal(tampered, model) {
		t.Fatal("test did not change the model")
	}
	if _, err := obj.PutBytes(ctx(t), "1.0.0/model.json", tampered); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Fetch(ctx(t), "1.0.0"); !errors.Is(err, registry.ErrTampered) {
		t.Fatalf("Fetch of tampered artifact: err %v, want ErrTampered", err)
	}
	_, err = e.r.Activate(ctx(t), "1.0.0", registry.ChangeOptions{Actor: "a@b", Force: true})
	if !errors.Is(err, registry.ErrGateRefused) || !strings.Contains(err.Error(), "integrity") {
		t.Fatalf("activate tampered (even forced): err %v, want an integrity refusal", err)
	}
	es := auditEntries(t, e.js)
	if last := es[len(es)-1]; last.Action != schemas.AuditGateRefused || !strings.Contains(strings.Join(last.Details, " "), "integrity") {
		t.Fatalf("audit %+v", last)
	}
	// A deleted file is refused the same way.
	if err := obj.Delete(ctx(t), "1.0.0/golden.csv"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Fetch(ctx(t), "1.0.0"); !errors.Is(err, registry.ErrTampered) {
		t.Fatalf("Fetch with a missing file: err %v, want ErrTampered", err)
	}
	if _, err := e.r.Fetch(ctx(t), "2.0.0"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Fetch unknown: err %v, want ErrNotFound", err)
	}
}

func TestArtifactLoadsAndAuditIsReadableByAnyClient(t *testing.T) {
	e := newEnv(t, nil)
	e.push(t, dirV110, "1.1.0")
	a, err := e.r.Fetch(ctx(t), "1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := a.Load()
	if err != nil {
		t.Fatal(err)
	}
	if m.Version() != "1.1.0" || m.SHA256() != a.SHA256 {
		t.Fatalf("loaded %s %s, artifact %s", m.Version(), m.SHA256(), a.SHA256)
	}
	// Audit is idempotent per entry (message id from the content).
	entry := schemas.AuditEntry{Action: schemas.AuditArtifactRefused, Actor: "scorer-1", ToVersion: "1.1.0", Details: []string{"test"}}
	entry.At = entry.At.Add(1) // fixed, non-zero
	for range 2 {
		if err := e.r.Audit(ctx(t), entry); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.r.Audit(ctx(t), schemas.AuditEntry{Action: "nonsense", Actor: "x"}); err == nil {
		t.Fatal("unknown action accepted")
	}
	es := auditEntries(t, e.js)
	if got := actions(es); !slices.Equal(got, []string{"push", "artifact_refused"}) {
		t.Fatalf("audit %v", got)
	}
	raw, _ := json.Marshal(es[1])
	if !bytes.Contains(raw, []byte(`"schema_version":1`)) {
		t.Fatalf("entry JSON %s", raw)
	}
}
