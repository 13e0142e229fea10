package monitor

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"
)

// checkpointKey is the state-bucket key of the aggregate checkpoint.
const checkpointKey = "checkpoint"

// checkpointVersion changes whenever aggState changes incompatibly; an older
// checkpoint is ignored and the ledger is replayed from its start instead.
const checkpointVersion = 1

type checkpointDoc struct {
	Version int
	Ledger  string // the ledger stream the sequence refers to
	State   aggState
}

// maxCheckpointJSON bounds the decompressed checkpoint, so a corrupt value
// cannot exhaust memory. A full checkpoint at MaxWindowSize is ≈ 2 MB of JSON
// (≈ 300 KB compressed).
const maxCheckpointJSON = 32 << 20

// The checkpoint is gzipped JSON: readable with standard tools, and the
// window samples (mostly similar timestamps) compress ≈ 8×.
func encodeCheckpoint(ledger string, st *aggState) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(checkpointDoc{Version: checkpointVersion, Ledger: ledger, State: *st}); err != nil {
		return nil, fmt.Errorf("encoding checkpoint: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing checkpoint: %w", err)
	}
	return buf.Bytes(), nil
}

var errBadCheckpoint = errors.New("unusable checkpoint")

func decodeCheckpoint(ledger string, data []byte) (aggState, error) {
	var d checkpointDoc
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return aggState{}, fmt.Errorf("%w: %w", errBadCheckpoint, err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, maxCheckpointJSON+1))
	if err != nil {
		return aggState{}, fmt.Errorf("%w: %w", errBadCheckpoint, err)
	}
	if len(raw) > maxCheckpointJSON {
		return aggState{}, fmt.Errorf("%w: larger than %d bytes", errBadCheckpoint, maxCheckpointJSON)
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return aggState{}, fmt.Errorf("%w: %w", errBadCheckpoint, err)
	}
	if d.Version != checkpointVersion || d.Ledger != ledger {
		return aggState{}, fmt.Errorf("%w: version %d of ledger %q, want version %d of %q", errBadCheckpoint, d.Version, d.Ledger, checkpointVersion, ledger)
	}
	for _, s := range d.State.Joins {
		if s.Actual > 1 || s.Predicted > 1 {
			return aggState{}, fmt.Errorf("%w: label out of {0,1}", errBadCheckpoint)
		}
	}
	if n := len(d.State.LatencyCounts); n != 0 && n != len(latencyBuckets)+1 {
		return aggState{}, fmt.Errorf("%w: %d latency buckets, want %d", errBadCheckpoint, n, len(latencyBuckets)+1)
	}
	return d.State, nil
}

// checkpoint saves the aggregates and the ledger sequence they include.
func (m *Monitor) checkpoint(ctx context.Context) error {
	m.mu.Lock()
	b, err := encodeCheckpoint(m.cfg.Ledger.Stream, &m.agg.st)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
	defer cancel()
	if _, err := m.state.Put(ctx, checkpointKey, b); err != nil {
		return fmt.Errorf("saving checkpoint: %w", err)
	}
	return nil
}

// loadCheckpoint restores the aggregates from the state bucket. Without a
// usable checkpoint the fold starts empty and the whole ledger is replayed.
func (m *Monitor) loadCheckpoint(ctx context.Context) error {
	e, err := m.state.Get(ctx, checkpointKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading checkpoint: %w", err)
	}
	st, err := decodeCheckpoint(m.cfg.Ledger.Stream, e.Value())
	if err != nil {
		m.log.Warn("ignoring checkpoint; replaying the whole ledger", "err", err)
		return nil
	}
	m.mu.Lock()
	m.agg.restore(st)
	m.mu.Unlock()
	m.log.Info("checkpoint loaded", "ledger_sequence", st.Seq)
	return nil
}
