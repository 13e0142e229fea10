package scorer

import (
	"errors"
	"fmt"

	"github.com/cardiostream/cardiostream/schemas"
)

// modelSet is the active model and the optional shadow model, swapped as one
// value: a batch loads the set once and is scored wholly by it.
type modelSet struct {
	active    Model
	batch     BatchModel // nil when active does not implement it
	ref       schemas.ModelRef
	threshold float64

	shadow          Model // nil: no shadow
	shadowBatch     BatchModel
	shadowRef       schemas.ModelRef
	shadowThreshold float64
}

func newModelSet(active, shadow Model) (*modelSet, error) {
	var errs []error
	if active == nil {
		errs = append(errs, errors.New("model: required"))
	} else if t := active.Threshold(); !(t > 0 && t < 1) {
		errs = append(errs, fmt.Errorf("model threshold: %v is out of range (0, 1)", t))
	}
	if shadow != nil {
		if t := shadow.Threshold(); !(t > 0 && t < 1) {
			errs = append(errs, fmt.Errorf("shadow model threshold: %v is out of range (0, 1)", t))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	set := &modelSet{active: active, ref: active.Ref(), threshold: active.Threshold()}
	set.batch, _ = active.(BatchModel)
	if shadow != nil {
		set.shadow, set.shadowRef, set.shadowThreshold = shadow, shadow.Ref(), shadow.Threshold()
		set.shadowBatch, _ = shadow.(BatchModel)
	}
	return set, nil
}

// SetModels replaces the active model and the shadow model (nil: no shadow).
// It is safe to call from any goroutine while Run is running. The change
// takes effect between batches: a batch already being scored finishes with
// the models it started with, and every later batch of every worker uses the
// new ones, so within a worker no prediction of the old set follows one of
// the new set. Every prediction names the model that produced it
// (Model.Ref()). A record redelivered after the swap is scored by the new
// model, but its prediction's message id is unchanged, so if an earlier
// delivery's prediction was stored that one stays the record's only
// prediction.
//
// It returns an error, and changes nothing, when active is nil or a
// threshold is outside (0, 1).
func (s *Scorer) SetModels(active, shadow Model) error {
	set, err := newModelSet(active, shadow)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.models.Load()
	s.models.Store(set)
	s.m.setModels(old, set)
	if old.ref != set.ref {
		s.m.swaps.Inc()
	}
	s.log.Info("models set", "model", set.ref.Name, "model_version", set.ref.Version, "model_sha256", set.ref.SHA256,
		"shadow", set.shadowRef.Name, "shadow_version", set.shadowRef.Version)
	return nil
}

// Models returns the references of the active model and of the shadow model
// (zero when there is none).
func (s *Scorer) Models() (active, shadow schemas.ModelRef) {
	set := s.models.Load()
	return set.ref, set.shadowRef
}
