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

// processAudit turns one artifact_refused audit entry into a firing alert,
// and an activation or rollback after it into the alert's resolution: the
// scorer kept serving its previous model meanwhile, and the operator's
// answer is a new target. Alert ids are derived from the refusal's AUDIT
// sequence, so a redelivery is deduplicated by ALERTS.
func processAudit(m *Monitor, ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata) error {
	var e schemas.AuditEntry
	if err := json.Unmarshal(msg.Data(), &e); err != nil {
		return fmt.Errorf("%w: audit entry: %w", errInvalidInput, err)
	}
	now := m.now()
	if at := e.At; !at.IsZero() && now.Sub(at) > staleAuditAge {
		m.log.Info("old audit entry; no alert change", "action", e.Action, "audit_sequence", meta.Sequence.Stream, "at", at)
		return nil
	}
	switch e.Action {
	case schemas.AuditArtifactRefused:
	case schemas.AuditActivate, schemas.AuditRollback:
		return resolveRefusal(m, ctx, e, now)
	default:
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
	reason := e.Reason
	if reason == "" && len(e.Details) > 0 {
		reason = e.Details[0]
	}
	a := schemas.Alert{
		SchemaVersion: schemas.Version,
		ID:            RuleArtifactRefused + "-" + strconv.FormatUint(meta.Sequence.Stream, 10) + "-firing",
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
	if a.StartsAt.IsZero() {
		a.StartsAt = a.At
	}
	if _, err := m.publishAlert(ctx, a, lastSeq); err != nil {
		// Another monitor changed the subject meanwhile: redelivered,
		// this entry is judged again against what it wrote.
		return err
	}
	m.metrics.refusals.Inc()
	m.log.Warn("alert: a scorer refused a model artifact", "alert_id", a.ID, "version", e.ToVersion, "actor", e.Actor)
	return nil
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
	a := *last
	a.ID = strings.TrimSuffix(last.ID, "-firing") + "-resolved"
	a.Status, a.Value, a.At = schemas.AlertResolved, 0, now.UTC()
	a.Summary = fmt.Sprintf("%s by %s to %s: the refused artifact is no longer what scorers are asked to load",
		e.Action, orUnknown(e.Actor), orUnknown(e.ToVersion))
	if _, err := m.publishAlert(ctx, a, lastSeq); err != nil {
		if isWrongLastSeq(err) {
			return nil // another monitor resolved it, or a new refusal fired meanwhile
		}
		return err
	}
	m.log.Info("alert resolved: the operator changed the active model after a refused artifact", "alert_id", a.ID, "action", e.Action, "version", e.ToVersion)
	return nil
}
