package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// plainPrediction has Prediction's fields and tags but no methods, so
// encoding/json encodes it with its own reflection-based encoder.
type plainPrediction Prediction

var trickyStrings = []string{
	"", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>", "tab\tnl\ncr\rbs\bff\f",
	"\x00\x01\x1f\x7f", "é 中文 😀", "line\u2028sep\u2029", "bad \xff utf8 \xc3", "\xed\xa0\x80 surrogate",
}

var trickyFloats = []float64{
	0, math.Copysign(0, -1), 1, -1, 0.1, 0.5, 0.8731, 1e-6, 9.99e-7, 1e-7, 123456789.123, 1e20, 1e21, 1.5e300,
	5e-324, math.MaxFloat64, -2.5e-8, 2.3, 1.0 / 3,
}

func TestPredictionAppendJSONMatchesEncodingJSON(t *testing.T) {
	east := time.FixedZone("UTC+5:30", 5*3600+1800)
	base := Prediction{SchemaVersion: 1, RecordID: "r-1", Source: "cleveland", Probability: 0.8731, Label: 1, Threshold: 0.5,
		Model:      ModelRef{Name: "xgb", Version: "1", SHA256: strings.Repeat("0f", 32)},
		ReceivedAt: time.Date(2025, 1, 2, 3, 4, 5, 600, time.UTC), ScoredAt: time.Date(2025, 1, 2, 8, 34, 5, 123456789, east),
		LatencyMS: 0.000123, Deliveries: 3}
	var cases []Prediction
	cases = append(cases, base, Prediction{}, Prediction{SchemaVersion: 1})
	for _, s := range trickyStrings {
		p := base
		p.RecordID, p.Source, p.PatientRef, p.Model.Name, p.Model.Version = s, s, s, s, s
		cases = append(cases, p)
	}
	for _, f := range trickyFloats {
		p := base
		p.Probability, p.Threshold, p.LatencyMS = f, -f, f/3
		cases = append(cases, p)
	}
	p := base
	p.ReceivedAt = time.Now() // monotonic reading and local zone
	p.ScoredAt = time.Time{}
	p.Deliveries = 0
	p.Label = -7
	cases = append(cases, p)

	for i, p := range cases {
		plain := plainPrediction(p)
		plain.SchemaVersion = version(p.SchemaVersion) // a zero version is written as Version, by design
		want, err := json.Marshal(plain)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		got, err := p.AppendJSON(nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("case %d:\n got %s, %v\nwant %s", i, got, err, want)
		}
		if p.SchemaVersion == Version {
			viaMarshal, err := json.Marshal(p)
			if err != nil || !bytes.Equal(viaMarshal, want) {
				t.Errorf("case %d: json.Marshal(Prediction) = %s, %v", i, viaMarshal, err)
			}
		}
	}
}

func TestPredictionAppendJSONAllocations(t *testing.T) {
	p := Prediction{SchemaVersion: 1, RecordID: "r-1", Source: "cleveland", PatientRef: "p-1", Probability: 0.8731, Label: 1,
		Threshold: 0.5, Model: ModelRef{Name: "xgb", Version: "1", SHA256: strings.Repeat("0f", 32)},
		ReceivedAt: time.Now(), ScoredAt: time.Now(), LatencyMS: 1.25, Deliveries: 1}
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() { buf, _ = p.AppendJSON(buf[:0]) }); n != 0 {
		t.Errorf("AppendJSON into a large enough buffer: %v allocations, want 0", n)
	}
}

func TestPredictionMarshalRejectsUnencodable(t *testing.T) {
	for name, p := range map[string]Prediction{
		"NaN probability": {Probability: math.NaN()},
		"Inf latency":     {LatencyMS: math.Inf(1)},
		"year 10000":      {ReceivedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if _, err := json.Marshal(p); !errors.Is(err, ErrUnencodable) {
			t.Errorf("%s: json.Marshal err = %v, want ErrUnencodable", name, err)
		}
		b, err := p.AppendJSON([]byte("prefix"))
		if !errors.Is(err, ErrUnencodable) || string(b) != "prefix" {
			t.Errorf("%s: AppendJSON = %q, %v; want the buffer unchanged and ErrUnencodable", name, b, err)
		}
	}
}

func TestMarshalDefaultsSchemaVersion(t *testing.T) {
	for name, v := range map[string]any{
		"record": Record{ID: "a", Features: Missing()}, "outcome": Outcome{RecordID: "a"},
		"prediction": Prediction{}, "deadletter": DeadLetter{}, "alert": Alert{},
		"pointer": &Alert{},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.HasPrefix(b, []byte(`{"schema_version":1,`)) {
			t.Errorf("%s: %s", name, b)
		}
	}
	b, _ := json.Marshal(DeadLetter{})
	if !bytes.Contains(b, []byte(`"reasons":[]`)) || !bytes.Contains(b, []byte(`"payload":""`)) {
		t.Errorf("nil slices of a dead letter: %s", b)
	}
	b, _ = json.Marshal(Record{ID: "a", Features: Missing()})
	if bytes.Contains(b, []byte("observed_at")) || !bytes.Contains(b, []byte(`"age":null`)) {
		t.Errorf("record: %s", b)
	}
}

func TestFeaturesMarshalMatchesEncodingJSON(t *testing.T) {
	for _, v := range trickyFloats {
		var f Features
		for i := range f {
			f[i] = v
		}
		f[Thal] = math.NaN()
		got, err := f.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]any{}
		for i, n := range FeatureNames {
			m[n] = f[i]
		}
		m["thal"] = nil
		var want map[string]json.RawMessage
		wb, _ := json.Marshal(m)
		_ = json.Unmarshal(wb, &want)
		var gotm map[string]json.RawMessage
		if err := json.Unmarshal(got, &gotm); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		for k, w := range want {
			if !bytes.Equal(gotm[k], w) {
				t.Errorf("%v: %s = %s, encoding/json writes %s", v, k, gotm[k], w)
			}
		}
	}
}

// FuzzEncodingMatchesEncodingJSON checks the hand-written string and float
// encoders against encoding/json on arbitrary input.
func FuzzEncodingMatchesEncodingJSON(f *testing.F) {
	for i, s := range trickyStrings {
		f.Add(s, trickyFloats[i%len(trickyFloats)])
	}
	f.Fuzz(func(t *testing.T, s string, v float64) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			// Go 1.27's encoding/json writes invalid UTF-8 as U+FFFD itself
			// where Go 1.26 (and this encoder) write the escape \ufffd; both
			// are the same JSON string. Anything else must be byte-identical.
			if !bytes.Equal(unescapeReplacementChar(want), unescapeReplacementChar(got)) {
				t.Errorf("string %q: got %s want %s", s, got, want)
			}
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		want, _ = json.Marshal(v)
		if got := appendFloat(nil, v); !bytes.Equal(got, want) {
			t.Errorf("float %v: got %s want %s", v, got, want)
		}
	})
}

// unescapeReplacementChar rewrites each \ufffd escape in the JSON string b as
// U+FFFD itself, leaving every other escape (including \\ufffd, an escaped
// backslash followed by text) as it is.
func unescapeReplacementChar(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			out = append(out, b[i])
			continue
		}
		if b[i+1] == 'u' && i+6 <= len(b) && string(b[i+2:i+6]) == "fffd" {
			out = append(out, "\uFFFD"...)
			i += 5
			continue
		}
		out = append(out, b[i], b[i+1])
		i++
	}
	return out
}
