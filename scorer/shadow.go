package scorer

import (
	"fmt"

	"github.com/nats-io/nats.go"
)

// scoreShadow scores every record of b headed for a prediction with the
// shadow model too. A shadow failure only costs the shadow prediction: it is
// counted and the record goes on as if there were no shadow.
func (s *Scorer) scoreShadow(b *batch) {
	set := b.set
	b.idx = b.idx[:0]
	for i := range b.items {
		if b.items[i].verdict == verdictPredict {
			b.idx = append(b.idx, i)
		}
	}
	if len(b.idx) == 0 {
		return
	}
	if bm := set.shadowBatch; bm != nil && len(b.idx) > 1 {
		if err := b.predictIdx(bm); err == nil {
			for k, i := range b.idx {
				s.shadowScored(&b.items[i], b.probs[k])
			}
			return
		}
		s.errLog.failed("shadow batch prediction", fmt.Errorf("shadow model %s: batch prediction failed; scoring one at a time", set.shadowRef.Version))
	}
	for _, i := range b.idx {
		it := &b.items[i]
		p, err := predictOne(set.shadow, &it.rec.Features)
		if err != nil {
			s.m.shadowFailures[shadowFailScore].Inc()
			s.errLog.failed("shadow prediction", fmt.Errorf("shadow model %s panicked", set.shadowRef.Version))
			continue
		}
		s.shadowScored(it, p)
	}
}

func (s *Scorer) shadowScored(it *item, p float64) {
	if !validProbability(p) {
		s.m.shadowFailures[shadowFailScore].Inc()
		return
	}
	it.shadowProb, it.shadowOK = p, true
}

// shadowMsg is the shadow prediction of it, on
// <prefix>.predictions.shadow.<source> with message id
// "shadow/<version>/<source>/<record id>": a redelivery's shadow publish is
// a duplicate, and shadows of two versions do not collide.
func (s *Scorer) shadowMsg(set *modelSet, it *item) (*nats.Msg, error) {
	p := s.prediction(set.shadowRef, set.shadowThreshold, it.shadowProb, it)
	data, err := encodePrediction(&p)
	if err != nil {
		return nil, fmt.Errorf("encoding shadow prediction: %w", err)
	}
	id := "shadow/" + set.shadowRef.Version + "/" + it.source + "/" + it.rec.ID
	return &nats.Msg{Subject: s.subjects.ShadowPrediction(it.source), Data: data,
		Header: s.header([]string{id})}, nil
}

// settleShadow waits, within the batch's deadline, for the shadow
// prediction's publish ack of a record whose main prediction is stored. A
// failure is counted and otherwise ignored: the record is acked regardless.
func (s *Scorer) settleShadow(it *item, deadline <-chan struct{}, abort <-chan struct{}) {
	if it.shadowFut == nil && it.shadowErr == nil {
		return
	}
	ack, err := awaitFuture(it.shadowFut, it.shadowErr, deadline, abort)
	switch {
	case err != nil:
		s.m.shadowFailures[shadowFailPublish].Inc()
		s.errLog.failed("publishing shadow prediction", err)
	case ack.Duplicate:
		s.errLog.ok("publishing shadow prediction")
		s.m.shadowDuplicate.Inc()
	default:
		s.errLog.ok("publishing shadow prediction")
		s.m.shadowPublished.Inc()
	}
}
