package registry

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/model"
	"github.com/cardiostream/cardiostream/models"
	"github.com/cardiostream/cardiostream/schemas"
)

// The fuzz targets of the registry's decoders of bytes others wrote: the
// KV values (version metadata, pointers), AUDIT entries, the manifest of a
// pushed artifact, public keys from the configuration, the signing key
// file. Each asserts what a caller relies on, not only "no panic".

// maxErrLen bounds a decode error: its fixed text, a few names we chose and
// at most schemas.MaxErrorDetail bytes of a library's error about the value.
const maxErrLen = 600

// checkDecodeErr: an error is non-empty, bounded, valid UTF-8 and, when the
// input is longer than the bound, does not quote it whole.
func checkDecodeErr(t *testing.T, err error, input []byte) {
	t.Helper()
	msg := err.Error()
	if msg == "" || len(msg) > maxErrLen || !utf8.ValidString(msg) {
		t.Fatalf("error of %d bytes (valid UTF-8 %v), want 1-%d: %.300q", len(msg), utf8.ValidString(msg), maxErrLen, msg)
	}
	if len(input) > maxErrLen && strings.Contains(msg, string(input)) {
		t.Fatalf("error quotes the whole input: %.300q", msg)
	}
}

// hostileJSON are seeds every JSON decoder target gets on top of its valid
// examples: truncation, invalid UTF-8, huge numbers, duplicate keys, NaN
// literals, wrong types, timestamps out of range.
var hostileJSON = []string{
	``, `{`, `null`, `[]`, `"x"`, `{}`,
	`{"version":"1.0.0","version":"2.0.0"}`,
	`{"version":"\xff\xfe","actor":"a\u0000b"}`,
	`{"size":1e400,"threshold":NaN}`,
	`{"threshold":Infinity,"size":-1}`,
	`{"size":"12","threshold":"0.5"}`,
	`{"size":123456789012345678901234567890}`,
	`{"pushed_at":"9999-12-31T23:59:59-23:59","changed_at":"0000-01-01T00:00:00+23:59","at":"10000-01-01T00:00:00Z"}`,
	`{"pushed_at":"2026-01-01T00:00:00.123456789123Z"}`,
	`{"files":{"model.json":{"sha256":1,"size":"x"}}}`,
	`{"files":[],"feature_names":{}}`,
	`{"details":[1,2],"forced":"yes"}`,
	`{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	`{"changed_at":"` + strings.Repeat("9", 2000) + `"}`,
	`{"size":` + strings.Repeat("9", 2000) + `}`,
}

func addHostile(f *testing.F) {
	for _, h := range hostileJSON {
		f.Add([]byte(h))
	}
}

// roundTrip: what a decoder accepted encodes without error (Push and the
// pointer changes re-encode what they read with mustJSON, which panics on
// an error), and decoding that again gives the same bytes when encoded.
func roundTrip[T any](t *testing.T, v T, decode func([]byte) (T, error)) {
	t.Helper()
	b1, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("an accepted value does not encode: %v", err)
	}
	v2, err := decode(b1)
	if err != nil {
		t.Fatalf("the encoding of an accepted value is refused: %v\n%s", err, b1)
	}
	b2, err := json.Marshal(v2)
	if err != nil || !bytes.Equal(b1, b2) {
		t.Fatalf("round trip changed the value (err %v):\n%s\n%s", err, b1, b2)
	}
}

func bundledManifest(f *testing.F) []byte {
	b, err := fs.ReadFile(models.Default(), "heart-xgb/manifest.json")
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzDecodeMetadata: a versions.<version> value either decodes, encodes
// back (mustJSON in Push) and round-trips, or is refused as ErrTampered
// with a bounded error.
func FuzzDecodeMetadata(f *testing.F) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	md := Metadata{
		Version: "1.0.0", Name: "heart-xgb", SHA256: strings.Repeat("ab", 32), Size: 12345,
		Files:        map[string]FileInfo{FileModel: {SHA256: strings.Repeat("ab", 32), Size: 12345}, FileManifest: {SHA256: strings.Repeat("cd", 32), Size: 900}, SignatureFile: {SHA256: strings.Repeat("ef", 32), Size: 88}},
		FeatureNames: schemas.FeatureNames[:], Threshold: 0.5,
		Metrics: Metrics{HeldoutAUC: 0.9, HeldoutAccuracy: 0.83, HeldoutBrier: 0.12, HeldoutRows: 184, TrainRows: 736},
		Signed:  true, Notes: "retrained", PushedBy: "ana@host", PushedAt: at, State: StateReady,
	}
	f.Add(mustJSON(md))
	md.State, md.Signed, md.Notes = StateUploading, false, ""
	f.Add(mustJSON(md))
	f.Add(bundledManifest(f)) // a manifest where metadata belongs
	addHostile(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		md, err := decodeMetadata("1.0.0", data)
		if err != nil {
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("error wraps no ErrTampered: %v", err)
			}
			checkDecodeErr(t, err, data)
			return
		}
		roundTrip(t, md, func(b []byte) (*Metadata, error) { return decodeMetadata("1.0.0", b) })
		_ = md.fileDigests()
	})
}

// kvEntry is a KV entry as the watch or a Get hands it to decodePointer.
type kvEntry struct {
	key   string
	value []byte
	rev   uint64
	op    jetstream.KeyValueOp
}

func (e kvEntry) Bucket() string                  { return "MODEL_REGISTRY" }
func (e kvEntry) Key() string                     { return e.key }
func (e kvEntry) Value() []byte                   { return e.value }
func (e kvEntry) Revision() uint64                { return e.rev }
func (e kvEntry) Created() time.Time              { return time.Time{} }
func (e kvEntry) Delta() uint64                   { return 0 }
func (e kvEntry) Operation() jetstream.KeyValueOp { return e.op }

// FuzzDecodePointer: a pointer entry (any operation, any value) is unset
// (a delete, a purge or an empty value), a pointer that round-trips, or an
// error naming the key, bounded.
func FuzzDecodePointer(f *testing.F) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, p := range []Pointer{
		{Version: "1.1.0", SHA256: strings.Repeat("ab", 32), ChangedAt: at, Actor: "ana@host", Reason: "better AUC", Previous: "1.0.0"},
		{Version: "1.0.0", SHA256: strings.Repeat("cd", 32), ChangedAt: at, Actor: "bob", Forced: true},
	} {
		f.Add(uint8(jetstream.KeyValuePut), mustJSON(p))
	}
	f.Add(uint8(jetstream.KeyValueDelete), []byte{})
	f.Add(uint8(jetstream.KeyValuePurge), []byte(`{"version":"x"}`))
	for _, h := range hostileJSON {
		f.Add(uint8(jetstream.KeyValuePut), []byte(h))
	}
	f.Fuzz(func(t *testing.T, op uint8, data []byte) {
		e := kvEntry{key: KeyActive, value: data, rev: 7, op: jetstream.KeyValueOp(op % 3)}
		p, err := decodePointer(e)
		if e.op != jetstream.KeyValuePut || len(data) == 0 {
			if p != nil || err != nil {
				t.Fatalf("%v entry: pointer %+v, err %v; want unset", e.op, p, err)
			}
			return
		}
		if err != nil {
			if !strings.Contains(err.Error(), KeyActive) {
				t.Fatalf("error does not name the key: %v", err)
			}
			checkDecodeErr(t, err, data)
			return
		}
		if p == nil {
			t.Fatal("no pointer and no error for a put with a value")
		}
		roundTrip(t, p, func(b []byte) (*Pointer, error) { return decodePointer(kvEntry{key: KeyActive, value: b, rev: 8}) })
	})
}

// FuzzDecodeAuditEntry: an AUDIT message (any client may publish there) is
// skipped by History with a bounded error, or is an entry that round-trips
// (`model history --json` prints it again).
func FuzzDecodeAuditEntry(f *testing.F) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, e := range []schemas.AuditEntry{
		{Action: schemas.AuditActivate, Actor: "ana@host", At: at, FromVersion: "1.0.0", ToVersion: "1.1.0", SHA256: strings.Repeat("ab", 32), Reason: "better", Forced: true, Details: []string{"forced past: auc 0.80 < 0.85"}},
		{Action: schemas.AuditArtifactRefused, Actor: "scorer@host-1", At: at, ToVersion: "1.1.0", Reason: "tampered (active pointer)", Details: []string{"registry: artifact does not match the registry"}},
		{Action: schemas.AuditPush, At: at, ToVersion: "1.1.0", Details: []string{"files 3, model size 12345", "signed"}},
	} {
		b, err := json.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	addHostile(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := decodeAuditEntry(data)
		if err != nil {
			checkDecodeErr(t, err, data)
			return
		}
		roundTrip(t, e, decodeAuditEntry)
	})
}

// FuzzArtifactManifest: the manifest of an artifact to push, as ReadArtifact
// reads it from disk (it must name a plain model file) and as Push checks it
// against --version and the model's bytes. Accepted means consistent;
// refused means ErrInvalidArtifact with a bounded error.
func FuzzArtifactManifest(f *testing.F) {
	modelBytes, err := fs.ReadFile(models.Default(), "heart-xgb/model.json")
	if err != nil {
		f.Fatal(err)
	}
	man := bundledManifest(f)
	f.Add(man, "1.0.0")
	f.Add(man, "1.1.0")
	f.Add(bytes.Replace(man, []byte(`"model.json"`), []byte(`"../model.json"`), 1), "1.0.0")
	f.Add(bytes.Replace(man, []byte(`"model.json"`), []byte(`".."`), 1), "1.0.0")
	f.Add(bytes.Replace(man, []byte(`"1.0.0"`), []byte(`"`+strings.Repeat("1.", 1000)+`0"`), 1), "1.0.0")
	f.Add(bytes.Replace(man, []byte(`"15c11c`), []byte(`"`+strings.Repeat("f", 3000)), 1), "1.0.0")
	for _, h := range hostileJSON {
		f.Add([]byte(h), "1.0.0")
	}
	f.Fuzz(func(t *testing.T, data []byte, version string) {
		m, err := parseArtifactManifest("a/manifest.json", data)
		if err != nil {
			if !errors.Is(err, ErrInvalidArtifact) {
				t.Fatalf("error wraps no ErrInvalidArtifact: %v", err)
			}
			checkDecodeErr(t, err, data)
		} else if m.ModelFile == "" || strings.ContainsAny(m.ModelFile, `/`) || m.ModelFile == "." || m.ModelFile == ".." {
			t.Fatalf("accepted model_file %q, not a plain file name", m.ModelFile)
		}
		if ValidVersion(version) != nil { // Push refuses it first
			return
		}
		m, sum, err := checkManifest(&LocalArtifact{Model: modelBytes, Manifest: data}, version)
		if err != nil {
			if !errors.Is(err, ErrInvalidArtifact) {
				t.Fatalf("error wraps no ErrInvalidArtifact: %v", err)
			}
			checkDecodeErr(t, err, data)
			return
		}
		if m.Version != version || !strings.EqualFold(m.ModelSHA256, sum) || sum != sha(modelBytes) {
			t.Fatalf("accepted manifest version %q sha256 %q for --version %s and a model with sha256 %s", m.Version, m.ModelSHA256, version, sum)
		}
	})
}

// FuzzParsePublicKey: a registry.public_keys entry is an ed25519 public key
// (base64 or PEM, each parsed back to the same key) or an error that quotes
// nothing of the entry.
func FuzzParsePublicKey(f *testing.F) {
	pub, _, err := ed25519.GenerateKey(bytes.NewReader(make([]byte, 64)))
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		f.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	b64 := base64.StdEncoding.EncodeToString(pub)
	for _, s := range []string{
		b64, " " + b64 + "\n", string(pemKey), string(pemKey[:len(pemKey)/2]),
		b64[:20], b64 + "AAAA", base64.StdEncoding.EncodeToString(make([]byte, 64)),
		strings.Replace(string(pemKey), "PUBLIC KEY", "PRIVATE KEY", 2), "-----BEGIN", "",
		"\xff\xfe" + b64, strings.Repeat("A", 5000),
	} {
		f.Add(s)
	}
	allowed := map[string]bool{
		"not a valid PEM block":                                                 true,
		"PEM block is not a PKIX public key":                                    true,
		"PEM public key is not ed25519":                                         true,
		"not base64 of a 32-byte ed25519 public key nor a PEM PUBLIC KEY block": true,
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := parsePublicKey(s)
		if err != nil {
			if !allowed[err.Error()] { // fixed texts: nothing of the entry
				t.Fatalf("unexpected error text %.200q", err)
			}
			return
		}
		if len(k) != ed25519.PublicKeySize {
			t.Fatalf("accepted a key of %d bytes", len(k))
		}
		again, err := parsePublicKey(base64.StdEncoding.EncodeToString(k))
		if err != nil || !again.Equal(k) {
			t.Fatalf("the base64 of an accepted key parses to %x (err %v), want %x", again, err, k)
		}
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		again, err = parsePublicKey(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
		if err != nil || !again.Equal(k) {
			t.Fatalf("the PEM of an accepted key parses to %x (err %v), want %x", again, err, k)
		}
	})
}

// FuzzParsePrivateKey: the signing key file (ReadPrivateKey) yields a key
// whose signatures verify against its own public key, or an error that
// names the file and quotes nothing of its contents.
func FuzzParsePrivateKey(f *testing.F) {
	_, priv, err := ed25519.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		f.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	seed := base64.StdEncoding.EncodeToString(priv.Seed())
	full := base64.StdEncoding.EncodeToString(priv)
	mixed := append(append([]byte{}, priv[:32]...), make([]byte, 32)...) // public half not of the seed
	for _, s := range []string{
		string(pemKey), seed, seed + "\n", full, base64.StdEncoding.EncodeToString(mixed),
		string(pemKey[:len(pemKey)-30]), strings.Replace(string(pemKey), "PRIVATE KEY", "PUBLIC KEY", 2),
		base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)), "-----BEGIN", "",
		"\xff" + seed, strings.Repeat("A", 5000),
	} {
		f.Add([]byte(s))
	}
	const path = "/keys/sign.key"
	allowed := map[string]bool{
		"signing key " + path + ": not a valid PEM block":                                           true,
		"signing key " + path + ": PEM block is not a PKCS #8 private key":                          true,
		"signing key " + path + ": not an ed25519 key":                                              true,
		"signing key " + path + ": the 64-byte key's public half is not the public key of its seed": true,
		"signing key " + path + ": want a PEM PKCS #8 ed25519 key or base64 of a 32-byte seed":      true,
	}
	msg := CanonicalDigest("1.0.0", map[string]string{FileModel: strings.Repeat("ab", 32)})
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := parsePrivateKey(path, data)
		if err != nil {
			if !allowed[err.Error()] { // fixed texts: nothing of the key
				t.Fatalf("unexpected error text %.200q", err)
			}
			return
		}
		if len(k) != ed25519.PrivateKeySize {
			t.Fatalf("accepted a key of %d bytes", len(k))
		}
		pub, err := parsePublicKey(PublicKeyBase64(k))
		if err != nil {
			t.Fatal(err)
		}
		if !ed25519.Verify(pub, msg, ed25519.Sign(k, msg)) {
			t.Fatal("an accepted signing key makes signatures its own public key does not verify")
		}
		sig := Sign(k, "1.0.0", map[string]string{FileModel: strings.Repeat("ab", 32)})
		if err := verifySignature([]ed25519.PublicKey{pub}, "1.0.0", map[string]string{FileModel: strings.Repeat("ab", 32)}, sig); err != nil {
			t.Fatalf("a push signed with an accepted key fails verification: %v", err)
		}
	})
}

// FuzzArtifactLoad: the manifest of a fetched artifact (its sha256 matched
// the registry's metadata, which only a signature ties to the pusher) next
// to the bundled model and golden file: Load either returns the model the
// registry names (its version and sha256) or refuses with one of the
// sentinels, with a bounded error.
func FuzzArtifactLoad(f *testing.F) {
	read := func(name string) []byte {
		b, err := fs.ReadFile(models.Default(), "heart-xgb/"+name)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	modelBytes, golden, man := read("model.json"), read("golden.csv"), bundledManifest(f)
	f.Add(man)
	for _, edit := range [][2]string{
		{`"1.0.0"`, `"1.1.0"`}, {`"1.0.0"`, `"` + strings.Repeat("v", 3000) + `"`},
		{`"model.json"`, `"manifest.json"`}, {`"model.json"`, `"../model.json"`}, {`"model.json"`, `"golden.csv"`},
		{`"model_file"`, `"golden_file":"model.json","model_file"`}, {`"model_file"`, `"golden_file":"manifest.json","model_file"`},
		{`"threshold": 0.5`, `"threshold": NaN`}, {`"threshold": 0.5`, `"threshold": 1e999`}, {`"threshold": 0.5`, `"threshold": "0.5"`},
		{`"15c11c`, `"` + strings.Repeat("f", 3000)},
	} {
		f.Add(bytes.Replace(man, []byte(edit[0]), []byte(edit[1]), 1))
	}
	addHostile(f)
	sentinels := []error{ErrTampered, model.ErrManifest, model.ErrChecksum, model.ErrFormat, model.ErrFeatureMismatch,
		model.ErrUnsupportedBooster, model.ErrUnsupportedObjective, model.ErrCategorical}
	f.Fuzz(func(t *testing.T, manifest []byte) {
		a := &Artifact{Version: "1.0.0", SHA256: sha(modelBytes), Model: modelBytes, Manifest: manifest, Golden: golden}
		m, err := a.Load()
		if err != nil {
			if !slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			checkDecodeErr(t, err, manifest)
			return
		}
		if m.Version() != "1.0.0" || m.SHA256() != sha(modelBytes) {
			t.Fatalf("loaded version %q sha256 %s for version 1.0.0 sha256 %s", m.Version(), m.SHA256(), sha(modelBytes))
		}
		if p := m.Threshold(); !(p > 0 && p < 1) {
			t.Fatalf("loaded threshold %v", p)
		}
	})
}
