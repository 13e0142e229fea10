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
	b := append(append(append(buf[:0], source...), 0), recordID...)
	h := sha256.Sum256(b)
	var k joinKey
	copy(k[:], h[:16])
	return k
}

// entry is an open join: the sides of one (source, record_id) seen so far
// (never patient data) and its shadow predictions. Once resolved it becomes
// a resolved record (below).
type entry struct {
	Prediction *docSide
	Outcome    *docSide
	DeadLetter *docSide
	// Shadow holds the shadow predictions by model version (usually one).
	// They are not pending sides: they resolve into a shadow join once the
	// outcome and the active prediction (or dead letter) are present.
	Shadow map[string]*docSide
	// Last is the monitor's clock (unix ns) at the entry's last change: the
	// entry expires label_deadline after it.
	Last int64
}

// resolved is what the join keeps of a resolved (joined or unscorable)
// record for joinedTTL: enough to recognise a duplicate and to resolve a
// shadow prediction that arrives after the join.
type resolved struct {
	Last   int64 // the monitor's clock at resolution (or the last shadow join)
	Ord    int64 // data time of the resolution
	Actual int8
	// Active is the active model's label, -1 for a dead-lettered record.
	Active        int8
	ActiveVersion string
	// Shadow are the shadow versions whose shadow join is folded.
	Shadow []string
}

// docSide is what the join needs from one side: no patient data.
type docSide struct {
	Label int
	At    time.Time // the monitor's clock when folded
	Ord   int64     // the input's stream timestamp
	V     string    // model version (predictions)
}

// joiner holds every open join and, for joinedTTL, the keys of resolved
// records whose entry has expired. It is not safe for concurrent use; the
// Monitor's mutex guards it with the aggregates.
type joiner struct {
	labelDeadline int64 // ns
	joinedTTL     int64 // ns
	open          map[joinKey]*entry
	// done holds the resolved records of the last joinedTTL; another input
	// for one of them is a duplicate (a shadow prediction is resolved).
	done map[joinKey]*resolved
	// versions interns model versions: every record keeps one, and there
	// are only a few distinct ones.
	versions map[string]string
}

// maxInterned bounds versions; past it, versions are kept as they come.
const maxInterned = 1024

func (j *joiner) intern(v string) string {
	if v == "" {
		return v
	}
	if s, ok := j.versions[v]; ok {
		return s
	}
	if len(j.versions) < maxInterned {
		j.versions[v] = v
	}
	return v
}

func newJoiner(cfg Config) *joiner {
	return &joiner{
		labelDeadline: int64(cfg.LabelDeadline),
		joinedTTL:     int64(cfg.JoinedTTL),
		open:          map[joinKey]*entry{},
		done:          map[joinKey]*resolved{},
		versions:      map[string]string{},
	}
}

// has reports whether ev's side is already recorded in e.
func (e *entry) has(ev event) bool {
	if ev.Kind == kindShadow {
		return e.Shadow[ev.Version] != nil
	}
	return *e.side(sideOf(ev.Kind)) != nil
}

// set records ev's side in e.
func (e *entry) set(ev event) {
	ds := &docSide{Label: ev.Label, At: ev.At, Ord: ev.Ord, V: ev.Version}
	if ev.Kind == kindShadow {
		if e.Shadow == nil {
			e.Shadow = map[string]*docSide{}
		}
		e.Shadow[ev.Version] = ds
		return
	}
	*e.side(sideOf(ev.Kind)) = ds
}

func (e *entry) side(s side) **docSide {
	switch s {
	case sidePrediction:
		return &e.Prediction
	case sideOutcome:
		return &e.Outcome
	default:
		return &e.DeadLetter
	}
}

func (e *entry) resolvable() bool {
	return e.Outcome != nil && (e.Prediction != nil || e.DeadLetter != nil)
}

// resolution is the join (or unscorable) event of a resolvable entry.
func (e *entry) resolution(source, recordID string, now time.Time) event {
	ev := event{Kind: kindUnscorable, Source: source, RecordID: recordID, At: now, Actual: e.Outcome.Label, Ord: e.Outcome.Ord}
	ev.OutcomeAt = e.Outcome.At
	if e.DeadLetter != nil {
		ev.DeadLetterAt = e.DeadLetter.At
	}
	if p := e.Prediction; p != nil {
		ev.Kind = kindJoin
		ev.Version = p.V
		ev.Predicted = p.Label
		ev.PredictionAt = p.At
		ev.Ord = max(ev.Ord, p.Ord)
	}
	return ev
}

// resolvedRecord is what is kept of e once resolved.
func (e *entry) resolvedRecord(res event) *resolved {
	r := &resolved{Last: res.At.UnixNano(), Ord: res.Ord, Actual: int8(res.Actual), Active: -1}
	if p := e.Prediction; p != nil {
		r.Active, r.ActiveVersion = int8(p.Label), p.V
	}
	return r
}

// shadowJoin is the shadow join event of shadow prediction sh of version v
// on the resolved record r.
func (r *resolved) shadowJoin(source, recordID, v string, sh *docSide, now time.Time) event {
	ev := event{Kind: kindShadowJoin, Source: source, RecordID: recordID, At: now,
		Version: v, Predicted: sh.Label, Actual: int(r.Actual), Ord: max(sh.Ord, r.Ord)}
	if r.Active >= 0 {
		l := int(r.Active)
		ev.ActiveVersion, ev.ActivePredicted = r.ActiveVersion, &l
	}
	return ev
}

func sideOf(kind string) side {
	switch kind {
	case kindPrediction:
		return sidePrediction
	case kindOutcome:
		return sideOutcome
	default:
		return sideDeadLetter
	}
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
	if ev.RecordID == "" {
		// A dead letter whose payload had no readable id: it is counted but
		// can never be joined.
		agg.apply(ev)
		return true
	}
	k := keyOf(ev.Source, ev.RecordID)
	now := ev.At.UnixNano()
	ev.Version = j.intern(ev.Version)
	if r := j.done[k]; r != nil {
		if now-r.Last > j.joinedTTL {
			delete(j.done, k)
		} else {
			if ev.Kind != kindShadow || slices.Contains(r.Shadow, ev.Version) {
				return false
			}
			agg.apply(ev) // Pending false: not a side of the main join
			agg.apply(r.shadowJoin(ev.Source, ev.RecordID, ev.Version, &docSide{Label: ev.Label, Ord: ev.Ord}, ev.At))
			r.Shadow = append(r.Shadow, ev.Version)
			r.Last = now
			return true
		}
	}
	e := j.open[k]
	if e != nil && now-e.Last > j.labelDeadline {
		delete(j.open, k)
		e = nil
	}
	if e == nil {
		e = &entry{}
		j.open[k] = e
	}
	if e.has(ev) {
		return true
	}
	// Shadow predictions are not pending sides of the main join.
	ev.Pending = ev.Kind != kindShadow
	agg.apply(ev)
	e.set(ev)
	e.Last = now
	if !e.resolvable() {
		return true
	}
	res := e.resolution(ev.Source, ev.RecordID, ev.At)
	agg.apply(res)
	r := e.resolvedRecord(res)
	if len(e.Shadow) > 0 {
		for _, v := range slices.Sorted(maps.Keys(e.Shadow)) {
			agg.apply(r.shadowJoin(ev.Source, ev.RecordID, v, e.Shadow[v], ev.At))
			r.Shadow = append(r.Shadow, v)
		}
	}
	delete(j.open, k)
	j.done[k] = r
	return true
}

// prune drops the open entries past the label deadline at now (they are
// counted as expired) and forgets the resolved records older than
// joinedTTL. It bounds the memory: the open joins of the last
// label_deadline plus one small record per record resolved within
// joined_ttl.
func (j *joiner) prune(now time.Time) {
	n := now.UnixNano()
	for k, e := range j.open {
		if n-e.Last > j.labelDeadline {
			delete(j.open, k)
		}
	}
	for k, r := range j.done {
		if n-r.Last > j.joinedTTL {
			delete(j.done, k)
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
	n := len(j.done)
	st := joinState{
		OpenKeys: make([]byte, 0, 16*len(j.open)), Open: make([]entry, 0, len(j.open)),
		DoneKeys: make([]byte, 0, 16*n), DoneLast: make([]int64, 0, n), DoneOrd: make([]int64, 0, n),
		DoneActual: make([]int8, 0, n), DoneActive: make([]int8, 0, n), DoneVersion: make([]string, 0, n),
	}
	for k, e := range j.open {
		c := *e
		c.Shadow = maps.Clone(e.Shadow)
		st.OpenKeys = append(st.OpenKeys, k[:]...)
		st.Open = append(st.Open, c)
	}
	for k, r := range j.done {
		if len(r.Shadow) > 0 {
			if st.DoneShadow == nil {
				st.DoneShadow = map[int][]string{}
			}
			st.DoneShadow[len(st.DoneLast)] = slices.Clone(r.Shadow)
		}
		st.DoneKeys = append(st.DoneKeys, k[:]...)
		st.DoneLast = append(st.DoneLast, r.Last)
		st.DoneOrd = append(st.DoneOrd, r.Ord)
		st.DoneActual = append(st.DoneActual, r.Actual)
		st.DoneActive = append(st.DoneActive, r.Active)
		st.DoneVersion = append(st.DoneVersion, r.ActiveVersion)
	}
	return st
}

// restore replaces the joiner's maps with a checkpoint's.
func (j *joiner) restore(st joinState) error {
	n := len(st.DoneLast)
	if len(st.OpenKeys) != 16*len(st.Open) || len(st.DoneKeys) != 16*n || len(st.DoneOrd) != n ||
		len(st.DoneActual) != n || len(st.DoneActive) != n || len(st.DoneVersion) != n {
		return fmt.Errorf("%w: join columns of different lengths", errBadCheckpoint)
	}
	open := make(map[joinKey]*entry, len(st.Open))
	done := make(map[joinKey]*resolved, n)
	for i, e := range st.Open {
		for _, ds := range append([]*docSide{e.Prediction, e.Outcome, e.DeadLetter}, slices.Collect(maps.Values(e.Shadow))...) {
			if ds != nil && !validLabel(ds.Label) {
				return fmt.Errorf("%w: open join with label %d", errBadCheckpoint, ds.Label)
			}
		}
		open[joinKey(st.OpenKeys[16*i:16*i+16])] = &e
	}
	for i := range n {
		r := &resolved{Last: st.DoneLast[i], Ord: st.DoneOrd[i], Actual: st.DoneActual[i], Active: st.DoneActive[i],
			ActiveVersion: j.intern(st.DoneVersion[i]), Shadow: st.DoneShadow[i]}
		if !validLabel(int(r.Actual)) || (r.Active != -1 && !validLabel(int(r.Active))) {
			return fmt.Errorf("%w: resolved record with labels %d, %d", errBadCheckpoint, r.Actual, r.Active)
		}
		done[joinKey(st.DoneKeys[16*i:16*i+16])] = r
	}
	j.open, j.done = open, done
	return nil
}
