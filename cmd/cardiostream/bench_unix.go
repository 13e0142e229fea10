//go:build unix

package main

import (
	"os"
	"runtime"
	"syscall"
)

// usageOf returns a finished process's CPU time and peak RSS.
func usageOf(ps *os.ProcessState) childUsage {
	if ps == nil {
		return childUsage{}
	}
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return childUsage{}
	}
	return childUsage{cpu: ps.UserTime() + ps.SystemTime(), maxRSSMB: maxRSSMB(ru.Maxrss)}
}

// selfPeakRSSMB is this process's peak RSS.
func selfPeakRSSMB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return maxRSSMB(ru.Maxrss)
}

// maxRSSMB converts ru_maxrss (KiB on Linux, bytes on macOS) to MB.
func maxRSSMB(v int64) float64 {
	kib := float64(v)
	if runtime.GOOS == "darwin" {
		kib /= 1024
	}
	return float64(int64(kib/1024*10+0.5)) / 10
}
