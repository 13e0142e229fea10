// Package models embeds the default model artifact into the binary so that
// cardiostream scores without any file on disk.
//
// The artifact directory heart-xgb/ is produced by training/train.py (see
// training/README.md) and is committed as generated: do not edit it by hand;
// re-run the script. heart-xgb-1.1.0/ (also generated) is not embedded: it is
// pushed to the model registry like any other version (see the README's
// "Model lifecycle"). heart-xgb/heldout.csv is the registry gates' evaluation set.
// Loading and checking belong to internal/model; this
// package only owns the bytes and must not import anything from this module.
package models
