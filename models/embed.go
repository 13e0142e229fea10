package models

import (
	"embed"
	"io/fs"
)

// DefaultDir is the directory of the default artifact inside Default().
const DefaultDir = "heart-xgb"

//go:embed heart-xgb/manifest.json heart-xgb/model.json heart-xgb/golden.csv heart-xgb/heldout.csv
var defaultFS embed.FS // read-only; unexported so no caller can swap it

// Default returns the embedded file system holding DefaultDir.
func Default() fs.FS { return defaultFS }
