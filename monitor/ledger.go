package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/schemas"
)

// ledgerVersion is the "v" of every ledger event this package writes.
const ledgerVersion = 1

// Event kinds. The first three record one input message each; the last two
// record the resolution of a (source, record_id).
const (
	kindPrediction = "prediction"
	kindDeadLetter = "deadletter"
	kindOutcome    = "outcome"
	kindJoin       = "join"
	kindUnscorable = "unscorable"
	// A shadow model's prediction (input), and its resolution: joined with
	// the record's outcome and with the active model's prediction.
	kindShadow     = "shadow"
	kindShadowJoin = "shadow_join"
)

// side indexes the three pending sides.
type side int

const (
	sidePrediction side = iota
	sideOutcome
	sideDeadLetter
	numSides
)

var sideNames = [numSides]string{"prediction", "outcome", "deadletter"}

// event is one ledger entry. The aggregates are a fold over the ledger, so
// every field the fold needs is here; no patient data is (labels and latency
// only).
type event struct {
	V        int       `json:"v"`
	Kind     string    `json:"kind"`
	Source   string    `json:"source"`
	RecordID string    `json:"record_id,omitempty"`
	At       time.Time `json:"at"` // the monitor's clock when the input was handled
	// Label is the predicted label (prediction) or the actual one (outcome).
	Label int `json:"label,omitempty"`
	// Version is the model version of a prediction, shadow prediction, join
	// (the active model's) or shadow join (the shadow model's).
	Version   string        `json:"mv,omitempty"`
	LatencyMS float64       `json:"latency_ms,omitempty"`
	Stage     schemas.Stage `json:"stage,omitempty"`
	// Pending says the input opened (or joined) a pending entry, so the fold
	// counts it as pending until a join/unscorable event resolves it.
	Pending bool `json:"pending,omitempty"`

	// Join and unscorable events: the labels and when each resolved side was
	// recorded (to take it off the pending count).
	Predicted    int        `json:"predicted,omitempty"`
	Actual       int        `json:"actual,omitempty"`
	PredictionAt *time.Time `json:"prediction_at,omitempty"`
	OutcomeAt    *time.Time `json:"outcome_at,omitempty"`
	DeadLetterAt *time.Time `json:"deadletter_at,omitempty"`

	// Shadow join events: the active model's version and label for the same
	// record (absent when the record was dead-lettered).
	ActiveVersion   string `json:"active_version,omitempty"`
	ActivePredicted *int   `json:"active_predicted,omitempty"`
}

// errBadEvent is returned by decodeEvent for a ledger message this version
// cannot fold.
var errBadEvent = errors.New("bad ledger event")

func decodeEvent(data []byte) (event, error) {
	var ev event
	if err := json.Unmarshal(data, &ev); err != nil {
		return ev, fmt.Errorf("%w: %w", errBadEvent, err)
	}
	if ev.V != ledgerVersion {
		return ev, fmt.Errorf("%w: version %d, want %d", errBadEvent, ev.V, ledgerVersion)
	}
	switch ev.Kind {
	case kindPrediction, kindDeadLetter, kindOutcome, kindJoin, kindUnscorable:
	case kindShadow, kindShadowJoin:
		if ev.Version == "" {
			return ev, fmt.Errorf("%w: %s event without a model version", errBadEvent, ev.Kind)
		}
	default:
		return ev, fmt.Errorf("%w: unknown kind %q", errBadEvent, ev.Kind)
	}
	if !validLabel(ev.Label) || !validLabel(ev.Predicted) || !validLabel(ev.Actual) ||
		(ev.ActivePredicted != nil && !validLabel(*ev.ActivePredicted)) {
		return ev, fmt.Errorf("%w: label out of {0,1}", errBadEvent)
	}
	return ev, nil
}

func validLabel(l int) bool { return l == 0 || l == 1 }

// msgID is the event's deduplication id: one input event per (kind, source,
// record) and one resolution per (source, record). Dead letters without a
// record id are identified by their DEADLETTER sequence.
func (ev event) msgID(inputSeq uint64) string {
	switch ev.Kind {
	case kindJoin, kindUnscorable:
		return "r/" + ev.Source + "/" + ev.RecordID
	case kindShadow:
		return "shadow/" + ev.Version + "/" + ev.Source + "/" + ev.RecordID
	case kindShadowJoin:
		return "rs/" + ev.Version + "/" + ev.Source + "/" + ev.RecordID
	}
	if ev.RecordID == "" {
		return fmt.Sprintf("%s/%s/#%d", ev.Kind, ev.Source, inputSeq)
	}
	return ev.Kind + "/" + ev.Source + "/" + ev.RecordID
}

// ledgerSubject is <prefix>.monitor.ledger.<kind>.<source>.
func ledgerSubject(subjects schemas.Subjects, kind, source string) string {
	return subjects.Prefix + ".monitor.ledger." + kind + "." + source
}

func ledgerStreamConfig(cfg Config, subjects schemas.Subjects) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              cfg.Ledger.Stream,
		Description:       "cardiostream monitor ledger: one event per distinct input and per join; the metrics are a fold over it",
		Subjects:          []string{subjects.Prefix + ".monitor.ledger.>"},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		MaxAge:            cfg.Ledger.MaxAge,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
		Discard:           jetstream.DiscardOld,
		Duplicates:        cfg.Ledger.DuplicateWindow,
	}
}
