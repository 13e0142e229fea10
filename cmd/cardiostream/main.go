package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
)

func main() { os.Exit(run()) }

// run turns signals into a context and executes the command line; its result
// is the process exit code.
func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if path := os.Getenv("CARDIOSTREAM_CPUPROFILE"); path != "" {
		// A CPU profile of the whole process, for `go tool pprof`: how
		// BENCHMARKS.md profiles the children that bench starts ("%p" in
		// the path becomes the process id, so each child has its own).
		path = strings.ReplaceAll(path, "%p", strconv.Itoa(os.Getpid()))
		if stopProfile, err := startCPUProfile(path); err != nil {
			fmt.Fprintf(os.Stderr, "CARDIOSTREAM_CPUPROFILE: %v; running without a profile\n", err)
		} else {
			defer stopProfile()
		}
	}
	return execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// startCPUProfile starts writing a CPU profile to path; the returned
// function stops it and closes the file.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
