package schemas

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxRecordBytes is the largest record payload accepted; larger ones are
// dead-lettered without being parsed. Outcomes share the limit.
const MaxRecordBytes = 16 << 10

// MaxIDLength bounds record ids (and outcome record_ids): see IDPattern.
const MaxIDLength = 128

// IDPattern is the pattern every record id matches: 1–128 ASCII letters,
// digits, '.', '_', ':' or '-', starting with a letter or digit, so that ids
// are safe in message ids, log lines and file names.
const IDPattern = `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`

// MaxPatientRefLength bounds patient_ref, in characters (code points).
const MaxPatientRefLength = 128

const (
	idRule         = "must match " + IDPattern + " (1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit)"
	patientRefRule = "must be at most 128 characters"
	timeRule       = "must be an RFC 3339 date-time such as 2025-01-31T14:05:00Z or 2025-01-31T15:05:00.5+01:00"
	timeRangeRule  = "must be within years 0000-9999 in UTC"
	versionRule    = "must be 1, the only schema version"
	featureHint    = "; send null when the value is unknown"
)

// featureFields are the Problem fields of the features, built once so that
// decoding does not allocate them.
var featureFields = func() (f [NumFeatures]string) {
	for i, n := range FeatureNames {
		f[i] = "features." + n
	}
	return f
}()

// ValidID reports whether id matches IDPattern.
func ValidID(id string) bool { return validID([]byte(id)) }

func validID(b []byte) bool {
	if len(b) == 0 || len(b) > MaxIDLength {
		return false
	}
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == ':' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// quoteGot renders a string value for a problem, shortened and quoted.
func quoteGot(b []byte) string { return strconv.Quote(shorten(b)) }

// Member bits, for duplicate detection.
const (
	mVersion = 1 << iota
	mID
	mPatientRef
	mObservedAt
	mFeatures
	mLabel
)

// decoder holds the scanner and the stack buffers for unescaped strings, so a
// decode allocates only the strings it returns.
type decoder struct {
	s    scanner
	kbuf [64]byte
	idb  [MaxIDLength]byte
	refb [4 * MaxPatientRefLength]byte // 128 code points are at most 512 bytes
	tbuf [64]byte
}

// required is a member a payload must have: its bit in the seen set, its
// field and the problem when it is absent.
type required struct {
	bit            uint16
	field, problem string
}

// next moves to the next member of the payload's top-level object (after
// begin): the key, positioned at its value, which the caller must consume.
// ok is false at the closing brace or once a fatal problem is recorded.
func (d *decoder) next(first *bool) (key []byte, ok bool) {
	if d.s.fatal {
		return nil, false
	}
	key, ok = d.s.member(*first, d.kbuf[:])
	*first = false
	return key, ok
}

// finish checks, after the last member, that nothing follows the object and
// that the required members (marked in seen by dup) were there.
func (d *decoder) finish(seen uint16, required ...required) {
	s := &d.s
	if s.fatal {
		return
	}
	if s.end(); s.fatal {
		return
	}
	for _, r := range required {
		if seen&r.bit == 0 {
			s.addShape(r.field, r.problem)
		}
	}
}

// dup reports (and skips) a member seen before.
func (d *decoder) dup(seen *uint16, bit uint16, field string) bool {
	if *seen&bit != 0 {
		d.s.addShape(field, "duplicate key")
		d.s.skip(field)
		return true
	}
	*seen |= bit
	return false
}

// unknown reports a member that the message kind does not have, suggesting
// the closest known key, and skips its value.
func (d *decoder) unknown(prefix string, key []byte, known []string) {
	field := fieldPath(prefix, key)
	msg := "unknown field"
	if sug := closestKey(string(key), known); sug != "" {
		msg += "; did you mean " + strconv.Quote(sug) + "?"
	} else {
		msg += "; allowed: " + joinQuoted(known)
	}
	d.s.addShape(field, msg)
	d.s.skip(field)
}

// schemaVersion reads "schema_version": it must be the number 1.
func (d *decoder) schemaVersion() {
	s := &d.s
	if s.kind() != kindNumber {
		s.wrongType("schema_version", "must be a number")
		return
	}
	raw, integral, ok := s.number()
	if !ok {
		return
	}
	if !integral || parseFloat(raw) != Version {
		s.addValue("schema_version", withGot(versionRule, raw))
	}
}

// id reads an id member into d.idb. It returns the id only when it is valid.
func (d *decoder) id(field string) (id []byte, ok bool) {
	s := &d.s
	if s.kind() != kindString {
		s.wrongType(field, "must be a string")
		return nil, false
	}
	val, full, ok := s.stringValue(d.idb[:])
	if !ok {
		return nil, false
	}
	if !full || !validID(val) {
		s.addValue(field, idRule+gotSep+quoteGot(val))
		return nil, false
	}
	return val, true
}

// timestamp reads an RFC 3339 date-time member.
func (d *decoder) timestamp(field string) (time.Time, bool) {
	s := &d.s
	if s.kind() != kindString {
		s.wrongType(field, "must be a string")
		return time.Time{}, false
	}
	val, full, ok := s.stringValue(d.tbuf[:])
	if !ok {
		return time.Time{}, false
	}
	t, valid := parseRFC3339(val)
	if !full || !valid {
		s.addValue(field, timeRule+gotSep+quoteGot(val))
		return time.Time{}, false
	}
	if !inJSONRange(t) {
		s.addValue(field, timeRangeRule+gotSep+quoteGot(val))
		return time.Time{}, false
	}
	return t, true
}

// err turns the recorded problems into a *ValidationError, or nil.
func (s *scanner) err() error {
	if len(s.probs) == 0 {
		return nil
	}
	st := StageValidate
	if s.shape {
		st = StageDecode
	}
	return &ValidationError{Stage: st, Problems: s.probs}
}

var recordKeys = []string{"schema_version", "id", "patient_ref", "observed_at", "features"}

// DecodeRecord parses and validates a record payload:
//
//	{"schema_version": 1, "id": "...", "patient_ref": "...",
//	 "observed_at": "2025-01-31T14:05:00Z", "features": {"age": 63, ...}}
//
// Only id and features are required; a feature that is absent or null is
// missing (NaN). Every value is checked against FeatureSpecs; see README.md
// for the complete rules.
//
// On failure it returns a *ValidationError (errors.Is ErrInvalid) listing
// every problem found, with Stage StageDecode when the payload is not a JSON
// object of the record's shape (syntax, types, unknown, duplicate or missing
// keys, size, encoding) and StageValidate when it is well formed but a value
// is not acceptable. The returned Record then carries only the id, when the
// payload had a valid one, so that a dead letter can name it.
//
// A successful decode allocates once (the id and patient_ref strings share
// one allocation). observed_at is returned in UTC.
func DecodeRecord(data []byte) (Record, error) {
	rec := Record{SchemaVersion: Version, Features: Missing()}
	if len(data) > MaxRecordBytes {
		return rec, tooLarge(len(data))
	}
	var d decoder
	s := &d.s
	s.data = data
	var id, ref []byte
	var seen uint16
	if s.begin() {
		for first := true; ; {
			key, ok := d.next(&first)
			if !ok {
				break
			}
			switch string(key) {
			case "schema_version":
				if !d.dup(&seen, mVersion, "schema_version") {
					d.schemaVersion()
				}
			case "id":
				if !d.dup(&seen, mID, "id") {
					id, _ = d.id("id")
				}
			case "patient_ref":
				if !d.dup(&seen, mPatientRef, "patient_ref") {
					ref = d.patientRef()
				}
			case "observed_at":
				if !d.dup(&seen, mObservedAt, "observed_at") {
					rec.ObservedAt, _ = d.timestamp("observed_at")
				}
			case "features":
				if !d.dup(&seen, mFeatures, "features") {
					d.features(&rec.Features)
				}
			default:
				d.unknown("", key, recordKeys)
			}
		}
		d.finish(seen, required{mID, "id", "is required"}, required{mFeatures, "features", "is required; an object of the 13 features"})
	}
	rec.ID, rec.PatientRef = twoStrings(id, ref)
	if err := s.err(); err != nil {
		return Record{SchemaVersion: Version, ID: rec.ID, Features: Missing()}, err
	}
	return rec, nil
}

// twoStrings converts a and b to strings with a single allocation.
func twoStrings(a, b []byte) (string, string) {
	if len(b) == 0 {
		return string(a), ""
	}
	var buf [MaxIDLength + 4*MaxPatientRefLength]byte
	n := copy(buf[:], a)
	m := copy(buf[n:], b)
	all := string(buf[:n+m])
	return all[:n], all[n:]
}

func (d *decoder) patientRef() []byte {
	s := &d.s
	if s.kind() != kindString {
		s.wrongType("patient_ref", "must be a string")
		return nil
	}
	val, full, ok := s.stringValue(d.refb[:])
	if !ok {
		return nil
	}
	if !full || utf8.RuneCount(val) > MaxPatientRefLength {
		n := "more than 512 bytes"
		if full {
			n = strconv.Itoa(utf8.RuneCount(val)) + " characters"
		}
		s.addValue("patient_ref", patientRefRule+gotSep+n)
		return nil
	}
	return val
}

// features reads the features object into f.
func (d *decoder) features(f *Features) {
	s := &d.s
	if s.kind() != kindObject {
		s.wrongType("features", "must be an object")
		return
	}
	s.pos++
	var seen uint16
	for first := true; ; first = false {
		key, ok := s.member(first, d.kbuf[:])
		if !ok {
			return
		}
		i := featureIndex(key)
		if i < 0 {
			d.unknown("features", key, FeatureNames[:])
		} else if field := featureFields[i]; !d.dup(&seen, 1<<i, field) {
			switch s.kind() {
			case kindNull:
				s.literal("null") // missing: stays NaN
			case kindNumber:
				raw, integral, ok := s.number()
				if !ok {
					return
				}
				v := parseFloat(raw)
				if p := FeatureSpecs[i].check(v, raw, integral); p != "" {
					s.addValue(field, p)
				} else {
					f[i] = v
				}
			case kindNonFinite:
				s.nonFinite(field, featureHint)
			default:
				s.wrongType(field, "must be a number (or null when unknown)")
			}
		}
		if s.fatal {
			return
		}
	}
}

var outcomeKeys = []string{"schema_version", "record_id", "label", "observed_at"}

const labelRule = "must be 0 (no heart disease) or 1 (heart disease)"

// DecodeOutcome parses and validates an outcome payload:
//
//	{"schema_version": 1, "record_id": "...", "label": 0, "observed_at": "2025-02-01T09:00:00Z"}
//
// record_id, label and observed_at are required; label is the integer 0 or 1.
// Errors are reported as for DecodeRecord; on failure the Outcome carries
// only the record id, when valid.
func DecodeOutcome(data []byte) (Outcome, error) {
	var sd SummaryDecoder
	v, err := sd.Outcome(data)
	o := Outcome{SchemaVersion: Version, RecordID: string(v.RecordID)}
	if err != nil {
		return o, err
	}
	// Rebuilt from its parts rather than copied: escape analysis does not
	// tell v's fields apart, and copying one that holds a pointer would move
	// sd, whose buffers v's record id may point into, to the heap.
	o.Label, o.ObservedAt = v.Label, time.Unix(v.ObservedAt.Unix(), int64(v.ObservedAt.Nanosecond())).UTC()
	return o, nil
}

// Outcome decodes an outcome as DecodeOutcome does. On failure the view
// carries only the record id, when valid.
func (sd *SummaryDecoder) Outcome(data []byte) (OutcomeView, error) {
	var o OutcomeView
	if len(data) > MaxRecordBytes {
		return o, tooLarge(len(data))
	}
	d := sd.reset(data)
	s := &d.s
	var id []byte
	var seen uint16
	if s.begin() {
		for first := true; ; {
			key, ok := d.next(&first)
			if !ok {
				break
			}
			switch string(key) {
			case "schema_version":
				if !d.dup(&seen, mVersion, "schema_version") {
					d.schemaVersion()
				}
			case "record_id":
				if !d.dup(&seen, mID, "record_id") {
					id, _ = d.id("record_id")
				}
			case "label":
				if !d.dup(&seen, mLabel, "label") {
					o.Label = d.label()
				}
			case "observed_at":
				if !d.dup(&seen, mObservedAt, "observed_at") {
					o.ObservedAt, _ = d.timestamp("observed_at")
				}
			default:
				d.unknown("", key, outcomeKeys)
			}
		}
		d.finish(seen, required{mID, "record_id", "is required"}, required{mLabel, "label", "is required"}, required{mObservedAt, "observed_at", "is required"})
	}
	if err := s.err(); err != nil {
		return OutcomeView{RecordID: id}, err
	}
	o.RecordID = id
	return o, nil
}

// numberValue reads the number member field; ok is false (with the problem
// recorded) when it is not a finite JSON number.
func (d *decoder) numberValue(field string) (raw []byte, integral, ok bool) {
	s := &d.s
	switch s.kind() {
	case kindNumber:
		return s.number()
	case kindNonFinite:
		s.nonFinite(field, "")
	default:
		s.wrongType(field, "must be a number")
	}
	return nil, false, false
}

func (d *decoder) label() int {
	s := &d.s
	raw, integral, ok := d.numberValue("label")
	if !ok {
		return 0
	}
	if len(raw) == 1 && (raw[0] == '0' || raw[0] == '1') {
		return int(raw[0] - '0') // as every label is written: no float to parse
	}
	v := parseFloat(raw)
	if !integral || (v != 0 && v != 1) {
		s.addValue("label", withGot(labelRule, raw))
		return 0
	}
	return int(v)
}

func tooLarge(n int) error {
	return &ValidationError{Stage: StageDecode, Problems: []Problem{{
		Problem: "payload is " + strconv.Itoa(n) + " bytes; the limit is " + strconv.Itoa(MaxRecordBytes) + " bytes",
	}}}
}

// parseRFC3339 parses an RFC 3339 date-time strictly (four-digit year,
// two-digit fields, 'T' or 't', optional fraction, 'Z', 'z' or ±hh:mm) into
// UTC without allocating. Leap seconds (:60) are rejected: time.Time cannot
// hold them. Fractions beyond nanoseconds are truncated.
func parseRFC3339(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't') || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	year, ok1 := atoiN(b[0:4])
	month, ok2 := atoiN(b[5:7])
	day, ok3 := atoiN(b[8:10])
	hour, ok4 := atoiN(b[11:13])
	minute, ok5 := atoiN(b[14:16])
	sec, ok6 := atoiN(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	rest := b[19:]
	nsec := 0
	if rest[0] == '.' {
		i := 1
		scale := 100_000_000
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			nsec += int(rest[i]-'0') * scale
			scale /= 10
			i++
		}
		if i == 1 {
			return time.Time{}, false
		}
		rest = rest[i:]
	}
	offset := 0
	switch {
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, okh := atoiN(rest[1:3])
		om, okm := atoiN(rest[4:6])
		if !okh || !okm || oh > 23 || om > 59 {
			return time.Time{}, false
		}
		offset = (oh*60 + om) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	t = t.Add(-time.Duration(offset) * time.Second)
	return t, true
}

// inJSONRange reports whether t's UTC year is within 0000-9999: an instant
// such as 0000-01-01T00:00:00+01:00 (year -1 in UTC) could not be written
// back out (time.Time.MarshalJSON refuses it), so it is not accepted in.
func inJSONRange(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 0 && y <= 9999
}

// atoiN parses a fixed-width run of ASCII digits.
func atoiN(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
