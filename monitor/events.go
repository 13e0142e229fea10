package monitor

import (
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

// Event kinds. The first three (and kindShadow) are one input message each;
// kindJoin, kindUnscorable and kindShadowJoin are the resolution of a
// (source, record_id), produced by the join (join.go).
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

// event is one step of the fold: a distinct input or a resolution. Every
// field the aggregates need is here; no patient data is (labels and latency
// only).
type event struct {
	Kind     string
	Source   string
	RecordID string
	// key is the join key of (Source, RecordID) when keyed: the decoders
	// set it from the payload's bytes and leave RecordID empty, so that an
	// input allocates no string for its id.
	key   joinKey
	keyed bool
	// At is the monitor's clock when the event was folded: it ages the
	// windows and the pending joins.
	At time.Time
	// Ord is the data time (unix ns): the input's stream timestamp, or for
	// a resolution the latest of its sides'. The windows keep their samples
	// in Ord order, so "the last window_size samples" does not depend on how
	// the reads of the three input streams interleaved.
	Ord int64
	// Label is the predicted label (prediction) or the actual one (outcome).
	Label int
	// Version is the model version of a prediction, shadow prediction, join
	// (the active model's) or shadow join (the shadow model's).
	Version   string
	LatencyMS float64
	Stage     schemas.Stage
	// Pending says the input opened (or joined) a pending entry, so the fold
	// counts it as pending until a join/unscorable event resolves it.
	Pending bool

	// Join and unscorable events: the labels and when each resolved side was
	// folded (to take it off the pending count; zero when absent).
	Predicted    int
	Actual       int
	PredictionAt time.Time
	OutcomeAt    time.Time
	DeadLetterAt time.Time

	// Shadow join events: the active model's version and label for the same
	// record (absent when the record was dead-lettered).
	ActiveVersion   string
	ActivePredicted *int
}

func validLabel(l int) bool { return l == 0 || l == 1 }
