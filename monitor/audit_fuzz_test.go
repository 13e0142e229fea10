package monitor

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

// Bounds on what a hostile audit entry can put into an alert (and so into
// ALERTS and every webhook body).
const (
	maxAlertSummary = 6*(maxAuditValue+len("…")) + 200 // five entry values and the fixed text
	maxAlertJSON    = 4096
)

// checkAlert: an alert built from an audit entry has bounded, valid UTF-8
// fields, encodes (publishAlert would fail on every redelivery otherwise,
// and a time past the year 9999 does not encode), and reads back through
// decodeAlert as it was written (lastRefusalAlert reads it to decide whether
// one is firing).
func checkAlert(t *testing.T, a schemas.Alert, now time.Time) {
	t.Helper()
	for name, v := range map[string]string{"id": a.ID, "rule": a.Rule, "severity": a.Severity, "metric": a.Metric, "comparator": a.Comparator, "summary": a.Summary} {
		if !utf8.ValidString(v) {
			t.Fatalf("alert %s is not valid UTF-8: %q", name, v)
		}
		if name != "summary" && len(v) > maxAuditValue {
			t.Fatalf("alert %s has %d bytes", name, len(v))
		}
	}
	if len(a.Summary) > maxAlertSummary {
		t.Fatalf("alert summary has %d bytes, want at most %d", len(a.Summary), maxAlertSummary)
	}
	if a.Rule != RuleArtifactRefused || a.At != now.UTC() || a.StartsAt.After(a.At) || a.StartsAt.IsZero() {
		t.Fatalf("alert rule %q at %v starts at %v (now %v)", a.Rule, a.At, a.StartsAt, now)
	}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatalf("alert does not encode: %v", err)
	}
	if len(b) > maxAlertJSON {
		t.Fatalf("alert encodes to %d bytes, want at most %d", len(b), maxAlertJSON)
	}
	back, err := decodeAlert(b)
	if err != nil {
		t.Fatalf("decodeAlert refuses the alert the monitor writes: %v\n%s", err, b)
	}
	if back.ID != a.ID || back.Status != a.Status || back.Summary != a.Summary || !back.StartsAt.Equal(a.StartsAt) {
		t.Fatalf("alert read back as %+v, written %+v", back, a)
	}
}

// FuzzAuditEntry: any client may publish to AUDIT, and an entry's actor,
// versions and reason flow into ALERTS and webhook bodies. Whatever the
// message and its subject's action, it is refused as invalid input (with a
// bounded error), or it is an entry of its subject's action whose effect
// follows from that action alone: only artifact_refused fires, only
// activate and rollback resolve, and the alerts they make are bounded,
// valid UTF-8, encodable and readable back.
func FuzzAuditEntry(f *testing.F) {
	subjects := streams.DefaultConfig().Subjects()
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, e := range []schemas.AuditEntry{
		{Action: schemas.AuditArtifactRefused, Actor: "scorer@host-1", At: now.Add(-time.Minute), FromVersion: "1.0.0", ToVersion: "1.1.0",
			SHA256: strings.Repeat("ab", 32), Reason: "tampered (active pointer)", Details: []string{"registry: artifact does not match the registry"}},
		{Action: schemas.AuditArtifactRefused, Actor: "scorer@host-1", Details: []string{"unsigned"}},
		{Action: schemas.AuditArtifactRefused, At: now.Add(-2 * staleAuditAge)},
		{Action: schemas.AuditActivate, Actor: "ana@host", At: now, FromVersion: "1.1.0", ToVersion: "1.0.0"},
		{Action: schemas.AuditRollback, Actor: "ana@host", At: now, ToVersion: "1.0.0"},
		{Action: schemas.AuditPush, Actor: "ana@host", At: now, ToVersion: "1.2.0"},
	} {
		b, err := json.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(e.Action, b, uint64(42))
		f.Add(schemas.AuditActivate, b, uint64(43)) // the body lies about its subject
	}
	for _, h := range []string{
		``, `{`, `null`, `[]`, `{"action":"artifact_refused"}`,
		`{"action":"artifact_refused","action":"push"}`,
		`{"action":"artifact_refused","reason":"` + strings.Repeat("r", 1<<16) + `"}`,
		`{"action":"artifact_refused","actor":"\xff\xfe\xfd","to_version":"a\u0000b\u202e"}`,
		`{"action":"artifact_refused","details":["` + strings.Repeat("é", 5000) + `"],"reason":""}`,
		`{"action":"artifact_refused","at":"9999-12-31T23:59:59-23:59"}`,
		`{"action":"artifact_refused","at":"0000-01-01T00:00:00+23:59"}`,
		`{"action":"artifact_refused","at":"` + strings.Repeat("9", 3000) + `"}`,
		`{"action":"artifact_refused","schema_version":1e999}`,
		`{"action":"artifact_refused","schema_version":NaN}`,
		`{"action":"artifact_refused","forced":"yes","details":"x"}`,
		`{"action":1}`,
	} {
		f.Add(schemas.AuditArtifactRefused, []byte(h), uint64(1))
	}
	f.Add("", []byte(`{"action":""}`), uint64(0))
	f.Add("artifact_refused.x", []byte(`{"action":"artifact_refused.x"}`), ^uint64(0))
	firing := refusalAlert(schemas.AuditEntry{Action: schemas.AuditArtifactRefused, Actor: "scorer", At: now, ToVersion: "1.1.0"}, 7, now)
	f.Fuzz(func(t *testing.T, action string, data []byte, seq uint64) {
		subject := subjects.Audit(action)
		e, err := decodeAuditEntry(subjects, subject, data)
		if err != nil {
			if !errors.Is(err, errInvalidInput) {
				t.Fatalf("error is not errInvalidInput: %v", err)
			}
			if msg := err.Error(); len(msg) > 600 || !utf8.ValidString(msg) {
				t.Fatalf("error of %d bytes (valid UTF-8 %v): %.300q", len(msg), utf8.ValidString(msg), msg)
			}
			return
		}
		if e.Action != action {
			t.Fatalf("accepted action %q on the subject of %q", e.Action, action)
		}
		for _, v := range []string{e.Actor, e.FromVersion, e.ToVersion, e.SHA256, e.Reason} {
			if len(v) > maxAuditValue+len("…") || !utf8.ValidString(v) {
				t.Fatalf("entry value of %d bytes (valid UTF-8 %v) passed on", len(v), utf8.ValidString(v))
			}
		}
		switch eff := auditEffect(e, now); {
		case eff == auditFire:
			if action != schemas.AuditArtifactRefused {
				t.Fatalf("a %q entry fires an alert", action)
			}
			a := refusalAlert(e, seq, now)
			if a.Status != schemas.AlertFiring || !strings.HasSuffix(a.ID, "-firing") {
				t.Fatalf("firing alert %+v", a)
			}
			checkAlert(t, a, now)
		case eff == auditResolve:
			if action != schemas.AuditActivate && action != schemas.AuditRollback {
				t.Fatalf("a %q entry resolves the alert", action)
			}
			a := resolvedAlert(firing, e, now)
			if a.Status != schemas.AlertResolved || a.ID != RuleArtifactRefused+"-7-resolved" {
				t.Fatalf("resolution %+v", a)
			}
			checkAlert(t, a, now)
		case eff != auditNoEffect:
			t.Fatalf("effect %d", eff)
		case action == schemas.AuditArtifactRefused && !stale(e, now):
			t.Fatalf("a fresh refusal (at %v, now %v) has no effect", e.At, now)
		}
	})
}
