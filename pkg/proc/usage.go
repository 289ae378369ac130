package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is sysconf(_SC_CLK_TCK), 100 on every Linux platform Go supports.
const clockTicks = 100

// Usage returns the CPU time (user and system) and resident set size in bytes of process pid, from
// /proc/<pid>/stat and /proc/<pid>/statm.
func Usage(pid int) (cpu time.Duration, rss int64, err error) {
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("usage pid %d: %w", pid, err)
	}
	statm, err := os.ReadFile(dir + "/statm")
	if err != nil {
		return 0, 0, fmt.Errorf("usage pid %d: %w", pid, err)
	}
	if cpu, err = parseStat(stat); err != nil {
		return 0, 0, fmt.Errorf("usage pid %d: %w", pid, err)
	}
	pages, err := parseStatm(statm)
	if err != nil {
		return 0, 0, fmt.Errorf("usage pid %d: %w", pid, err)
	}
	return cpu, pages * int64(os.Getpagesize()), nil
}

// parseStat returns utime+stime of a /proc/<pid>/stat line: "pid (comm) state ppid ... utime stime ...".
func parseStat(b []byte) (time.Duration, error) {
	// comm may contain spaces and parentheses; the fields after it follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("stat: no ')'")
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after comm, want at least 13", len(f))
	}
	// f[0] is field 3 (state), so utime (14) and stime (15) are f[11] and f[12].
	utime, err := strconv.ParseInt(string(f[11]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat: utime: %w", err)
	}
	stime, err := strconv.ParseInt(string(f[12]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat: stime: %w", err)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// parseStatm returns the resident pages of a /proc/<pid>/statm line: "size resident shared ...".
func parseStatm(b []byte) (int64, error) {
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, fmt.Errorf("statm: %d fields, want at least 2", len(f))
	}
	n, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("statm: resident: %w", err)
	}
	return n, nil
}
