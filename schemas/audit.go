package schemas

import (
	"encoding/json"
	"time"
)

// StreamAudit is the stream holding the audit trail of model lifecycle
// actions (push, activate, rollback, shadow changes, refusals).
const StreamAudit = "AUDIT"

// Audit actions: the last subject token of an audit entry is
// "model.<action>" (e.g. cardio.audit.model.activate).
const (
	AuditPush            = "push"
	AuditActivate        = "activate"
	AuditRollback        = "rollback"
	AuditShadowSet       = "shadow_set"
	AuditShadowOff       = "shadow_off"
	AuditGateRefused     = "gate_refused"
	AuditArtifactRefused = "artifact_refused" // published by scorers
)

// AuditActions lists every audit action.
var AuditActions = []string{AuditPush, AuditActivate, AuditRollback, AuditShadowSet, AuditShadowOff, AuditGateRefused, AuditArtifactRefused}

// AuditEntry is one entry of the audit trail, stored in AUDIT on
// <prefix>.audit.model.<action>. Entries are append-only; the stream's order
// is the order in which the actions took effect.
type AuditEntry struct {
	SchemaVersion int       `json:"schema_version"`
	Action        string    `json:"action"`
	Actor         string    `json:"actor"` // who: user@host, or the scorer's connection name
	At            time.Time `json:"at"`
	FromVersion   string    `json:"from_version,omitempty"`
	ToVersion     string    `json:"to_version,omitempty"`
	SHA256        string    `json:"sha256,omitempty"` // sha256 of model.json of ToVersion
	Reason        string    `json:"reason,omitempty"`
	Forced        bool      `json:"forced,omitempty"`
	// Details holds action-specific lines, e.g. the failed gate checks of a
	// gate_refused entry or the error of an artifact_refused one.
	Details []string `json:"details,omitempty"`
}

// MarshalJSON always writes schema_version.
func (a AuditEntry) MarshalJSON() ([]byte, error) {
	type plain AuditEntry
	a.SchemaVersion = version(a.SchemaVersion)
	return json.Marshal(plain(a))
}

// Audit is the subject of one audit action: <prefix>.audit.model.<action>.
func (s Subjects) Audit(action string) string { return s.Prefix + ".audit.model." + action }

// AllAudit covers every audit subject; AUDIT's stream subject.
func (s Subjects) AllAudit() string { return s.Prefix + ".audit.>" }
