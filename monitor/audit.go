package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
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

// processAudit turns one artifact_refused audit entry into a firing alert.
// The alert id is derived from the entry's AUDIT sequence, so a redelivery
// is deduplicated by ALERTS. There is no "resolved": the scorer keeps
// serving its previous model, and the next activation or rollback is the
// operator's answer (recorded in the audit trail).
func processAudit(m *Monitor, ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata) error {
	var e schemas.AuditEntry
	if err := json.Unmarshal(msg.Data(), &e); err != nil {
		return fmt.Errorf("%w: audit entry: %w", errInvalidInput, err)
	}
	if e.Action != schemas.AuditArtifactRefused {
		return nil
	}
	now := m.now()
	if at := e.At; !at.IsZero() && now.Sub(at) > staleAuditAge {
		m.log.Info("old artifact_refused audit entry; no alert", "audit_sequence", meta.Sequence.Stream, "at", at)
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
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encoding alert %s: %w", a.ID, err)
	}
	pctx, cancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
	defer cancel()
	ack, err := m.js.PublishMsg(pctx, &nats.Msg{Subject: m.subjects.Alerts(RuleArtifactRefused), Data: b},
		jetstream.WithMsgID(a.ID), jetstream.WithExpectStream(schemas.StreamAlerts))
	if err != nil {
		return fmt.Errorf("publishing alert %s: %w", a.ID, err)
	}
	if !ack.Duplicate {
		m.metrics.refusals.Inc()
		m.log.Warn("alert: a scorer refused a model artifact", "alert_id", a.ID, "version", e.ToVersion, "actor", e.Actor)
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
