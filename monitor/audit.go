package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/schemas"
)

// ConsumerAudit is the durable consumer of artifact_refused entries
// (<prefix>.audit.model.artifact_refused) on AUDIT.
const ConsumerAudit = "monitor-audit"

// RuleArtifactRefused names the alert raised when a scorer refuses a model
// artifact (tampered, unsigned, unreadable): ALERTS subject
// <prefix>.alerts.model_artifact_refused.
const RuleArtifactRefused = "model_artifact_refused"

// staleAuditAge: an artifact_refused entry older than this when the monitor
// first reads it (a monitor created long after the fact, or a consumer
// recreated) is history, not news: it is acked without an alert.
const staleAuditAge = time.Hour

// maxAuditValue bounds each value an audit entry contributes to an alert or
// a log line (actor, versions, sha256, reason): any NATS client may publish
// to AUDIT, and a 1 MB reason copied into an alert would make an ALERTS
// message past the server's payload limit, retried forever, and a 1 MB
// webhook body.
const maxAuditValue = 256

// Effects of an audit entry on the model_artifact_refused alert.
const (
	auditNoEffect = iota
	auditFire     // a refusal: fire unless one is firing
	auditResolve  // an activation or rollback: resolve a firing one
)

// processAudit turns one artifact_refused audit entry into a firing alert,
// and an activation or rollback after it into the alert's resolution: the
// scorer kept serving its previous model meanwhile, and the operator's
// answer is a new target. Alert ids are derived from the refusal's AUDIT
// sequence, so a redelivery is deduplicated by ALERTS.
func processAudit(m *Monitor, ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata) error {
	e, err := decodeAuditEntry(m.subjects, msg.Subject(), msg.Data())
	if err != nil {
		return err
	}
	now := m.now()
	switch auditEffect(e, now) {
	case auditResolve:
		return resolveRefusal(m, ctx, e, now)
	case auditFire:
	default:
		if stale(e, now) {
			m.log.Info("old audit entry; no alert change", "action", e.Action, "audit_sequence", meta.Sequence.Stream, "at", e.At)
		}
		return nil
	}
	// One refusal alert at a time: while one is firing, another refusal
	// (a second scorer refusing the same artifact) adds no alert; the
	// operator's next activation or rollback resolves it.
	last, lastSeq, err := lastRefusalAlert(m, ctx)
	if err != nil {
		return err
	}
	if last != nil && last.Status == schemas.AlertFiring {
		m.log.Warn("a scorer refused a model artifact; its alert is already firing", "firing_alert_id", last.ID,
			"version", e.ToVersion, "actor", e.Actor, "audit_sequence", meta.Sequence.Stream)
		return nil
	}
	a := refusalAlert(e, meta.Sequence.Stream, now)
	if _, err := m.publishAlert(ctx, a, lastSeq); err != nil {
		// Another monitor changed the subject meanwhile: redelivered,
		// this entry is judged again against what it wrote.
		return err
	}
	m.metrics.refusals.Inc()
	m.log.Warn("alert: a scorer refused a model artifact", "alert_id", a.ID, "version", e.ToVersion, "actor", e.Actor)
	return nil
}

// decodeAuditEntry decodes an AUDIT message on subject
// <prefix>.audit.model.<action>. Any NATS client may publish there: an entry
// that is not JSON, or whose action is not its subject's (the consumer picks
// entries by subject), is errInvalidInput with a bounded error. The values
// an alert or a log line may quote are clipped to maxAuditValue bytes.
func decodeAuditEntry(subjects schemas.Subjects, subject string, data []byte) (schemas.AuditEntry, error) {
	var e schemas.AuditEntry
	if err := json.Unmarshal(data, &e); err != nil {
		return e, fmt.Errorf("%w: audit entry: %s", errInvalidInput, schemas.ErrorDetail(err))
	}
	if action, ok := strings.CutPrefix(subject, subjects.Audit("")); !ok || action != e.Action {
		return e, fmt.Errorf("%w: audit entry: action %s is not its subject's %s", errInvalidInput, schemas.Quote(e.Action), schemas.Quote(subject))
	}
	clip := func(s *string) { *s = schemas.Clip(*s, maxAuditValue) }
	clip(&e.Actor)
	clip(&e.FromVersion)
	clip(&e.ToVersion)
	clip(&e.SHA256)
	clip(&e.Reason)
	if len(e.Details) > 0 {
		e.Details = []string{schemas.Clip(e.Details[0], maxAuditValue)}
	}
	return e, nil
}

// stale: an entry older than staleAuditAge is history, not news.
func stale(e schemas.AuditEntry, now time.Time) bool {
	return !e.At.IsZero() && now.Sub(e.At) > staleAuditAge
}

// auditEffect is what entry e does to the model_artifact_refused alert.
func auditEffect(e schemas.AuditEntry, now time.Time) int {
	if stale(e, now) {
		return auditNoEffect
	}
	switch e.Action {
	case schemas.AuditArtifactRefused:
		return auditFire
	case schemas.AuditActivate, schemas.AuditRollback:
		return auditResolve
	}
	return auditNoEffect
}

// refusalAlert is the firing alert for the artifact_refused entry e at AUDIT
// sequence seq. It starts when the entry says, unless that is in the future
// (a clock ahead, or a forged time past the year 9999, which JSON cannot
// encode).
func refusalAlert(e schemas.AuditEntry, seq uint64, now time.Time) schemas.Alert {
	reason := e.Reason
	if reason == "" && len(e.Details) > 0 {
		reason = e.Details[0]
	}
	a := schemas.Alert{
		SchemaVersion: schemas.Version,
		ID:            RuleArtifactRefused + "-" + strconv.FormatUint(seq, 10) + "-firing",
		Rule:          RuleArtifactRefused,
		Status:        schemas.AlertFiring,
		Severity:      "critical",
		Metric:        "artifact_refused",
		Comparator:    ">",
		Threshold:     0,
		Value:         1,
		Samples:       1,
		Summary: fmt.Sprintf("%s refused model version %s (sha256 %s): %s; it keeps serving %s",
			orUnknown(e.Actor), orUnknown(e.ToVersion), orUnknown(e.SHA256), orUnknown(reason), orUnknown(e.FromVersion)),
		StartsAt: e.At.UTC(),
		At:       now.UTC(),
	}
	if a.StartsAt.IsZero() || a.StartsAt.After(a.At) {
		a.StartsAt = a.At
	}
	return a
}

// lastRefusalAlert returns the last model_artifact_refused alert and its
// ALERTS sequence (nil and 0 when there is none).
func lastRefusalAlert(m *Monitor, ctx context.Context) (*schemas.Alert, uint64, error) {
	lctx, cancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
	defer cancel()
	raw, err := m.alerts.GetLastMsgForSubject(lctx, m.subjects.Alerts(RuleArtifactRefused))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading the last %s alert: %w", RuleArtifactRefused, err)
	}
	a, err := decodeAlert(raw.Data)
	if err != nil {
		return nil, raw.Sequence, nil // unreadable: treated as not firing
	}
	return &a, raw.Sequence, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// resolveRefusal publishes the resolution of a firing model_artifact_refused
// alert after an activation or rollback; without one firing it does nothing.
// The expected last sequence on the alert subject makes it a compare-and-set
// (a redelivery finds the alert already resolved).
func resolveRefusal(m *Monitor, ctx context.Context, e schemas.AuditEntry, now time.Time) error {
	last, lastSeq, err := lastRefusalAlert(m, ctx)
	if err != nil || last == nil || last.Status != schemas.AlertFiring {
		return err
	}
	a := resolvedAlert(*last, e, now)
	if _, err := m.publishAlert(ctx, a, lastSeq); err != nil {
		if isWrongLastSeq(err) {
			return nil // another monitor resolved it, or a new refusal fired meanwhile
		}
		return err
	}
	m.log.Info("alert resolved: the operator changed the active model after a refused artifact", "alert_id", a.ID, "action", e.Action, "version", e.ToVersion)
	return nil
}

// resolvedAlert resolves the firing alert last after the activation or
// rollback e.
func resolvedAlert(last schemas.Alert, e schemas.AuditEntry, now time.Time) schemas.Alert {
	a := last
	a.ID = strings.TrimSuffix(last.ID, "-firing") + "-resolved"
	a.Status, a.Value, a.At = schemas.AlertResolved, 0, now.UTC()
	a.Summary = fmt.Sprintf("%s by %s to %s: the refused artifact is no longer what scorers are asked to load",
		e.Action, orUnknown(e.Actor), orUnknown(e.ToVersion))
	return a
}
