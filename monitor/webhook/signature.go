package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Request headers. Receivers read the delivery id and verify the signature
// and timestamp (see Verify and docs/webhooks.md).
const (
	// HeaderDelivery is the alert id: the same on every attempt and after a
	// restart, so receivers drop a repeat by it.
	HeaderDelivery = "X-Cardiostream-Delivery"
	// HeaderTimestamp is the unix time (seconds) of the send attempt.
	HeaderTimestamp = "X-Cardiostream-Timestamp"
	// HeaderSignature is "v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>".
	// Several comma-separated entries may appear in later versions (a key
	// rotation); a receiver accepts the request when any v1 entry matches.
	HeaderSignature = "X-Cardiostream-Signature"
)

// signatureScheme prefixes each signature; a new scheme gets a new prefix so
// receivers can accept both during a migration.
const signatureScheme = "v1="

// Sign returns the X-Cardiostream-Signature value for body sent at timestamp:
// "v1=" followed by the lower-case hex HMAC-SHA256, keyed with secret, of the
// timestamp in unix seconds, a '.', and the body bytes exactly as sent.
func Sign(secret []byte, timestamp time.Time, body []byte) string {
	return signatureScheme + hex.EncodeToString(mac(secret, strconv.FormatInt(timestamp.Unix(), 10), body))
}

func mac(secret []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a received request: that header carries a timestamp and a v1
// signature of body under secret, and that the timestamp is within tolerance
// of now in either direction (a captured request cannot be replayed later;
// clocks may differ a little). A tolerance ≤ 0 means
// DefaultSignatureTolerance. The body must be the raw bytes read from the
// request, before any JSON decoding.
//
// Errors: ErrSecretEmpty, ErrTimestampMissing, ErrTimestampInvalid,
// ErrSignatureMissing, ErrSignatureMismatch, ErrTimestampOutOfTolerance.
// The signature is checked before the timestamp's age, so a stale request
// with a valid signature is reported as ErrTimestampOutOfTolerance.
func Verify(secret []byte, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if len(secret) == 0 {
		return ErrSecretEmpty
	}
	if tolerance <= 0 {
		tolerance = DefaultSignatureTolerance
	}
	ts := strings.TrimSpace(header.Get(HeaderTimestamp))
	if ts == "" {
		return ErrTimestampMissing
	}
	// Digits only (no sign, no spaces inside), as every receiver recipe
	// parses it; the MAC covers the header's exact text.
	if strings.TrimLeft(ts, "0123456789") != "" {
		return ErrTimestampInvalid
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrTimestampInvalid
	}
	var candidates [][]byte
	for _, value := range header.Values(HeaderSignature) {
		for entry := range strings.SplitSeq(value, ",") {
			entry = strings.TrimSpace(entry)
			hexSig, ok := strings.CutPrefix(entry, signatureScheme)
			if !ok {
				continue // another scheme: not ours to judge
			}
			sig, err := hex.DecodeString(hexSig)
			if err != nil {
				sig = nil // compare anyway: a malformed entry is a mismatch
			}
			candidates = append(candidates, sig)
		}
	}
	if len(candidates) == 0 {
		return ErrSignatureMissing
	}
	want := mac(secret, ts, body)
	matched := false
	for _, sig := range candidates {
		// Constant time, and every entry is compared, so timing says nothing
		// about which entry or how much of it matched.
		if hmac.Equal(sig, want) {
			matched = true
		}
	}
	if !matched {
		return ErrSignatureMismatch
	}
	age := now.Sub(time.Unix(sec, 0))
	if age > tolerance || age < -tolerance {
		return ErrTimestampOutOfTolerance
	}
	return nil
}
