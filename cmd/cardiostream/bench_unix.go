//go:build unix

package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// selfCPU is this process's CPU time so far (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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

// vmHWMMB is a running process's peak RSS from /proc/<pid>/status (Linux),
// or 0 when it cannot be read.
func vmHWMMB(pid int) float64 {
	return float64(int64(float64(procStatusBytes(pid, "VmHWM:"))/(1<<20)*10+0.5)) / 10
}

// procStatusBytes reads a kB line (VmHWM:, VmRSS:, ...) of
// /proc/<pid>/status in bytes, or 0 when it cannot be read.
func procStatusBytes(pid int, key string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
