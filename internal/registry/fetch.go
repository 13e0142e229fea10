package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing/fstest"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/jsretry"
	"github.com/cardiostream/cardiostream/internal/model"
	"github.com/cardiostream/cardiostream/schemas"
)

// Artifact is a version's files, verified against the registry.
type Artifact struct {
	Version string
	SHA256  string // of Model
	Model   []byte
	// Manifest and Golden (nil when not shipped) as stored.
	Manifest []byte
	Golden   []byte
	// Signed reports whether a signature was present and verified.
	Signed bool
}

// Fetch downloads a version and verifies every file's sha256 against the
// registry metadata, and the signature when public keys are configured.
// Errors wrap ErrNotFound, ErrIncomplete, ErrTampered, ErrUnsigned or
// ErrBadSignature.
func (r *Registry) Fetch(ctx context.Context, version string) (*Artifact, error) {
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	md, _, err := r.metadata(ctx, version)
	if err != nil {
		return nil, err
	}
	if md.State != StateReady {
		return nil, fmt.Errorf("%w: version %s (state %q); push it again to finish", ErrIncomplete, version, md.State)
	}
	got := map[string][]byte{}
	for name, want := range md.Files {
		var b []byte
		err := r.retryIf(ctx, "reading "+ObjectName(version, name), readAttemptTimeout, jsretry.Transient, func(ctx context.Context) (err error) {
			b, err = r.obj.GetBytes(ctx, ObjectName(version, name))
			return err
		})
		switch {
		case errors.Is(err, jetstream.ErrObjectNotFound):
			return nil, fmt.Errorf("%w: version %s: %s is missing from %s", ErrTampered, version, name, r.cfg.ModelsBucket)
		case errors.Is(err, jetstream.ErrDigestMismatch):
			return nil, fmt.Errorf("%w: version %s: %s is corrupt in %s (object digest mismatch)", ErrTampered, version, name, r.cfg.ModelsBucket)
		case err != nil:
			return nil, fmt.Errorf("reading %s of version %s: %w", name, version, err)
		}
		if s := sha(b); !strings.EqualFold(s, want.SHA256) {
			return nil, fmt.Errorf("%w: version %s: %s has sha256 %s, the registry recorded %s", ErrTampered, version, name, s, want.SHA256)
		}
		got[name] = b
	}
	if !strings.EqualFold(md.Files[FileModel].SHA256, md.SHA256) || got[FileModel] == nil || got[FileManifest] == nil {
		return nil, fmt.Errorf("%w: version %s metadata is inconsistent (model or manifest missing)", ErrTampered, version)
	}
	a := &Artifact{Version: version, SHA256: strings.ToLower(md.SHA256), Model: got[FileModel], Manifest: got[FileManifest], Golden: got[FileGolden]}
	if len(r.keys) > 0 {
		sig, ok := got[SignatureFile]
		switch {
		case ok:
			if err := verifySignature(r.keys, version, md.fileDigests(), sig); err != nil {
				return nil, fmt.Errorf("version %s: %w", version, err)
			}
			a.Signed = true
		case r.cfg.signaturesRequired():
			return nil, fmt.Errorf("%w: version %s has no signature and production requires one when registry.public_keys is set (push it with --sign-key)", ErrUnsigned, version)
		}
	}
	return a, nil
}

// FS returns the artifact as a file system laid out as the manifest names
// its files, for internal/model.
func (a *Artifact) FS() (fstest.MapFS, error) {
	var man model.Manifest
	if err := json.Unmarshal(a.Manifest, &man); err != nil {
		return nil, fmt.Errorf("%w: version %s: manifest: %s", model.ErrManifest, a.Version, schemas.ErrorDetail(err))
	}
	fsys := fstest.MapFS{model.ManifestFile: {Data: a.Manifest}}
	if man.ModelFile != "" && man.ModelFile != model.ManifestFile {
		fsys[man.ModelFile] = &fstest.MapFile{Data: a.Model}
	}
	golden := man.GoldenFile
	if golden == "" {
		golden = FileGolden
	}
	if a.Golden != nil && golden != model.ManifestFile && golden != man.ModelFile {
		fsys[golden] = &fstest.MapFile{Data: a.Golden}
	}
	return fsys, nil
}

// Load loads the artifact with internal/model (which checks the model's
// sha256 against the manifest) and checks that sha256 against the registry's.
func (a *Artifact) Load() (*model.Model, error) {
	fsys, err := a.FS()
	if err != nil {
		return nil, err
	}
	m, err := model.LoadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("version %s: %w", a.Version, err)
	}
	if m.SHA256() != strings.ToLower(a.SHA256) {
		return nil, fmt.Errorf("%w: version %s: loaded model sha256 %s, registry %s", ErrTampered, a.Version, m.SHA256(), a.SHA256)
	}
	if m.Version() != a.Version {
		return nil, fmt.Errorf("%w: version %s: the manifest says version %s", ErrTampered, a.Version, schemas.Quote(m.Version()))
	}
	return m, nil
}
