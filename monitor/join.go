package monitor

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// joinKey identifies a (source, record_id): the first 128 bits of SHA-256
// over source, NUL, record id. A fixed-size key keeps the maps compact
// whatever the clients' ids look like.
type joinKey [16]byte

func keyOf(source, recordID string) joinKey {
	// Sources and ids are bounded (longer ones only cost an allocation).
	var buf [2*schemas.MaxIDLength + 1]byte
	return keyOfBuf(append(append(append(buf[:0], source...), 0), recordID...))
}

// keyOfBytes is keyOf with the record id as bytes.
func keyOfBytes(source string, recordID []byte) joinKey {
	var buf [2*schemas.MaxIDLength + 1]byte
	return keyOfBuf(append(append(append(buf[:0], source...), 0), recordID...))
}

func keyOfBuf(b []byte) joinKey {
	h := sha256.Sum256(b)
	var k joinKey
	copy(k[:], h[:16])
	return k
}

// record is what the join keeps of one (source, record_id), whether open or
// resolved, so that an input costs one map lookup (plus one insert for the
// first input of a record):
//   - open: the sides seen so far (never patient data) and the shadow
//     predictions; it expires label_deadline after its last change.
//   - resolved (joined or unscorable): enough to recognise a duplicate and
//     to resolve a shadow prediction that arrives after the join, kept for
//     joinedTTL.
//
// Records live in the joiner's slab, not one allocation each: no allocation
// per input, and a small map (key → slab index).
type record struct {
	// Last is the monitor's clock (unix ns) at the last change (open) or at
	// the resolution or the last shadow join (resolved).
	Last int64
	// When each side was folded (the monitor's clock, unix ns) and its data
	// time (the input's stream timestamp). Open records only.
	PredAt, OutAt, DeadAt    int64
	PredOrd, OutOrd, DeadOrd int64
	// Version is the prediction's model version (open), or the active
	// model's (resolved).
	Version string
	// Open: each side's label. Resolved: OutLabel is the actual label and
	// PredLabel the active model's, -1 for a dead-lettered record.
	PredLabel, OutLabel, DeadLabel int8
	flags                          uint8
	// Shadow is nil unless the record has shadow predictions (rare).
	Shadow *shadows
	// Ord is the data time of the resolution (resolved records).
	Ord int64
}

const (
	hasPred uint8 = 1 << iota
	hasOut
	hasDead
	isResolved
)

// shadows are a record's shadow predictions: by model version while the
// record is open (they are not pending sides: they resolve into a shadow join
// once the outcome and the active prediction, or dead letter, are present);
// once resolved, the versions whose shadow join is folded.
type shadows struct {
	Open map[string]shadowSide
	Done []string
}

type shadowSide struct {
	At, Ord int64
	Label   int8
}

// docSide is one side of an open join in the checkpoint: no patient data.
type docSide struct {
	Label int
	At    time.Time // the monitor's clock when folded
	Ord   int64     // the input's stream timestamp
	V     string    // model version (predictions)
}

// entry is an open join in the checkpoint.
type entry struct {
	Prediction *docSide
	Outcome    *docSide
	DeadLetter *docSide
	// Shadow holds the shadow predictions by model version.
	Shadow map[string]*docSide
	// Last is the monitor's clock (unix ns) at the entry's last change.
	Last int64
}

// joiner holds every open join and, for joinedTTL, the resolved records. It
// is not safe for concurrent use; the Monitor's mutex guards it with the
// aggregates.
type joiner struct {
	labelDeadline int64 // ns
	joinedTTL     int64 // ns
	// recs maps each record's key to its place in slab.
	recs map[joinKey]uint32
	slab slab
	// versions interns the model versions of restored records (the
	// readers' decoders intern those of new inputs).
	versions interner
}

// interner hands out one shared string per distinct model version: every
// record keeps one, and there are only a few distinct ones. Past
// maxInterned distinct values, strings are kept as they come.
type interner map[string]string

// maxInterned bounds an interner.
const maxInterned = 1024

func (in interner) str(v string) string {
	if v == "" {
		return v
	}
	if s, ok := in[v]; ok {
		return s
	}
	if len(in) < maxInterned {
		in[v] = v
	}
	return v
}

// bytes is str for a version still in its payload: no allocation when the
// version is known.
func (in interner) bytes(b []byte) string {
	if s, ok := in[string(b)]; ok {
		return s
	}
	return in.str(string(b))
}

func newJoiner(cfg Config) *joiner {
	return &joiner{
		labelDeadline: int64(cfg.LabelDeadline),
		joinedTTL:     int64(cfg.JoinedTTL),
		recs:          map[joinKey]uint32{},
		versions:      interner{},
	}
}

// slab holds the records in fixed-size chunks (never moved once allocated,
// so growing copies nothing), reusing the places of forgotten records.
type slab struct {
	chunks [][]record
	n      uint32   // places handed out so far
	free   []uint32 // released places
}

const chunkBits = 12 // 4,096 records (384 KiB) per chunk

func (s *slab) alloc() uint32 {
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		return i
	}
	i := s.n
	if int(i>>chunkBits) == len(s.chunks) {
		s.chunks = append(s.chunks, make([]record, 1<<chunkBits))
	}
	s.n++
	return i
}

func (s *slab) at(i uint32) *record { return &s.chunks[i>>chunkBits][i&(1<<chunkBits-1)] }

func (s *slab) release(i uint32) {
	*s.at(i) = record{}
	s.free = append(s.free, i)
}

// records returns a copy of every record by key (tests compare joiners).
func (j *joiner) records() map[joinKey]record {
	out := make(map[joinKey]record, len(j.recs))
	for k, i := range j.recs {
		out[k] = *j.slab.at(i)
	}
	return out
}

// sizes counts the open joins and the resolved records.
func (j *joiner) sizes() (open, resolved int) {
	for _, i := range j.recs {
		if j.slab.at(i).flags&isResolved != 0 {
			resolved++
		} else {
			open++
		}
	}
	return open, resolved
}

func sideFlag(kind string) uint8 {
	switch kind {
	case kindPrediction:
		return hasPred
	case kindOutcome:
		return hasOut
	default:
		return hasDead
	}
}

// has reports whether ev's side is already recorded in the open record r.
func (r *record) has(ev event) bool {
	if ev.Kind == kindShadow {
		if r.Shadow == nil {
			return false
		}
		_, ok := r.Shadow.Open[ev.Version]
		return ok
	}
	return r.flags&sideFlag(ev.Kind) != 0
}

// set records ev's side in the open record r.
func (r *record) set(ev event, at int64) {
	l := int8(ev.Label)
	switch ev.Kind {
	case kindShadow:
		if r.Shadow == nil {
			r.Shadow = &shadows{}
		}
		if r.Shadow.Open == nil {
			r.Shadow.Open = map[string]shadowSide{}
		}
		r.Shadow.Open[ev.Version] = shadowSide{At: at, Ord: ev.Ord, Label: l}
	case kindPrediction:
		r.PredAt, r.PredOrd, r.PredLabel, r.Version = at, ev.Ord, l, ev.Version
		r.flags |= hasPred
	case kindOutcome:
		r.OutAt, r.OutOrd, r.OutLabel = at, ev.Ord, l
		r.flags |= hasOut
	default:
		r.DeadAt, r.DeadOrd, r.DeadLabel = at, ev.Ord, l
		r.flags |= hasDead
	}
}

func (r *record) resolvable() bool {
	return r.flags&hasOut != 0 && r.flags&(hasPred|hasDead) != 0
}

// resolution is the join (or unscorable) event of a resolvable open record.
func (r *record) resolution(source, recordID string, now time.Time) event {
	ev := event{Kind: kindUnscorable, Source: source, RecordID: recordID, At: now, Actual: int(r.OutLabel), Ord: r.OutOrd}
	ev.OutcomeAt = time.Unix(0, r.OutAt)
	if r.flags&hasDead != 0 {
		ev.DeadLetterAt = time.Unix(0, r.DeadAt)
	}
	if r.flags&hasPred != 0 {
		ev.Kind = kindJoin
		ev.Version = r.Version
		ev.Predicted = int(r.PredLabel)
		ev.PredictionAt = time.Unix(0, r.PredAt)
		ev.Ord = max(ev.Ord, r.PredOrd)
	}
	return ev
}

// resolvedRecord is what is kept of the open record r once resolved (its
// shadow versions are added by the caller).
func (r *record) resolvedRecord(res event) record {
	rr := record{Last: res.At.UnixNano(), Ord: res.Ord, OutLabel: int8(res.Actual), PredLabel: -1, flags: isResolved}
	if r.flags&hasPred != 0 {
		rr.PredLabel, rr.Version = r.PredLabel, r.Version
	}
	return rr
}

// shadowJoin is the shadow join event of a shadow prediction of version v
// (label, data time ord) on the resolved record r.
func (r *record) shadowJoin(source, recordID, v string, label int, ord int64, now time.Time) event {
	ev := event{Kind: kindShadowJoin, Source: source, RecordID: recordID, At: now,
		Version: v, Predicted: label, Actual: int(r.OutLabel), Ord: max(ord, r.Ord)}
	if r.PredLabel >= 0 {
		l := int(r.PredLabel)
		ev.ActiveVersion, ev.ActivePredicted = r.Version, &l
	}
	return ev
}

func (r *record) shadowDone() []string {
	if r.Shadow == nil {
		return nil
	}
	return r.Shadow.Done
}

// fold joins one input and folds the resulting events into agg. It returns
// false for a duplicate of a resolved record: another input of a record
// joined (or unscorable) within joinedTTL, which is not counted again.
//
// An input whose side is already recorded in its open entry is a duplicate
// too (a prediction republished, an outcome sent twice) and changes
// nothing. An open entry expires label_deadline after its last change: a
// side arriving later opens a new entry, and the old one is counted as
// expired. A shadow prediction of a resolved record is joined with what the
// record resolved to.
func (j *joiner) fold(agg *aggregator, ev event) bool {
	k := ev.key
	if !ev.keyed {
		if ev.RecordID == "" {
			// A dead letter whose payload had no readable id: it is counted
			// but can never be joined.
			agg.apply(ev)
			return true
		}
		k = keyOf(ev.Source, ev.RecordID)
	}
	now := ev.At.UnixNano()
	var r *record
	if i, found := j.recs[k]; found {
		r = j.slab.at(i)
	} else {
		i = j.slab.alloc()
		j.recs[k] = i
		r = j.slab.at(i)
	}
	switch {
	case r.flags == 0 && r.Shadow == nil:
		// new
	case r.flags&isResolved != 0:
		if now-r.Last > j.joinedTTL {
			*r = record{} // forgotten: a new open join
			break
		}
		if ev.Kind != kindShadow || slices.Contains(r.shadowDone(), ev.Version) {
			return false
		}
		agg.apply(ev) // Pending false: not a side of the main join
		agg.apply(r.shadowJoin(ev.Source, ev.RecordID, ev.Version, ev.Label, ev.Ord, ev.At))
		if r.Shadow == nil {
			r.Shadow = &shadows{}
		}
		r.Shadow.Done = append(r.Shadow.Done, ev.Version)
		r.Last = now
		return true
	case now-r.Last > j.labelDeadline:
		*r = record{} // expired: a new open join
	}
	if r.has(ev) {
		return true
	}
	// Shadow predictions are not pending sides of the main join.
	ev.Pending = ev.Kind != kindShadow
	agg.apply(ev)
	r.set(ev, now)
	r.Last = now
	if !r.resolvable() {
		return true
	}
	res := r.resolution(ev.Source, ev.RecordID, ev.At)
	agg.apply(res)
	rr := r.resolvedRecord(res)
	if r.Shadow != nil && len(r.Shadow.Open) > 0 {
		rr.Shadow = &shadows{}
		for _, v := range slices.Sorted(maps.Keys(r.Shadow.Open)) {
			sh := r.Shadow.Open[v]
			agg.apply(rr.shadowJoin(ev.Source, ev.RecordID, v, int(sh.Label), sh.Ord, ev.At))
			rr.Shadow.Done = append(rr.Shadow.Done, v)
		}
	}
	*r = rr
	return true
}

// prune drops the open entries past the label deadline at now (they are
// counted as expired) and forgets the resolved records older than
// joinedTTL. It bounds the memory: the open joins of the last
// label_deadline plus one small record per record resolved within
// joined_ttl.
func (j *joiner) prune(now time.Time) {
	n := now.UnixNano()
	for k, i := range j.recs {
		r := j.slab.at(i)
		ttl := j.labelDeadline
		if r.flags&isResolved != 0 {
			ttl = j.joinedTTL
		}
		if n-r.Last > ttl {
			delete(j.recs, k)
			j.slab.release(i)
		}
	}
}

// joinState is the joiner in a checkpoint: copies, so that it can be
// encoded outside the lock, laid out in columns (gob encodes a []byte or an
// []int64 in one step but a map or a struct field by field, and the resolved
// records are most of a large checkpoint). Key i is Keys[16i:16i+16].
type joinState struct {
	OpenKeys []byte
	Open     []entry

	DoneKeys    []byte
	DoneLast    []int64
	DoneOrd     []int64
	DoneActual  []int8
	DoneActive  []int8
	DoneVersion []string
	// DoneShadow holds, by index, the shadow versions of the few resolved
	// records that have any.
	DoneShadow map[int][]string
}

func (j *joiner) state() joinState {
	open, n := j.sizes()
	st := joinState{
		OpenKeys: make([]byte, 0, 16*open), Open: make([]entry, 0, open),
		DoneKeys: make([]byte, 0, 16*n), DoneLast: make([]int64, 0, n), DoneOrd: make([]int64, 0, n),
		DoneActual: make([]int8, 0, n), DoneActive: make([]int8, 0, n), DoneVersion: make([]string, 0, n),
	}
	for k, i := range j.recs {
		r := j.slab.at(i)
		if r.flags&isResolved == 0 {
			st.OpenKeys = append(st.OpenKeys, k[:]...)
			st.Open = append(st.Open, r.entry())
			continue
		}
		if d := r.shadowDone(); len(d) > 0 {
			if st.DoneShadow == nil {
				st.DoneShadow = map[int][]string{}
			}
			st.DoneShadow[len(st.DoneLast)] = slices.Clone(d)
		}
		st.DoneKeys = append(st.DoneKeys, k[:]...)
		st.DoneLast = append(st.DoneLast, r.Last)
		st.DoneOrd = append(st.DoneOrd, r.Ord)
		st.DoneActual = append(st.DoneActual, r.OutLabel)
		st.DoneActive = append(st.DoneActive, r.PredLabel)
		st.DoneVersion = append(st.DoneVersion, r.Version)
	}
	return st
}

// entry is the open record r in the checkpoint's form.
func (r *record) entry() entry {
	e := entry{Last: r.Last}
	if r.flags&hasPred != 0 {
		e.Prediction = &docSide{Label: int(r.PredLabel), At: time.Unix(0, r.PredAt), Ord: r.PredOrd, V: r.Version}
	}
	if r.flags&hasOut != 0 {
		e.Outcome = &docSide{Label: int(r.OutLabel), At: time.Unix(0, r.OutAt), Ord: r.OutOrd}
	}
	if r.flags&hasDead != 0 {
		e.DeadLetter = &docSide{Label: int(r.DeadLabel), At: time.Unix(0, r.DeadAt), Ord: r.DeadOrd}
	}
	if r.Shadow != nil && len(r.Shadow.Open) > 0 {
		e.Shadow = make(map[string]*docSide, len(r.Shadow.Open))
		for v, sh := range r.Shadow.Open {
			e.Shadow[v] = &docSide{Label: int(sh.Label), At: time.Unix(0, sh.At), Ord: sh.Ord, V: v}
		}
	}
	return e
}

// restore replaces the joiner's records with a checkpoint's.
func (j *joiner) restore(st joinState) error {
	n := len(st.DoneLast)
	if len(st.OpenKeys) != 16*len(st.Open) || len(st.DoneKeys) != 16*n || len(st.DoneOrd) != n ||
		len(st.DoneActual) != n || len(st.DoneActive) != n || len(st.DoneVersion) != n {
		return fmt.Errorf("%w: join columns of different lengths", errBadCheckpoint)
	}
	recs := make(map[joinKey]record, len(st.Open)+n)
	for i, e := range st.Open {
		r := record{Last: e.Last}
		for _, s := range []struct {
			ds   *docSide
			kind string
		}{{e.Prediction, kindPrediction}, {e.Outcome, kindOutcome}, {e.DeadLetter, kindDeadLetter}} {
			if s.ds == nil {
				continue
			}
			if !validLabel(s.ds.Label) {
				return fmt.Errorf("%w: open join with label %d", errBadCheckpoint, s.ds.Label)
			}
			r.set(event{Kind: s.kind, Label: s.ds.Label, Ord: s.ds.Ord, Version: j.versions.str(s.ds.V)}, s.ds.At.UnixNano())
		}
		for v, ds := range e.Shadow {
			if ds == nil {
				continue
			}
			if !validLabel(ds.Label) {
				return fmt.Errorf("%w: open join with label %d", errBadCheckpoint, ds.Label)
			}
			r.set(event{Kind: kindShadow, Label: ds.Label, Ord: ds.Ord, Version: j.versions.str(v)}, ds.At.UnixNano())
		}
		recs[joinKey(st.OpenKeys[16*i:16*i+16])] = r
	}
	for i := range n {
		r := record{Last: st.DoneLast[i], Ord: st.DoneOrd[i], OutLabel: st.DoneActual[i], PredLabel: st.DoneActive[i],
			Version: j.versions.str(st.DoneVersion[i]), flags: isResolved}
		if d := st.DoneShadow[i]; len(d) > 0 {
			r.Shadow = &shadows{Done: d}
		}
		if !validLabel(int(r.OutLabel)) || (r.PredLabel != -1 && !validLabel(int(r.PredLabel))) {
			return fmt.Errorf("%w: resolved record with labels %d, %d", errBadCheckpoint, r.OutLabel, r.PredLabel)
		}
		k := joinKey(st.DoneKeys[16*i : 16*i+16])
		if o, dup := recs[k]; dup && o.flags&isResolved == 0 {
			// The fold never has a record both open and resolved.
			return fmt.Errorf("%w: a record both open and resolved", errBadCheckpoint)
		}
		recs[k] = r
	}
	j.recs, j.slab = make(map[joinKey]uint32, len(recs)), slab{}
	for k, r := range recs {
		i := j.slab.alloc()
		*j.slab.at(i) = r
		j.recs[k] = i
	}
	return nil
}
