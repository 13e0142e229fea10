// Package registry is cardiostream's model registry, kept in JetStream itself
// so that every process of a cluster sees the same truth:
//
//   - Object Store bucket CARDIO_MODELS holds the artifacts:
//     <version>/model.json, <version>/manifest.json, <version>/golden.csv
//     (when shipped) and <version>/signature (optional ed25519 signature).
//   - KV bucket CARDIO_MODEL_REGISTRY holds versions.<version> (Metadata:
//     checksums and sizes of every file, features, the manifest's metrics,
//     notes, who pushed it and when), and the pointers active and shadow
//     (Pointer). Pointer changes are compare-and-set on the key's revision,
//     so two operators changing the same pointer cannot both win silently.
//   - Stream AUDIT (created by internal/streams) holds one
//     schemas.AuditEntry per action on <prefix>.audit.model.<action>.
//
// A version is pushed once: the same artifact again is a no-op, a different
// one under an existing version is refused (ErrVersionExists). Before a
// version becomes active or shadow it passes the validation gates (gates.go):
// it loads with internal/model, its features are schemas.FeatureNames in
// order, its golden predictions (when shipped) reproduce within 1e-6, and it
// reaches the configured accuracy, AUC and Brier floors on the bundled
// held-out evaluation set models/heart-xgb/heldout.csv (never used in
// training; see training/train.py). Force bypasses failed gates, is recorded
// (forced=true) and is refused in production.
//
// Fetch downloads an artifact and verifies every file's sha256 against the
// registry's metadata (ErrTampered) and, when public keys are configured, its
// ed25519 signature (ErrBadSignature; ErrUnsigned when signatures are
// required). The signed message is the canonical digest described in
// signature.go. Keys are never logged.
//
// On a cluster a bucket's stream can be without a leader for seconds (about
// 10 s after its leader's node is killed): requests that find no responder
// or no answer are retried with backoff within Config.Timeout (retry.go); a
// pointer write whose answer was lost is read back, so a change that landed
// is audited once and not made twice.
//
// This package imports internal/model, internal/streams, models and schemas;
// it must not import scorer, monitor, ingest, config or cmd. It does not log
// secrets or patient data.
package registry
