package registry

import (
	"errors"
	"strings"
)

// Sentinel errors; match with errors.Is.
var (
	// ErrNotFound: the version (or a file of it) is not in the registry.
	ErrNotFound = errors.New("registry: version not found")
	// ErrVersionExists: a different artifact is already stored under the version.
	ErrVersionExists = errors.New("registry: version already exists with a different artifact")
	// ErrTampered: a stored file's sha256 differs from the registry metadata,
	// or the artifact is unreadable.
	ErrTampered = errors.New("registry: artifact does not match the registry (tampered or corrupt)")
	// ErrUnsigned: signatures are required and the artifact has none.
	ErrUnsigned = errors.New("registry: artifact is not signed")
	// ErrBadSignature: the artifact's signature verifies against no configured key.
	ErrBadSignature = errors.New("registry: artifact signature is invalid")
	// ErrGateRefused: a validation gate failed; see GateError for the checks.
	ErrGateRefused = errors.New("registry: validation gates refused the version")
	// ErrForceRefused: --force was asked for in production.
	ErrForceRefused = errors.New("registry: force is refused in production")
	// ErrConflict: the pointer changed concurrently and the update was not applied.
	ErrConflict = errors.New("registry: pointer changed concurrently")
	// ErrNoPrevious: rollback without --to and no previously active version.
	ErrNoPrevious = errors.New("registry: no previous version to roll back to")
	// ErrInvalidArtifact: the artifact to push is incomplete or inconsistent.
	ErrInvalidArtifact = errors.New("registry: invalid artifact")
	// ErrInvalidVersion: the version string is not usable as a KV key token.
	ErrInvalidVersion = errors.New("registry: invalid version")
	// ErrIncomplete: the version's push did not finish (files not all stored).
	ErrIncomplete = errors.New("registry: version push is incomplete")
)

// GateError lists the failed gate checks, one line each.
type GateError struct {
	Version string
	Failed  []Check
}

func (e *GateError) Error() string {
	lines := make([]string, 0, len(e.Failed)+1)
	lines = append(lines, "validation gates refused version "+e.Version+":")
	for _, c := range e.Failed {
		lines = append(lines, "  "+c.String())
	}
	return strings.Join(lines, "\n")
}

// Unwrap makes errors.Is(err, ErrGateRefused) true.
func (e *GateError) Unwrap() error { return ErrGateRefused }
