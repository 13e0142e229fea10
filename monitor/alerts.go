package monitor

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/schemas"
)

// publishAlert stores one transition in ALERTS on <prefix>.alerts.<rule>.
// Nats-Msg-Id = alert id makes a retried publish a no-op; the expected last
// subject sequence makes the rule's subject a compare-and-set, so two
// monitors evaluating the same rule cannot both publish a transition.
func (m *Monitor) publishAlert(ctx context.Context, a schemas.Alert, lastSeq uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
	defer cancel()
	b, err := json.Marshal(a)
	if err != nil {
		return 0, fmt.Errorf("encoding alert %s: %w", a.ID, err)
	}
	msg := &nats.Msg{Subject: m.subjects.Alerts(a.Rule), Data: b}
	ack, err := m.js.PublishMsg(ctx, msg,
		jetstream.WithMsgID(a.ID),
		jetstream.WithExpectStream(schemas.StreamAlerts),
		jetstream.WithExpectLastSequencePerSubject(lastSeq))
	if err != nil {
		return 0, fmt.Errorf("publishing alert %s: %w", a.ID, err)
	}
	return ack.Sequence, nil
}

func decodeAlert(data []byte) (schemas.Alert, error) {
	var a schemas.Alert
	if err := json.Unmarshal(data, &a); err != nil {
		return a, fmt.Errorf("decoding alert: %w", err)
	}
	if a.Status != schemas.AlertFiring && a.Status != schemas.AlertResolved {
		return a, fmt.Errorf("decoding alert: status %q is not firing or resolved", a.Status)
	}
	return a, nil
}
