package bench

import (
	"testing"
	"time"

	"github.com/cardiostream/cardiostream/schemas"
)

func TestMedianAndQuantiles(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		want float64
	}{
		{"empty", nil, 0},
		{"odd", []float64{3, 1, 2}, 2},
		{"even", []float64{4, 1, 3, 2}, 2.5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Median(tc.xs); got != tc.want {
				t.Fatalf("Median(%v) = %v, want %v", tc.xs, got, tc.want)
			}
		})
	}
	ds := make([]time.Duration, 1000)
	for i := range ds {
		ds[i] = time.Duration(1000-i) * time.Millisecond // 1..1000 ms, reversed
	}
	q := QuantilesOf(ds)
	if q.P50 != 500 || q.P95 != 950 || q.P99 != 990 || q.P999 != 999 || q.Max != 1000 {
		t.Fatalf("quantiles %+v", q)
	}
}

// TestRecordsAreValid: every synthetic record decodes and validates, and
// its index can be found in the record and in its outcome.
func TestRecordsAreValid(t *testing.T) {
	for k := range 8 {
		data := Record("r-", k)
		rec, err := schemas.DecodeRecord(data)
		if err != nil {
			t.Fatalf("record %d: %v\n%s", k, err, data)
		}
		if got, ok := RecordIndex(data, "r-"); !ok || got != k {
			t.Fatalf("RecordIndex(record %d) = %d, %v", k, got, ok)
		}
		o, err := schemas.DecodeOutcome(Outcome("r-", k))
		if err != nil || o.RecordID != rec.ID {
			t.Fatalf("outcome %d: %v, record id %q vs %q", k, err, o.RecordID, rec.ID)
		}
	}
	if _, ok := RecordIndex([]byte(`{"id":"x"}`), "r-"); ok {
		t.Fatal("found an index in a record without one")
	}
}
