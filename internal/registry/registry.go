package registry

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardiostream/cardiostream/internal/streams"
	"github.com/cardiostream/cardiostream/schemas"
)

// KV keys of the pointers bucket.
const (
	KeyActive      = "active"
	KeyShadow      = "shadow"
	versionsPrefix = "versions."
)

// File names inside <version>/ in the models bucket.
const (
	FileModel    = "model.json"
	FileManifest = "manifest.json"
	FileGolden   = "golden.csv"
)

// VersionKey is the KV key of a version's metadata.
func VersionKey(version string) string { return versionsPrefix + version }

// ObjectName is the object name of one file of a version.
func ObjectName(version, file string) string { return version + "/" + file }

// FileInfo describes one stored file.
type FileInfo struct {
	SHA256 string `json:"sha256"`
	Size   int    `json:"size"`
}

// Metrics are the manifest's held-out metrics, copied into the metadata.
type Metrics struct {
	HeldoutAUC      float64 `json:"heldout_auc"`
	HeldoutAccuracy float64 `json:"heldout_accuracy"`
	HeldoutBrier    float64 `json:"heldout_brier"`
	HeldoutRows     int     `json:"heldout_rows"`
	TrainRows       int     `json:"train_rows"`
}

// Version states.
const (
	StateUploading = "uploading" // metadata reserved, files being stored
	StateReady     = "ready"
)

// Metadata is the value of versions.<version>.
type Metadata struct {
	Version      string              `json:"version"`
	Name         string              `json:"name"`
	SHA256       string              `json:"sha256"` // of model.json
	Size         int                 `json:"size"`   // of model.json
	Files        map[string]FileInfo `json:"files"`
	FeatureNames []string            `json:"feature_names"`
	Threshold    float64             `json:"threshold"`
	Metrics      Metrics             `json:"metrics"`
	Signed       bool                `json:"signed"`
	Notes        string              `json:"notes,omitempty"`
	PushedBy     string              `json:"pushed_by"`
	PushedAt     time.Time           `json:"pushed_at"`
	State        string              `json:"state"`
}

// fileDigests returns name → sha256 of the artifact files (not the signature).
func (m *Metadata) fileDigests() map[string]string {
	out := make(map[string]string, len(m.Files))
	for n, f := range m.Files {
		if n == SignatureFile {
			continue
		}
		out[n] = f.SHA256
	}
	return out
}

// Pointer is the value of the active and shadow keys.
type Pointer struct {
	Version   string    `json:"version"`
	SHA256    string    `json:"sha256"`
	ChangedAt time.Time `json:"changed_at"`
	Actor     string    `json:"actor"`
	Reason    string    `json:"reason,omitempty"`
	Previous  string    `json:"previous,omitempty"` // the version active before (for rollback)
	Forced    bool      `json:"forced,omitempty"`
}

// Pointers is the registry's pointer state. Nil means none set. Revision is
// the highest KV revision the state reflects.
type Pointers struct {
	Active, Shadow *Pointer
	Revision       uint64
}

// Registry is a handle on the registry buckets and the audit stream. It is
// safe for concurrent use.
type Registry struct {
	cfg   Config
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	kvRaw jetstream.Stream // the KV bucket's stream, for delete markers
	obj   jetstream.ObjectStore
	subj  schemas.Subjects
	keys  []ed25519.PublicKey
	log   *slog.Logger
	now   func() time.Time

	evalMu  sync.Mutex
	evalSet *evalSet // the configured evaluation set, parsed once
}

// Open creates the buckets (and the AUDIT stream) when missing, idempotently,
// and returns a handle. Every process may call it at start-up.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config, log *slog.Logger) (*Registry, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("registry configuration: %w", err)
	}
	keys, err := parsePublicKeys(cfg.PublicKeys)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	storage := jetstream.FileStorage
	if cfg.Streams.Storage == "memory" {
		storage = jetstream.MemoryStorage
	}
	replicas := max(cfg.Streams.Replicas, 1)
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	kv, err := streams.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      cfg.PointersBucket,
		Description: "cardiostream model registry: versions.<version> metadata, active and shadow pointers",
		History:     64, // pointer history, also readable with `nats kv history`
		Storage:     storage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, err
	}
	kvRaw, err := js.Stream(ctx, "KV_"+cfg.PointersBucket)
	if err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", cfg.PointersBucket, err)
	}
	obj, err := ensureObjectStore(ctx, js, jetstream.ObjectStoreConfig{
		Bucket:      cfg.ModelsBucket,
		Description: "cardiostream model artifacts: <version>/model.json, manifest.json, golden.csv, signature",
		Storage:     storage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, err
	}
	// AUDIT is part of the shared topology; ensure it here too so that a
	// registry opened by a tool that did not run streams.Ensure still audits.
	for _, sc := range cfg.Streams.StreamConfigs() {
		if sc.Name == schemas.StreamAudit {
			if _, err := streams.EnsureStream(ctx, js, sc); err != nil {
				return nil, err
			}
		}
	}
	return &Registry{
		cfg: cfg, js: js, kv: kv, kvRaw: kvRaw, obj: obj, keys: keys,
		subj: cfg.Streams.Subjects(),
		log:  log.With("component", "registry"),
		now:  time.Now,
	}, nil
}

func ensureObjectStore(ctx context.Context, js jetstream.JetStream, want jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	obj, err := js.ObjectStore(ctx, want.Bucket)
	if err == nil {
		return obj, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("looking up object store %s: %w", want.Bucket, err)
	}
	obj, err = js.CreateObjectStore(ctx, want)
	if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.ObjectStore(ctx, want.Bucket) // created concurrently by another process
	}
	if err != nil {
		return nil, fmt.Errorf("creating object store %s: %w", want.Bucket, err)
	}
	return obj, nil
}

// Config returns the registry's configuration.
func (r *Registry) Config() Config { return r.cfg }

// SignaturesRequired reports whether Fetch refuses unsigned artifacts.
func (r *Registry) SignaturesRequired() bool { return r.cfg.signaturesRequired() }

// opCtx bounds one operation by the configured timeout.
func (r *Registry) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.cfg.Timeout)
}

// metadata reads versions.<version> with its revision.
func (r *Registry) metadata(ctx context.Context, version string) (*Metadata, uint64, error) {
	if err := ValidVersion(version); err != nil {
		return nil, 0, err
	}
	var e jetstream.KeyValueEntry
	err := r.retry(ctx, "reading version "+version, func(ctx context.Context) (err error) {
		e, err = r.kv.Get(ctx, VersionKey(version))
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("%w: %s (see `cardiostream model list`)", ErrNotFound, version)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading version %s: %w", version, err)
	}
	md, err := decodeMetadata(version, e.Value())
	if err != nil {
		return nil, 0, err
	}
	return md, e.Revision(), nil
}

// decodeMetadata decodes the value of versions.<version>. Anyone with write
// access to the bucket can put anything there: errors wrap ErrTampered and
// quote no more than a clipped prefix of the value.
func decodeMetadata(version string, data []byte) (*Metadata, error) {
	var md Metadata
	if err := json.Unmarshal(data, &md); err != nil {
		return nil, fmt.Errorf("%w: version %s metadata is not valid JSON: %s", ErrTampered, version, schemas.ErrorDetail(err))
	}
	return &md, nil
}

// pointer reads a pointer key; nil when unset or deleted.
func (r *Registry) pointer(ctx context.Context, key string) (*Pointer, uint64, error) {
	var e jetstream.KeyValueEntry
	err := r.retry(ctx, "reading pointer "+key, func(ctx context.Context) (err error) {
		e, err = r.kv.Get(ctx, key)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading pointer %s: %w", key, err)
	}
	p, err := decodePointer(e)
	return p, e.Revision(), err
}

func decodePointer(e jetstream.KeyValueEntry) (*Pointer, error) {
	if e.Operation() != jetstream.KeyValuePut || len(e.Value()) == 0 {
		return nil, nil
	}
	var p Pointer
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return nil, fmt.Errorf("pointer %s (revision %d) is not valid JSON: %s", e.Key(), e.Revision(), schemas.ErrorDetail(err))
	}
	return &p, nil
}

// Pointers returns the current active and shadow pointers.
func (r *Registry) Pointers(ctx context.Context) (Pointers, error) {
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	a, ra, err := r.pointer(ctx, KeyActive)
	if err != nil {
		return Pointers{}, err
	}
	s, rs, err := r.pointer(ctx, KeyShadow)
	if err != nil {
		return Pointers{}, err
	}
	return Pointers{Active: a, Shadow: s, Revision: max(ra, rs)}, nil
}

// VersionInfo is a version's metadata with its pointer status.
type VersionInfo struct {
	Metadata
	Active bool `json:"active"`
	Shadow bool `json:"shadow"`
}

// List returns every version, oldest push first.
func (r *Registry) List(ctx context.Context) ([]VersionInfo, error) {
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	var keys []string
	err := r.retry(ctx, "listing versions", func(actx context.Context) error {
		keys = keys[:0]
		lister, err := r.kv.ListKeysFiltered(actx, versionsPrefix+">")
		if err != nil {
			return err
		}
		for k := range lister.Keys() { // closed after the last key (or none)
			keys = append(keys, k)
		}
		_ = lister.Stop() // the listing ended; Stop only releases the subscription
		return actx.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing versions: %w", err)
	}
	ptrs, err := r.Pointers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]VersionInfo, 0, len(keys))
	for _, k := range keys {
		md, _, err := r.metadata(ctx, strings.TrimPrefix(k, versionsPrefix))
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r.info(*md, ptrs))
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].PushedAt.Equal(out[j].PushedAt) {
			return out[i].PushedAt.Before(out[j].PushedAt)
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// Show returns one version's metadata and pointer status.
func (r *Registry) Show(ctx context.Context, version string) (*VersionInfo, error) {
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	md, _, err := r.metadata(ctx, version)
	if err != nil {
		return nil, err
	}
	ptrs, err := r.Pointers(ctx)
	if err != nil {
		return nil, err
	}
	vi := r.info(*md, ptrs)
	return &vi, nil
}

func (r *Registry) info(md Metadata, p Pointers) VersionInfo {
	return VersionInfo{
		Metadata: md,
		Active:   p.Active != nil && p.Active.Version == md.Version,
		Shadow:   p.Shadow != nil && p.Shadow.Version == md.Version,
	}
}
