package schemas

import (
	"strconv"
	"time"
)

// PredictionSummary is what the monitor needs from a Prediction: the record
// it is for, the label, the latency and the model version.
type PredictionSummary struct {
	RecordID     string
	Label        int
	LatencyMS    float64
	ModelVersion string
}

// DecodePredictionSummary reads the summary fields of a prediction payload
// (as the scorer writes it, see Prediction) with the package's scanner and
// skips every other member after checking its syntax: several times cheaper
// than encoding/json into a Prediction, which parses the timestamps too.
//
// record_id (a valid record id) and label (0 or 1) are required; latency_ms,
// when present, is a finite number ≥ 0; model.version, when present, is a
// string of at most 128 bytes. Errors are *ValidationError with one problem
// per field, as for DecodeRecord; duplicate keys among the summary fields are
// refused.
func DecodePredictionSummary(data []byte) (PredictionSummary, error) {
	var sd SummaryDecoder
	v, err := sd.Prediction(data)
	if err != nil {
		return PredictionSummary{}, err
	}
	return PredictionSummary{RecordID: string(v.RecordID), Label: v.Label, LatencyMS: v.LatencyMS, ModelVersion: string(v.ModelVersion)}, nil
}

// SummaryDecoder decodes what the monitor reads, prediction summaries and
// outcomes, with the checks and problems of DecodePredictionSummary and
// DecodeOutcome (which use it), but without allocating when the payload is
// valid: the strings it returns are slices of the payload, or of the
// decoder's own buffers when they were escaped, valid until its next call
// (and while the payload is unchanged). One per goroutine: it is not safe for
// concurrent use.
type SummaryDecoder struct {
	d  decoder
	vb [MaxIDLength]byte // model.version, unescaped (d.idb holds the record id)
}

// PredictionSummaryView is a PredictionSummary whose strings are slices; see
// SummaryDecoder for how long they are valid.
type PredictionSummaryView struct {
	RecordID     []byte
	Label        int
	LatencyMS    float64
	ModelVersion []byte
}

// OutcomeView is an Outcome whose record id is a slice; see SummaryDecoder
// for how long it is valid.
type OutcomeView struct {
	RecordID   []byte
	Label      int
	ObservedAt time.Time
}

// reset prepares the decoder for data. Its buffers are not cleared: every
// use writes before it reads.
func (sd *SummaryDecoder) reset(data []byte) *decoder {
	sd.d.s = scanner{data: data}
	return &sd.d
}

// Prediction decodes a prediction's summary as DecodePredictionSummary does.
func (sd *SummaryDecoder) Prediction(data []byte) (PredictionSummaryView, error) {
	var p PredictionSummaryView
	d := sd.reset(data)
	s := &d.s
	var id []byte
	var seen uint16
	const mLatency, mModel = 1 << 14, 1 << 15
	if s.begin() {
		for first := true; ; {
			key, ok := d.next(&first)
			if !ok {
				break
			}
			switch string(key) {
			case "record_id":
				if !d.dup(&seen, mID, "record_id") {
					id, _ = d.id("record_id")
				}
			case "label":
				if !d.dup(&seen, mLabel, "label") {
					p.Label = d.label()
				}
			case "latency_ms":
				if !d.dup(&seen, mLatency, "latency_ms") {
					p.LatencyMS = d.latency()
				}
			case "model":
				if !d.dup(&seen, mModel, "model") {
					// Its own buffer: an escaped version must not
					// overwrite an escaped record id in d.idb.
					p.ModelVersion = d.modelVersion(sd.vb[:])
				}
			default:
				// Other members are checked, not named: naming one would
				// cost an allocation per member on the monitor's hot path.
				s.skip("")
			}
		}
		d.finish(seen, required{mID, "record_id", "is required"}, required{mLabel, "label", "is required"})
	}
	if err := s.err(); err != nil {
		return PredictionSummaryView{}, err
	}
	p.RecordID = id
	return p, nil
}

func (d *decoder) latency() float64 {
	raw, _, ok := d.numberValue("latency_ms")
	if !ok {
		return 0
	}
	v := parseFloat(raw)
	if v < 0 || v > 1e15 {
		d.s.addValue("latency_ms", withGot("must be a number of milliseconds from 0 to 1e15", raw))
		return 0
	}
	return v
}

// modelVersion reads the model object and returns its version, unescaped
// into buf when needed; its other members are skipped.
func (d *decoder) modelVersion(buf []byte) []byte {
	s := &d.s
	if s.kind() != kindObject {
		s.wrongType("model", "must be an object")
		return nil
	}
	s.pos++
	var version []byte
	seen := false
	for first := true; ; first = false {
		key, ok := s.member(first, d.kbuf[:])
		if !ok {
			break
		}
		if string(key) != "version" {
			if !s.skip("model") {
				break
			}
			continue
		}
		if seen {
			s.addShape("model.version", "duplicate key")
			s.skip("model.version")
			continue
		}
		seen = true
		if s.kind() != kindString {
			s.wrongType("model.version", "must be a string")
			continue
		}
		val, full, ok := s.stringValue(buf)
		if !ok {
			break
		}
		if !full || len(val) > MaxIDLength {
			s.addValue("model.version", "must be at most "+strconv.Itoa(MaxIDLength)+" bytes")
			continue
		}
		version = val
	}
	return version
}
