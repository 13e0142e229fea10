package config

import (
	"errors"
	"sort"
	"strings"
)

// Sentinel errors; every Problem wraps one, and the error Load or Validate
// returns matches each of its problems' sentinels with errors.Is.
var (
	// ErrUnknownEnvironment: the environment is not development, staging or production.
	ErrUnknownEnvironment = errors.New("unknown environment")
	// ErrUnknownKey: a file, variable or flag names a key that does not exist.
	ErrUnknownKey = errors.New("unknown configuration key")
	// ErrBadValue: a value cannot be converted to its key's type.
	ErrBadValue = errors.New("bad configuration value")
	// ErrConflict: two sources disagree in a way no precedence settles.
	ErrConflict = errors.New("conflicting configuration")
	// ErrInvalid: the configuration loaded but fails validation.
	ErrInvalid = errors.New("invalid configuration")
)

// Problem is one thing wrong with the configuration, about one key.
type Problem struct {
	// Key is the koanf path ("scorer.batch_size"); empty for problems about
	// the configuration as a whole.
	Key string
	// Message says what is wrong and what is allowed.
	Message string
	kind    error
}

// Error is "key: message".
func (p Problem) Error() string {
	if p.Key == "" {
		return p.Message
	}
	return p.Key + ": " + p.Message
}

// Unwrap returns the problem's sentinel.
func (p Problem) Unwrap() error { return p.kind }

// Problems is every problem found, one per line in Error, sorted by key.
type Problems []Problem

// Error joins the problems, one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is and errors.As see every problem.
func (ps Problems) Unwrap() []error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errs
}

// problems collects Problems.
type problems struct{ list Problems }

func (ps *problems) add(kind error, key, msg string) {
	ps.list = append(ps.list, Problem{Key: key, Message: msg, kind: kind})
}

// addComponent splits a component's (possibly joined) validation error into
// one problem per line, making sure each names its key under section.
func (ps *problems) addComponent(section string, err error) {
	if err == nil {
		return
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		key, msg := section, line
		if k, m, ok := strings.Cut(line, ": "); ok && !strings.ContainsAny(k, " \t\"'") {
			key, msg = k, m
			if key != section && !strings.HasPrefix(key, section+".") {
				key = section + "." + key
			}
		}
		ps.add(ErrInvalid, key, msg)
	}
}

// err returns the problems sorted by key (stable: a key's problems keep their
// order), with exact duplicates removed, or nil when there are none.
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	sort.SliceStable(ps.list, func(i, j int) bool { return ps.list[i].Key < ps.list[j].Key })
	out := ps.list[:0:0]
	seen := make(map[string]bool, len(ps.list))
	for _, p := range ps.list {
		if line := p.Error(); !seen[line] {
			seen[line] = true
			out = append(out, p)
		}
	}
	return out
}
