package bench

import (
	"bytes"
	"fmt"
	"strconv"
)

// rows are valid UCI heart-disease feature sets; records cycle through them.
var rows = []string{
	`"age":63,"sex":1,"cp":1,"trestbps":145,"chol":233,"fbs":1,"restecg":2,"thalach":150,"exang":0,"oldpeak":2.3,"slope":3,"ca":0,"thal":6`,
	`"age":67,"sex":1,"cp":4,"trestbps":160,"chol":286,"fbs":0,"restecg":2,"thalach":108,"exang":1,"oldpeak":1.5,"slope":2,"ca":3,"thal":3`,
	`"age":41,"sex":0,"cp":2,"trestbps":130,"chol":204,"fbs":0,"restecg":2,"thalach":172,"exang":0,"oldpeak":1.4,"slope":1,"ca":0,"thal":3`,
	`"age":54,"sex":1,"cp":3,"trestbps":null,"chol":null,"fbs":0,"restecg":0,"thalach":160,"exang":0,"oldpeak":0,"slope":null,"ca":null,"thal":null`,
}

// Record returns record k with id prefix+k: about 270 bytes of JSON, the
// size of a real record with a patient reference and observation time.
func Record(prefix string, k int) []byte {
	return fmt.Appendf(nil, `{"schema_version":1,"id":"%s%08d","patient_ref":"p-%06d","observed_at":"2026-11-26T10:00:00Z","features":{%s}}`,
		prefix, k, k%1000000, rows[k%len(rows)])
}

// Outcome returns the outcome of record k (label k%2).
func Outcome(prefix string, k int) []byte {
	return fmt.Appendf(nil, `{"schema_version":1,"record_id":"%s%08d","label":%d,"observed_at":"2026-11-26T10:05:00Z"}`, prefix, k, k%2)
}

// RecordIndex finds `"<prefix><digits>` in an output (a prediction's
// record_id, or the relay's copy of the record) and returns the number.
func RecordIndex(data []byte, prefix string) (int, bool) {
	i := bytes.Index(data, []byte(`"`+prefix))
	if i < 0 {
		return 0, false
	}
	i += 1 + len(prefix)
	j := i
	for j < len(data) && data[j] >= '0' && data[j] <= '9' {
		j++
	}
	k, err := strconv.Atoi(string(data[i:j]))
	return k, err == nil
}
