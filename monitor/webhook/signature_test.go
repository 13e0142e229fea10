package webhook

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSignKnownVector(t *testing.T) {
	// Computed independently: printf '1772366400.{"id":"a"}' | openssl dgst -sha256 -hmac secret
	got := Sign([]byte("secret"), time.Unix(1772366400, 0), []byte(`{"id":"a"}`))
	const want = "v1=" + knownVectorHex
	if got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

const knownVectorHex = "ca099d093824b2d47244ad5131874cf279467e2d3225f5f8c65c64ba141246a0"

func signedHeader(secret string, ts time.Time, body []byte) http.Header {
	h := http.Header{}
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, Sign([]byte(secret), ts, body))
	return h
}

func TestVerify(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"id":"accuracy_low-firing-1","rule":"accuracy_low"}`)
	sent := time.Unix(1772366400, 0)
	good := signedHeader("s3cret", sent, body)
	with := func(mod func(h http.Header)) http.Header {
		h := good.Clone()
		mod(h)
		return h
	}
	tests := []struct {
		name      string
		secret    []byte
		header    http.Header
		body      []byte
		now       time.Time
		tolerance time.Duration
		wantErr   error
	}{
		{name: "valid", secret: secret, header: good, body: body, now: sent},
		{name: "valid at the tolerance edge", secret: secret, header: good, body: body, now: sent.Add(5 * time.Minute)},
		{name: "valid with a small clock skew backwards", secret: secret, header: good, body: body, now: sent.Add(-time.Minute)},
		{name: "tampered body", secret: secret, header: good, body: []byte(strings.Replace(string(body), "accuracy", "latency", 1)), now: sent, wantErr: ErrSignatureMismatch},
		{name: "body with trailing newline", secret: secret, header: good, body: append(append([]byte(nil), body...), '\n'), now: sent, wantErr: ErrSignatureMismatch},
		{name: "wrong secret", secret: []byte("other"), header: good, body: body, now: sent, wantErr: ErrSignatureMismatch},
		{name: "old timestamp", secret: secret, header: good, body: body, now: sent.Add(5*time.Minute + time.Second), wantErr: ErrTimestampOutOfTolerance},
		{name: "future timestamp", secret: secret, header: good, body: body, now: sent.Add(-6 * time.Minute), wantErr: ErrTimestampOutOfTolerance},
		{name: "custom tolerance", secret: secret, header: good, body: body, now: sent.Add(time.Minute), tolerance: 30 * time.Second, wantErr: ErrTimestampOutOfTolerance},
		{name: "timestamp changed (replay with a fresh time)", secret: secret, body: body, now: sent.Add(time.Hour),
			header: with(func(h http.Header) { h.Set(HeaderTimestamp, strconv.FormatInt(sent.Add(time.Hour).Unix(), 10)) }), wantErr: ErrSignatureMismatch},
		{name: "no signature", secret: secret, header: with(func(h http.Header) { h.Del(HeaderSignature) }), body: body, now: sent, wantErr: ErrSignatureMissing},
		{name: "unknown scheme only", secret: secret, header: with(func(h http.Header) { h.Set(HeaderSignature, "v2=abcd") }), body: body, now: sent, wantErr: ErrSignatureMissing},
		{name: "malformed hex", secret: secret, header: with(func(h http.Header) { h.Set(HeaderSignature, "v1=zz") }), body: body, now: sent, wantErr: ErrSignatureMismatch},
		{name: "one of several signatures matches", secret: secret, body: body, now: sent,
			header: with(func(h http.Header) { h.Set(HeaderSignature, "v1=00ff, "+h.Get(HeaderSignature)+",v2=xyz") })},
		{name: "repeated header, second matches", secret: secret, body: body, now: sent,
			header: with(func(h http.Header) { h[HeaderSignature] = []string{"v1=00", h.Get(HeaderSignature)} })},
		{name: "no timestamp", secret: secret, header: with(func(h http.Header) { h.Del(HeaderTimestamp) }), body: body, now: sent, wantErr: ErrTimestampMissing},
		{name: "timestamp not a number", secret: secret, header: with(func(h http.Header) { h.Set(HeaderTimestamp, "yesterday") }), body: body, now: sent, wantErr: ErrTimestampInvalid},
		{name: "signed timestamp", secret: secret, header: with(func(h http.Header) { h.Set(HeaderTimestamp, "+"+h.Get(HeaderTimestamp)) }), body: body, now: sent, wantErr: ErrTimestampInvalid},
		{name: "timestamp overflows", secret: secret, header: with(func(h http.Header) { h.Set(HeaderTimestamp, strings.Repeat("9", 30)) }), body: body, now: sent, wantErr: ErrTimestampInvalid},
		{name: "empty secret", secret: nil, header: good, body: body, now: sent, wantErr: ErrSecretEmpty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secret, tt.header, tt.body, tt.now, tt.tolerance)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Verify = %v, want nil", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add([]byte("s3cret"), int64(1772366400), "", []byte(`{"id":"a"}`), int64(0))
	f.Add([]byte("s3cret"), int64(1772366400), "v1=00ff, v1=zz,v2=1", []byte(`{}`), int64(400))
	f.Add([]byte{}, int64(-1), "v1=", []byte{}, int64(-400))
	f.Fuzz(func(t *testing.T, secret []byte, ts int64, sigHeader string, body []byte, skew int64) {
		ts %= 1 << 40 // keep time arithmetic far from overflow
		skew %= 1 << 20
		sent := time.Unix(ts, 0)
		now := sent.Add(time.Duration(skew) * time.Second)
		h := http.Header{}
		h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		h.Set(HeaderSignature, sigHeader)
		_ = Verify(secret, h, body, now, 0) // must not panic on any input

		// A genuine signature verifies exactly when it is fresh.
		h.Set(HeaderSignature, Sign(secret, sent, body))
		err := Verify(secret, h, body, now, 0)
		fresh := skew >= -300 && skew <= 300
		switch {
		case len(secret) == 0:
			if !errors.Is(err, ErrSecretEmpty) {
				t.Fatalf("empty secret: %v", err)
			}
		case ts < 0:
			if !errors.Is(err, ErrTimestampInvalid) {
				t.Fatalf("negative timestamp: %v", err)
			}
		case fresh && err != nil:
			t.Fatalf("fresh genuine signature rejected: %v", err)
		case !fresh && !errors.Is(err, ErrTimestampOutOfTolerance):
			t.Fatalf("stale genuine signature (skew %ds): %v", skew, err)
		}
	})
}
