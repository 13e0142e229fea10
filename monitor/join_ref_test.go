package monitor

import (
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// The joiner as it was before the slab (main at 48d8faa: two maps of
// pointers), kept as the reference the current joiner must fold exactly like
// (FuzzJoinMatchesReference). Its sides are the checkpoint's docSide, as they
// were then.

// refEntry is an open join: the sides of one (source, record_id) seen so far
// (never patient data) and its shadow predictions. Once resolved it becomes
// a resolved record (below).
type refEntry struct {
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

// refResolved is what the join keeps of a resolved (joined or unscorable)
// record for joinedTTL: enough to recognise a duplicate and to resolve a
// shadow prediction that arrives after the join.
type refResolved struct {
	Last   int64 // the monitor's clock at resolution (or the last shadow join)
	Ord    int64 // data time of the resolution
	Actual int8
	// Active is the active model's label, -1 for a dead-lettered record.
	Active        int8
	ActiveVersion string
	// Shadow are the shadow versions whose shadow join is folded.
	Shadow []string
}

// refJoiner holds every open join and, for joinedTTL, the keys of resolved
// records whose entry has expired. It is not safe for concurrent use; the
// Monitor's mutex guards it with the aggregates.
type refJoiner struct {
	labelDeadline int64 // ns
	joinedTTL     int64 // ns
	open          map[joinKey]*refEntry
	// done holds the resolved records of the last joinedTTL; another input
	// for one of them is a duplicate (a shadow prediction is resolved).
	done map[joinKey]*refResolved
	// versions interns model versions: every record keeps one, and there
	// are only a few distinct ones.
	versions interner
}

func newRefJoiner(cfg Config) *refJoiner {
	return &refJoiner{
		labelDeadline: int64(cfg.LabelDeadline),
		joinedTTL:     int64(cfg.JoinedTTL),
		open:          map[joinKey]*refEntry{},
		done:          map[joinKey]*refResolved{},
		versions:      interner{},
	}
}

// has reports whether ev's side is already recorded in e.
func (e *refEntry) has(ev event) bool {
	if ev.Kind == kindShadow {
		return e.Shadow[ev.Version] != nil
	}
	return *e.side(refSideOf(ev.Kind)) != nil
}

// set records ev's side in e.
func (e *refEntry) set(ev event) {
	ds := &docSide{Label: ev.Label, At: ev.At, Ord: ev.Ord, V: ev.Version}
	if ev.Kind == kindShadow {
		if e.Shadow == nil {
			e.Shadow = map[string]*docSide{}
		}
		e.Shadow[ev.Version] = ds
		return
	}
	*e.side(refSideOf(ev.Kind)) = ds
}

func (e *refEntry) side(s side) **docSide {
	switch s {
	case sidePrediction:
		return &e.Prediction
	case sideOutcome:
		return &e.Outcome
	default:
		return &e.DeadLetter
	}
}

func (e *refEntry) resolvable() bool {
	return e.Outcome != nil && (e.Prediction != nil || e.DeadLetter != nil)
}

// resolution is the join (or unscorable) event of a resolvable entry.
func (e *refEntry) resolution(source, recordID string, now time.Time) event {
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
func (e *refEntry) resolvedRecord(res event) *refResolved {
	r := &refResolved{Last: res.At.UnixNano(), Ord: res.Ord, Actual: int8(res.Actual), Active: -1}
	if p := e.Prediction; p != nil {
		r.Active, r.ActiveVersion = int8(p.Label), p.V
	}
	return r
}

// shadowJoin is the shadow join event of shadow prediction sh of version v
// on the resolved record r.
func (r *refResolved) shadowJoin(source, recordID, v string, sh *docSide, now time.Time) event {
	ev := event{Kind: kindShadowJoin, Source: source, RecordID: recordID, At: now,
		Version: v, Predicted: sh.Label, Actual: int(r.Actual), Ord: max(sh.Ord, r.Ord)}
	if r.Active >= 0 {
		l := int(r.Active)
		ev.ActiveVersion, ev.ActivePredicted = r.ActiveVersion, &l
	}
	return ev
}

func refSideOf(kind string) side {
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
func (j *refJoiner) fold(agg *aggregator, ev event) bool {
	if ev.RecordID == "" {
		// A dead letter whose payload had no readable id: it is counted but
		// can never be joined.
		agg.apply(ev)
		return true
	}
	k := keyOf(ev.Source, ev.RecordID)
	now := ev.At.UnixNano()
	ev.Version = j.versions.str(ev.Version)
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
		e = &refEntry{}
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
func (j *refJoiner) prune(now time.Time) {
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

// foldBoth folds the inputs that ops encodes (two bytes each) into the
// reference joiner and the current one, each with its own aggregator, and
// fails at the first difference: a fold's result, the aggregates, or the
// number of open and resolved records. The current joiner gets the inputs
// keyed, as the readers' decoders make them, and goes through a checkpoint
// (state, gob, restore) whenever ops asks.
func foldBoth(t *testing.T, ops []byte) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.LabelDeadline, cfg.JoinedTTL = time.Hour, 2*time.Hour
	ra, rj := newAggregator(cfg), newRefJoiner(cfg)
	a, j := newAggregator(cfg), newJoiner(cfg)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []time.Duration{time.Second, 30 * time.Minute, 61 * time.Minute, 3 * time.Hour}
	ids, sources, versions := []string{"a", "b", "c", "d"}, []string{"s", "t"}, []string{"", "1", "2"}
	var ord int64
	for i := 0; i+1 < len(ops); i += 2 {
		op, x := ops[i]%8, ops[i+1]
		ord++
		ev := event{Source: sources[(x>>2)%2], RecordID: ids[x%4], At: now, Ord: ord, Label: int(x>>3) & 1,
			Version: versions[int(x>>4)%3], LatencyMS: float64(x)}
		switch op {
		case 0:
			ev.Kind = kindPrediction
		case 1:
			ev.Kind, ev.Version, ev.LatencyMS = kindOutcome, "", 0
		case 2:
			ev.Kind, ev.Version, ev.Label, ev.LatencyMS, ev.Stage = kindDeadLetter, "", 0, 0, schemas.StageScore
			if x&0x80 != 0 {
				ev.RecordID = "" // no readable id: counted, never joined
			}
		case 3:
			ev.Kind, ev.Version, ev.LatencyMS = kindShadow, versions[1+int(x>>4)%2], 0
		case 4:
			now = now.Add(steps[x%4])
			continue
		case 5:
			rj.prune(now)
			j.prune(now)
		case 6:
			a, j = restoreCheckpoint(t, cfg, mustEncode(t, a, j))
		default:
			ev.Kind = kindPrediction // predictions twice as often: duplicates
		}
		if ev.Kind == "" {
			continue
		}
		kev := ev
		if kev.RecordID != "" {
			kev.key, kev.keyed, kev.RecordID = keyOf(ev.Source, ev.RecordID), true, ""
		}
		if want, got := rj.fold(ra, ev), j.fold(a, kev); got != want {
			t.Fatalf("op %d %+v: fold returned %v, reference %v", i/2, ev, got, want)
		}
		if !reflect.DeepEqual(a.st, ra.st) {
			t.Fatalf("op %d %+v: aggregates differ:\n%+v\nreference\n%+v", i/2, ev, a.st, ra.st)
		}
		if open, done := j.sizes(); open != len(rj.open) || done != len(rj.done) {
			t.Fatalf("op %d %+v: %d open, %d resolved; reference %d, %d", i/2, ev, open, done, len(rj.open), len(rj.done))
		}
	}
}

// restoreCheckpoint decodes checkpoint b (prefix "cardio") into a new
// aggregator and joiner, as Monitor's restart does.
func restoreCheckpoint(t testing.TB, cfg Config, b []byte) (*aggregator, *joiner) {
	t.Helper()
	st, js, err := decodeCheckpoint("cardio", b)
	if err != nil {
		t.Fatal(err)
	}
	a, j := newAggregator(cfg), newJoiner(cfg)
	if err := j.restore(js); err != nil {
		t.Fatal(err)
	}
	a.restore(st)
	return a, j
}

func mustEncode(t *testing.T, a *aggregator, j *joiner) []byte {
	t.Helper()
	st := a.st.clone()
	b, err := encodeCheckpoint("cardio", &st, j.state())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestJoinMatchesReference: the slab-backed joiner folds random input
// sequences (duplicates, shadows, dead letters, expiries, late inputs,
// checkpoints) exactly as the joiner it replaced.
func TestJoinMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 150 {
		ops := make([]byte, 2*(1+rng.IntN(200)))
		for i := range ops {
			ops[i] = byte(rng.Uint32())
		}
		foldBoth(t, ops)
	}
}

func FuzzJoinMatchesReference(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 3, 16, 1, 0})
	f.Add([]byte{3, 16, 0, 8, 6, 0, 1, 8, 4, 3, 1, 8, 0, 0, 5, 0})
	f.Add([]byte{2, 1, 4, 2, 1, 1, 3, 17, 6, 0, 3, 33, 4, 3, 3, 33})
	f.Fuzz(func(t *testing.T, ops []byte) { foldBoth(t, ops) })
}
