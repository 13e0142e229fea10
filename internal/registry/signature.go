package registry

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// SignatureFile is the object (inside <version>/) holding the signature.
const SignatureFile = "signature"

// signatureDomain starts the signed message, so a signature over an
// artifact can never be mistaken for a signature over anything else.
const signatureDomain = "cardiostream-model-artifact-v1"

// CanonicalDigest is the message an artifact signature covers:
//
//	cardiostream-model-artifact-v1\n
//	version <version>\n
//	file <name> <sha256 hex>\n     (one line per file, sorted by name)
//
// over every file of the artifact (model.json, manifest.json and golden.csv
// when shipped), so a signature covers the trees, the manifest (threshold,
// features) and the golden values, and is bound to the version name.
func CanonicalDigest(version string, files map[string]string) []byte {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	b.WriteString(signatureDomain + "\n")
	b.WriteString("version " + version + "\n")
	for _, n := range names {
		fmt.Fprintf(&b, "file %s %s\n", n, strings.ToLower(files[n]))
	}
	return b.Bytes()
}

// Sign returns the base64 ed25519 signature of the canonical digest.
func Sign(key ed25519.PrivateKey, version string, files map[string]string) []byte {
	sig := ed25519.Sign(key, CanonicalDigest(version, files))
	return []byte(base64.StdEncoding.EncodeToString(sig))
}

// verifySignature checks sig (base64) against any of keys.
func verifySignature(keys []ed25519.PublicKey, version string, files map[string]string, sig []byte) error {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sig)))
	if err != nil || len(raw) != ed25519.SignatureSize {
		return fmt.Errorf("%w: the signature object is not a base64 ed25519 signature", ErrBadSignature)
	}
	msg := CanonicalDigest(version, files)
	for _, k := range keys {
		if ed25519.Verify(k, msg, raw) {
			return nil
		}
	}
	return fmt.Errorf("%w: it verifies against none of the %d configured public keys", ErrBadSignature, len(keys))
}

// parsePublicKey reads base64 of the 32 raw bytes or a PEM PUBLIC KEY block.
// Errors never quote the key.
func parsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "-----BEGIN") {
		blk, _ := pem.Decode([]byte(s))
		if blk == nil {
			return nil, errors.New("not a valid PEM block")
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, errors.New("PEM block is not a PKIX public key")
		}
		pk, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, errors.New("PEM public key is not ed25519")
		}
		return pk, nil
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("not base64 of a %d-byte ed25519 public key nor a PEM PUBLIC KEY block", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

func parsePublicKeys(keys []string) ([]ed25519.PublicKey, error) {
	out := make([]ed25519.PublicKey, 0, len(keys))
	for i, k := range keys {
		pk, err := parsePublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("registry.public_keys[%d]: %v", i, err)
		}
		out = append(out, pk)
	}
	return out, nil
}

// ReadPrivateKey reads an ed25519 private key file: a PEM "PRIVATE KEY"
// (PKCS #8, as written by `openssl genpkey -algorithm ed25519`), or base64
// of the 32-byte seed or the 64-byte key. Errors never quote the file.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	return parsePrivateKey(path, data)
}

// parsePrivateKey decodes the contents of the signing key file path (see
// ReadPrivateKey). A 64-byte key must hold the public key of its seed:
// ed25519 signs with the public half as given, so a key whose halves
// disagree makes signatures that verify against no key, and signing with a
// mismatched public half can reveal the seed.
func parsePrivateKey(path string, data []byte) (ed25519.PrivateKey, error) {
	s := strings.TrimSpace(string(data))
	if strings.HasPrefix(s, "-----BEGIN") {
		blk, _ := pem.Decode([]byte(s))
		if blk == nil {
			return nil, fmt.Errorf("signing key %s: not a valid PEM block", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: PEM block is not a PKCS #8 private key", path)
		}
		pk, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("signing key %s: not an ed25519 key", path)
		}
		return pk, nil
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	switch {
	case err == nil && len(raw) == ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case err == nil && len(raw) == ed25519.PrivateKeySize:
		if !ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize]).Equal(ed25519.PrivateKey(raw)) {
			return nil, fmt.Errorf("signing key %s: the 64-byte key's public half is not the public key of its seed", path)
		}
		return ed25519.PrivateKey(raw), nil
	}
	return nil, fmt.Errorf("signing key %s: want a PEM PKCS #8 ed25519 key or base64 of a 32-byte seed", path)
}

// PublicKeyBase64 returns the base64 public key of priv, as public_keys takes it.
func PublicKeyBase64(priv ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
}
