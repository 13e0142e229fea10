package registry

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/jsretry"
	"github.com/cardiostream/cardiostream/internal/model"
	"github.com/cardiostream/cardiostream/schemas"
)

// maxArtifactFile bounds one artifact file read from disk.
const maxArtifactFile = 64 << 20

// LocalArtifact is an artifact read from disk, ready to push.
type LocalArtifact struct {
	Model, Manifest, Golden []byte // Golden may be nil
}

// ReadArtifact reads an artifact directory (or its manifest.json): the
// manifest, the model file it names and, when present, its golden file.
func ReadArtifact(path string) (*LocalArtifact, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v; pass the artifact directory (e.g. models/heart-xgb) or its manifest.json", ErrInvalidArtifact, err)
	}
	dir, manifestPath := path, filepath.Join(path, model.ManifestFile)
	if !st.IsDir() {
		dir, manifestPath = filepath.Dir(path), path
	}
	read := func(p string) ([]byte, error) {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if st.Size() > maxArtifactFile {
			return nil, fmt.Errorf("%s is larger than %d bytes", p, maxArtifactFile)
		}
		return os.ReadFile(p)
	}
	man, err := read(manifestPath)
	if err != nil {
		return nil, fmt.Errorf("%w: reading manifest: %v", ErrInvalidArtifact, err)
	}
	m, err := parseArtifactManifest(manifestPath, man)
	if err != nil {
		return nil, err
	}
	a := &LocalArtifact{Manifest: man}
	if a.Model, err = read(filepath.Join(dir, m.ModelFile)); err != nil {
		return nil, fmt.Errorf("%w: reading model file: %v", ErrInvalidArtifact, err)
	}
	golden := m.GoldenFile
	if golden == "" {
		golden = FileGolden
	}
	if filepath.Base(golden) == golden {
		switch b, err := read(filepath.Join(dir, golden)); {
		case err == nil:
			a.Golden = b
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("%w: reading golden file: %v", ErrInvalidArtifact, err)
		}
	}
	return a, nil
}

// parseArtifactManifest decodes the manifest read from manifestPath far
// enough to find the artifact's other files: model_file must be a plain file
// name. Errors wrap ErrInvalidArtifact and quote only clipped values.
func parseArtifactManifest(manifestPath string, data []byte) (model.Manifest, error) {
	var m model.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return model.Manifest{}, fmt.Errorf("%w: %s is not a valid manifest: %s", ErrInvalidArtifact, manifestPath, schemas.ErrorDetail(err))
	}
	if m.ModelFile == "" || m.ModelFile == "." || m.ModelFile == ".." || filepath.Base(m.ModelFile) != m.ModelFile {
		return model.Manifest{}, fmt.Errorf("%w: %s: model_file %s must be a plain file name", ErrInvalidArtifact, manifestPath, schemas.Quote(m.ModelFile))
	}
	return m, nil
}

// checkManifest decodes a's manifest for a push under version: the manifest
// must name the same version and the model file's sha256. It returns the
// manifest and the model's sha256. Errors wrap ErrInvalidArtifact and quote
// only clipped values.
func checkManifest(a *LocalArtifact, version string) (model.Manifest, string, error) {
	var man model.Manifest
	if err := json.Unmarshal(a.Manifest, &man); err != nil {
		return model.Manifest{}, "", fmt.Errorf("%w: manifest.json is not valid JSON: %s", ErrInvalidArtifact, schemas.ErrorDetail(err))
	}
	if man.Version != version {
		v := schemas.Quote(man.Version)
		return model.Manifest{}, "", fmt.Errorf("%w: --version %s but the manifest says version %s; predictions name the manifest's version, so they must agree (retrain or pass --version %s)",
			ErrInvalidArtifact, version, v, v)
	}
	modelSHA := sha(a.Model)
	if !strings.EqualFold(modelSHA, man.ModelSHA256) {
		return model.Manifest{}, "", fmt.Errorf("%w: the model file's sha256 is %s but the manifest says %s", ErrInvalidArtifact, modelSHA, schemas.Quote(man.ModelSHA256))
	}
	return man, modelSHA, nil
}

// PushOptions describe one push.
type PushOptions struct {
	Version string
	Notes   string
	Actor   string
	// SignKey, when set, signs the artifact (the signature is stored with it).
	SignKey ed25519.PrivateKey
}

// PushResult says what Push did.
type PushResult struct {
	Metadata Metadata
	// Created is false when the same artifact was already stored (no-op).
	Created bool
	// Signed is true when this push added a signature.
	Signed bool
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Push stores an artifact under opts.Version. The version must equal the
// manifest's (predictions name the manifest's version, so the two must not
// disagree). Pushing the same artifact again is a no-op (it may add a
// signature to an unsigned version); a different one is ErrVersionExists.
func (r *Registry) Push(ctx context.Context, a *LocalArtifact, opts PushOptions) (*PushResult, error) {
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	if err := ValidVersion(opts.Version); err != nil {
		return nil, err
	}
	man, modelSHA, err := checkManifest(a, opts.Version)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{FileModel: a.Model, FileManifest: a.Manifest}
	if a.Golden != nil {
		files[FileGolden] = a.Golden
	}
	md := Metadata{
		Version: opts.Version, Name: man.Name, SHA256: modelSHA, Size: len(a.Model),
		Files: map[string]FileInfo{}, FeatureNames: man.FeatureNames, Threshold: man.Threshold,
		Metrics: Metrics{
			HeldoutAUC: man.Metrics.HeldoutAUC, HeldoutAccuracy: man.Metrics.HeldoutAccuracy,
			HeldoutBrier: man.Metrics.HeldoutBrier, HeldoutRows: man.Metrics.HeldoutRows, TrainRows: man.Metrics.TrainRows,
		},
		Notes: opts.Notes, PushedBy: opts.Actor, PushedAt: r.now().UTC(), State: StateUploading,
	}
	for n, b := range files {
		md.Files[n] = FileInfo{SHA256: sha(b), Size: len(b)}
	}
	var sig []byte
	if opts.SignKey != nil {
		sig = Sign(opts.SignKey, opts.Version, md.fileDigests())
		files[SignatureFile] = sig
		md.Files[SignatureFile] = FileInfo{SHA256: sha(sig), Size: len(sig)}
		md.Signed = true
	}

	key := VersionKey(opts.Version)
	// An attempt that landed without its answer makes the next one find the
	// key: the push then resumes below as an interrupted one.
	var rev uint64
	err = r.retry(ctx, "registering version "+opts.Version, func(ctx context.Context) (err error) {
		rev, err = r.kv.Create(ctx, key, mustJSON(md))
		return err
	})
	created := err == nil
	if errors.Is(err, jetstream.ErrKeyExists) {
		have, haveRev, gerr := r.metadata(ctx, opts.Version)
		if gerr != nil {
			return nil, gerr
		}
		if !maps.Equal(have.fileDigests(), md.fileDigests()) {
			return nil, fmt.Errorf("%w: %s is stored with model sha256 %s (pushed by %s at %s); push the new artifact under a new version",
				ErrVersionExists, opts.Version, have.SHA256, have.PushedBy, have.PushedAt.Format("2006-01-02T15:04:05Z"))
		}
		addSig := sig != nil && !have.Signed
		if have.State == StateReady && !addSig {
			return &PushResult{Metadata: *have}, nil
		}
		// Resume an interrupted push, or add a signature: keep the original
		// push record, store the files, then mark the version ready.
		if !addSig {
			files, sig = withoutSignature(files), nil
		} else {
			have.Files[SignatureFile] = md.Files[SignatureFile]
			have.Signed = true
		}
		md, rev, created = *have, haveRev, have.State != StateReady
	} else if err != nil {
		return nil, fmt.Errorf("registering version %s: %w", opts.Version, err)
	}
	for n, b := range files {
		err := r.retryIf(ctx, "storing "+ObjectName(opts.Version, n), r.cfg.Timeout, jsretry.Transient, func(ctx context.Context) error {
			_, err := r.obj.PutBytes(ctx, ObjectName(opts.Version, n), b) // a put replaces the object: repeats safely
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("storing %s of version %s: %w", n, opts.Version, err)
		}
	}
	md.State = StateReady
	err = r.retryUnanswered(ctx, "marking version "+opts.Version+" ready", func(ctx context.Context) error {
		_, err := r.kv.Update(ctx, key, mustJSON(md), rev)
		return err
	})
	if err != nil && jsretry.Transient(ctx, err) {
		// The answer may be what was lost: read the version back, and go on
		// to audit the push if the update landed.
		if have, _, gerr := r.metadata(ctx, opts.Version); gerr == nil && landedReady(have, &md) {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: marking version %s ready: %v", ErrConflict, opts.Version, err)
	}
	details := []string{fmt.Sprintf("files %d, model size %d", len(md.fileDigests()), md.Size)}
	if sig != nil {
		details = append(details, "signed")
	}
	if created || sig != nil {
		if err := r.Audit(ctx, schemas.AuditEntry{
			Action: schemas.AuditPush, Actor: opts.Actor, At: r.now().UTC(), ToVersion: opts.Version,
			SHA256: md.SHA256, Reason: opts.Notes, Details: details,
		}); err != nil {
			return nil, err
		}
	}
	return &PushResult{Metadata: md, Created: created, Signed: sig != nil}, nil
}

// landedReady reports whether have is want marked ready: the update that
// marks a push ready landed although its answer was lost.
func landedReady(have, want *Metadata) bool {
	return have.State == StateReady && have.Signed == want.Signed && have.PushedAt.Equal(want.PushedAt) &&
		maps.Equal(have.Files, want.Files)
}

func withoutSignature(files map[string][]byte) map[string][]byte {
	out := maps.Clone(files)
	delete(out, SignatureFile)
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("registry: encoding %T: %v", v, err)) // plain structs of strings and numbers
	}
	return b
}
