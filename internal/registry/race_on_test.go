//go:build race

package registry_test

// raceBuild: the test binary is built with the race detector.
const raceBuild = true
