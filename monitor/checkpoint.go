package monitor

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// checkpointKey is the state bucket's object holding the checkpoint.
const checkpointKey = "checkpoint"

// checkpointVersion changes whenever the checkpoint changes incompatibly; an
// older checkpoint is ignored and the input streams are read from their
// start instead. (Version 1, in a KV bucket, folded the former
// MONITOR_LEDGER.)
const checkpointVersion = 2

type checkpointDoc struct {
	Version int
	// Prefix is the subject prefix of the inputs the positions refer to.
	Prefix string
	State  aggState
	Join   joinState
}

// The checkpoint is gob: the open joins and the resolved records make most
// of a large one (hundreds of thousands of map entries), and gob encodes and
// decodes those several times faster than JSON, with no text to parse.
func encodeCheckpoint(prefix string, st *aggState, js joinState) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(checkpointDoc{Version: checkpointVersion, Prefix: prefix, State: *st, Join: js}); err != nil {
		return nil, fmt.Errorf("encoding checkpoint: %w", err)
	}
	return buf.Bytes(), nil
}

var errBadCheckpoint = errors.New("unusable checkpoint")

func decodeCheckpoint(prefix string, data []byte) (aggState, joinState, error) {
	var d checkpointDoc
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&d); err != nil {
		return aggState{}, joinState{}, fmt.Errorf("%w: %w", errBadCheckpoint, err)
	}
	if d.Version != checkpointVersion || d.Prefix != prefix {
		return aggState{}, joinState{}, fmt.Errorf("%w: version %d for subject prefix %q, want version %d for %q", errBadCheckpoint, d.Version, d.Prefix, checkpointVersion, prefix)
	}
	for _, s := range d.State.Joins {
		if s.Actual > 1 || s.Predicted > 1 {
			return aggState{}, joinState{}, fmt.Errorf("%w: label out of {0,1}", errBadCheckpoint)
		}
	}
	for _, s := range d.State.ShadowJoins {
		if s.Actual > 1 || s.Predicted > 1 {
			return aggState{}, joinState{}, fmt.Errorf("%w: shadow label out of {0,1}", errBadCheckpoint)
		}
	}
	if n := len(d.State.LatencyCounts); n != 0 && n != len(latencyBuckets)+1 {
		return aggState{}, joinState{}, fmt.Errorf("%w: %d latency buckets, want %d", errBadCheckpoint, n, len(latencyBuckets)+1)
	}
	return d.State, d.Join, nil
}

// checkpoint saves the aggregates, the open joins and the input positions
// they include, as one consistent copy taken under the fold's lock.
func (m *Monitor) checkpoint(ctx context.Context) error {
	// Copy under the lock, encode outside it: the fold goes on meanwhile.
	m.mu.Lock()
	m.join.prune(m.now())
	st, js := m.agg.st.clone(), m.join.state()
	m.mu.Unlock()
	b, err := encodeCheckpoint(m.subjects.Prefix, &st, js)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
	defer cancel()
	if _, err := m.state.PutBytes(ctx, checkpointKey, b); err != nil {
		return fmt.Errorf("saving checkpoint: %w", err)
	}
	return nil
}

// loadCheckpoint restores the aggregates and the joins from the state
// bucket. Without a usable checkpoint the fold starts empty and the input
// streams are read from their start.
func (m *Monitor) loadCheckpoint(ctx context.Context) error {
	b, err := m.state.GetBytes(ctx, checkpointKey)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading checkpoint: %w", err)
	}
	st, js, err := decodeCheckpoint(m.subjects.Prefix, b)
	if err == nil {
		m.mu.Lock()
		err = m.join.restore(js)
		if err == nil {
			m.agg.restore(st)
		}
		m.mu.Unlock()
	}
	if err != nil {
		m.log.Warn("ignoring checkpoint; reading the input streams from their start", "err", err)
		return nil
	}
	m.log.Info("checkpoint loaded", "positions", st.Positions, "open_joins", len(js.Open))
	return nil
}
