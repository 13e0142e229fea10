package model

import (
	"crypto/sha256"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

var sentinels = []error{ErrFormat, ErrUnsupportedBooster, ErrUnsupportedObjective, ErrFeatureMismatch, ErrCategorical}

// FuzzParseXGBoostJSON: any input either fails with a sentinel error or
// yields an ensemble that predicts a probability for any feature vector.
// Seeds: the refusal table (added here) plus testdata/fuzz/FuzzParseXGBoostJSON.
func FuzzParseXGBoostJSON(f *testing.F) {
	for _, tc := range refusalCases(f) {
		f.Add(tc.data)
	}
	f.Add(readTestdata(f, "tiny.json"))
	names := schemaNames()
	f.Fuzz(func(t *testing.T, data []byte) {
		ens, err := ParseXGBoostJSON(data, names)
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error wraps no sentinel: %v", err)
		}
		out := make([]float64, 1)
		for _, fill := range []float64{math.NaN(), 0, -1e30, 1e30} {
			in := make([]float64, NumFeatures)
			for i := range in {
				in[i] = fill
			}
			if err := ens.Predict(in, 0, out); err != nil {
				t.Fatal(err)
			}
			if math.IsNaN(out[0]) || out[0] < 0 || out[0] > 1 {
				t.Fatalf("probability %v", out[0])
			}
		}
	})
}

// TestWriteFuzzCorpus commits the refusal table as the fuzz seed corpus (with -update).
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParseXGBoostJSON")
	if !*update {
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("seed corpus missing: %v (run go test -run TestWriteFuzzCorpus -update)", err)
		}
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := append(refusalCases(t), refusalCase{name: "tiny valid", data: readTestdata(t, "tiny.json")})
	for i, tc := range cases {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(tc.data)) + ")\n"
		name := filepath.Join(dir, "seed-"+strconv.Itoa(i))
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
