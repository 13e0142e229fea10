//go:build !race

package registry_test

const raceBuild = false
