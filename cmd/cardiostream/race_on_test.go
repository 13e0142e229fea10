//go:build race

package main

// raceBuild: the race detector slows the re-executed child processes 5-10×.
const raceBuild = true
