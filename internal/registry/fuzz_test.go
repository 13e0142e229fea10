package registry

import (
	"io/fs"
	"math"
	"testing"

	"github.com/cardiostream/cardiostream/models"
)

// FuzzParseEvalSet: an evaluation set (registry.gates.eval_set is a user
// file) either parses into rows with labels 0 or 1, or fails; it never panics.
func FuzzParseEvalSet(f *testing.F) {
	bundled, err := fs.ReadFile(models.Default(), "heart-xgb/heldout.csv")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bundled[:2000])
	f.Add([]byte("age,sex,cp,trestbps,chol,fbs,restecg,thalach,exang,oldpeak,slope,ca,thal,label\n63,1,1,145,233,1,2,150,0,2.3,3,0,6,1\n"))
	f.Add([]byte("label\n1\n"))
	f.Add([]byte("age,sex,cp,trestbps,chol,fbs,restecg,thalach,exang,oldpeak,slope,ca,thal,label\n,,,,,,,,,,,,,2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := parseEvalSet("fuzz.csv", data)
		if err != nil {
			return
		}
		if len(es.rows) == 0 || len(es.rows) != len(es.labels) {
			t.Fatalf("%d rows, %d labels", len(es.rows), len(es.labels))
		}
		for _, l := range es.labels {
			if l != 0 && l != 1 {
				t.Fatalf("label %d", l)
			}
		}
	})
}

// TestMetricsAgainstHandComputedValues checks accuracy, Brier and AUC
// (with ties) on small cases computed by hand.
func TestMetricsAgainstHandComputedValues(t *testing.T) {
	tests := []struct {
		name            string
		p               []float64
		y               []int
		acc, brier, auc float64
	}{
		{"perfect", []float64{0.1, 0.2, 0.8, 0.9}, []int{0, 0, 1, 1}, 1, (0.01 + 0.04 + 0.04 + 0.01) / 4, 1},
		{"inverted", []float64{0.9, 0.8, 0.2, 0.1}, []int{0, 0, 1, 1}, 0, (0.81 + 0.64 + 0.64 + 0.81) / 4, 0},
		// Ties between classes count one half: pairs (pos,neg) = 4; wins:
		// 0.7>0.3 twice, 0.5 vs 0.5 tie (0.5), 0.5>0.3 → 3.5/4.
		{"ties", []float64{0.5, 0.7, 0.5, 0.3}, []int{1, 1, 0, 0}, 0.75, (0.25 + 0.09 + 0.25 + 0.09) / 4, 0.875},
		{"one class", []float64{0.2, 0.6}, []int{1, 1}, 0.5, (0.64 + 0.16) / 2, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := accuracy(tt.p, tt.y, 0.5); math.Abs(got-tt.acc) > 1e-12 {
				t.Errorf("accuracy %v, want %v", got, tt.acc)
			}
			if got := brier(tt.p, tt.y); math.Abs(got-tt.brier) > 1e-12 {
				t.Errorf("brier %v, want %v", got, tt.brier)
			}
			if got := auc(tt.p, tt.y); math.Abs(got-tt.auc) > 1e-12 {
				t.Errorf("auc %v, want %v", got, tt.auc)
			}
		})
	}
}

// TestWatchStateOnlyMovesForward: the KV watch and the poll may report the
// same change twice or out of order; a pointer only ever moves to a newer
// revision, and a deletion (nil) is a change like any other.
func TestWatchStateOnlyMovesForward(t *testing.T) {
	st := watchState{revs: map[string]uint64{}}
	a1, a2 := &Pointer{Version: "1"}, &Pointer{Version: "2"}
	steps := []struct {
		key         string
		p           *Pointer
		rev         uint64
		wantChanged bool
		wantActive  string
		wantShadow  string
	}{
		{KeyActive, a1, 3, true, "1", ""},
		{KeyActive, a1, 3, false, "1", ""}, // the poll repeats the watch
		{KeyShadow, a2, 4, true, "1", "2"},
		{KeyActive, a2, 5, true, "2", "2"},
		{KeyActive, a1, 3, false, "2", "2"}, // a stale read cannot undo
		{KeyShadow, nil, 6, true, "2", ""},  // shadow deleted
		{KeyShadow, a2, 4, false, "2", ""},  // stale again
	}
	for i, s := range steps {
		if got := st.apply(s.key, s.p, s.rev); got != s.wantChanged {
			t.Fatalf("step %d: changed %v, want %v", i, got, s.wantChanged)
		}
		var act, sh string
		if st.cur.Active != nil {
			act = st.cur.Active.Version
		}
		if st.cur.Shadow != nil {
			sh = st.cur.Shadow.Version
		}
		if act != s.wantActive || sh != s.wantShadow {
			t.Fatalf("step %d: active %q shadow %q, want %q %q", i, act, sh, s.wantActive, s.wantShadow)
		}
	}
}
