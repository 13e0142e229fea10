//go:build !unix

package main

import (
	"os"
	"time"
)

// usageOf returns a finished process's CPU time; peak RSS is not available here.
func usageOf(ps *os.ProcessState) childUsage {
	if ps == nil {
		return childUsage{}
	}
	return childUsage{cpu: ps.UserTime() + ps.SystemTime()}
}

func selfPeakRSSMB() float64 { return 0 }

func selfCPU() time.Duration { return 0 }

func vmHWMMB(int) float64 { return 0 }

func procStatusBytes(int, string) int64 { return 0 }
