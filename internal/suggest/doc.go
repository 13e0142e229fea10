// Package suggest finds the known name closest to a mistyped one, for
// "did you mean …?" hints in configuration and validation errors. It imports
// nothing of cardiostream, so schemas may use it.
package suggest
