package monitor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// TestArtifactRefusedRaisesAlert: an artifact_refused audit entry becomes
// one firing alert in ALERTS (a redelivered or republished entry, or a
// second refusal while it fires, does not make a second); other audit
// actions and stale refusals raise none; the next activation or rollback
// resolves it.
func TestArtifactRefusedRaisesAlert(t *testing.T) {
	h := newHarness(t)
	clock := newFakeClock()
	r := h.start(testConfig(), clock)
	entry := func(action string, at time.Time, msgID string) {
		h.publish(h.subjects.Audit(action), msgID, schemas.AuditEntry{SchemaVersion: schemas.Version, Action: action,
			Actor: "scorer@host-1", At: at, FromVersion: "1.0.0", ToVersion: "1.1.0", SHA256: "abc123",
			Reason: "sha256 mismatch", Details: []string{"registry: artifact does not match the registry"}})
	}
	entry(schemas.AuditActivate, clock.Now(), "")
	entry(schemas.AuditArtifactRefused, clock.Now().Add(-2*staleAuditAge), "") // history, not news
	entry(schemas.AuditArtifactRefused, clock.Now(), "refusal-1")
	entry(schemas.AuditArtifactRefused, clock.Now(), "refusal-1") // the publisher's retry: deduplicated
	h.settle(r)
	var got []schemas.Alert
	for _, a := range h.alerts() {
		if a.Rule == RuleArtifactRefused {
			got = append(got, a)
		}
	}
	if len(got) != 1 {
		t.Fatalf("%d artifact_refused alerts, want 1: %+v", len(got), got)
	}
	a := got[0]
	if a.Status != schemas.AlertFiring || a.Severity != "critical" || !strings.Contains(a.Summary, "1.1.0") ||
		!strings.Contains(a.Summary, "keeps serving 1.0.0") || !strings.Contains(a.Summary, "scorer@host-1") {
		t.Errorf("alert %+v", a)
	}

	// A second scorer refuses too: the alert is already firing, no second.
	entry(schemas.AuditArtifactRefused, clock.Now(), "refusal-2")
	// The operator's answer, a rollback, resolves it; a later activation
	// finds nothing firing.
	entry(schemas.AuditRollback, clock.Now(), "")
	entry(schemas.AuditActivate, clock.Now(), "")
	h.settle(r)
	got = got[:0]
	for _, a := range h.alerts() {
		if a.Rule == RuleArtifactRefused {
			got = append(got, a)
		}
	}
	if len(got) != 2 || got[1].Status != schemas.AlertResolved || got[1].ID != strings.TrimSuffix(got[0].ID, "-firing")+"-resolved" ||
		!got[1].StartsAt.Equal(got[0].StartsAt) || !strings.Contains(got[1].Summary, "rollback") {
		t.Fatalf("after a second refusal, a rollback and an activation: %+v; want the firing alert and its resolution", got)
	}

	// A refusal after the resolution fires again.
	entry(schemas.AuditArtifactRefused, clock.Now(), "refusal-3")
	h.settle(r)
	n := 0
	for _, a := range h.alerts() {
		if a.Rule == RuleArtifactRefused && a.Status == schemas.AlertFiring {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d firing artifact_refused alerts after a new refusal, want 2", n)
	}
}

// TestHostileAuditEntries: any client may publish to AUDIT. A refusal whose
// body lies about its subject raises nothing; one dated past the year 9999
// (which JSON cannot encode) and one with a ~1 MB reason (which, copied into
// an alert, made an ALERTS message past the payload limit) each raise one
// bounded alert instead of being redelivered forever. Found by
// FuzzAuditEntry; the outcome is read from ALERTS and the audit consumer.
func TestHostileAuditEntries(t *testing.T) {
	h := newHarness(t)
	clock := newFakeClock()
	r := h.start(testConfig(), clock)
	publishRaw := func(action, body string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := h.js.Publish(ctx, h.subjects.Audit(action), []byte(body)); err != nil {
			t.Fatalf("publishing to %s: %v", h.subjects.Audit(action), err)
		}
	}
	refusals := func() []schemas.Alert {
		var out []schemas.Alert
		for _, a := range h.alerts() {
			if a.Rule == RuleArtifactRefused {
				out = append(out, a)
			}
		}
		return out
	}
	at := clock.Now().UTC().Format(time.RFC3339)

	publishRaw(schemas.AuditActivate, `{"action":"artifact_refused","actor":"forger","at":"`+at+`"}`)
	h.settle(r)
	if got := refusals(); len(got) != 0 {
		t.Fatalf("an activate-subject entry whose body says artifact_refused raised %+v", got)
	}

	publishRaw(schemas.AuditArtifactRefused, `{"action":"artifact_refused","actor":"future","at":"9999-12-31T23:59:59-23:59"}`)
	h.settle(r)
	got := refusals()
	if len(got) != 1 || got[0].Status != schemas.AlertFiring || got[0].StartsAt.After(got[0].At) || !strings.Contains(got[0].Summary, "future") {
		t.Fatalf("after a refusal dated 10000-01-01 UTC: %+v, want one firing alert starting now", got)
	}

	publishRaw(schemas.AuditRollback, `{"action":"rollback","actor":"ana","to_version":"1.0.0","at":"`+at+`"}`)
	big := strings.Repeat("r", 1<<20-300)
	publishRaw(schemas.AuditArtifactRefused, `{"action":"artifact_refused","actor":"big","at":"`+at+`","reason":"`+big+`"}`)
	h.settle(r)
	got = refusals()
	if len(got) != 3 || got[1].Status != schemas.AlertResolved || got[2].Status != schemas.AlertFiring || !strings.Contains(got[2].Summary, "big") {
		t.Fatalf("after a rollback and a refusal with a ~1 MB reason: %d alerts %+v, want firing, resolved, firing", len(got), got)
	}
	if n := len(got[2].Summary); n > maxAlertSummary {
		t.Fatalf("the alert of a ~1 MB reason has a %d-byte summary, want at most %d", n, maxAlertSummary)
	}
}
