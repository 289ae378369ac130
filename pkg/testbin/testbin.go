package testbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// prefix starts the name of every directory Build makes; the pid of the
// test binary follows, so that one whose test binary is gone (and did not
// call Cleanup) can be told and removed.
const prefix = "gobucardo-testbin-"

// build is one set of packages built once.
type build struct {
	once sync.Once
	dir  string
	err  error
}

var builds struct {
	mu   sync.Mutex
	sets map[string]*build // by flags and packages
	dirs []string
}

// Build builds pkgs (import paths, or patterns such as
// "github.com/gobucardo/gobucardo/cmd/..."), once per test binary, and
// returns the directory holding the binaries, each named after the last
// element of its package path. Callers must not change the files: copy one
// to change it.
func Build(tb testing.TB, pkgs ...string) string {
	tb.Helper()
	return get(tb, nil, pkgs)
}

// BuildRace is Build with -race when this test binary runs with the race
// detector, so that the programs it starts are checked too.
func BuildRace(tb testing.TB, pkgs ...string) string {
	tb.Helper()
	var flags []string
	if raceEnabled {
		flags = []string{"-race"}
	}
	return get(tb, flags, pkgs)
}

func get(tb testing.TB, flags, pkgs []string) string {
	tb.Helper()
	if len(pkgs) == 0 {
		tb.Fatal("testbin: no package to build")
	}
	key := strings.Join(append(append([]string{}, flags...), pkgs...), "\x00")
	builds.mu.Lock()
	if builds.sets == nil {
		builds.sets = map[string]*build{}
	}
	b := builds.sets[key]
	if b == nil {
		b = &build{}
		builds.sets[key] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() { b.dir, b.err = run(flags, pkgs) })
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.dir
}

func run(flags, pkgs []string) (string, error) {
	sweep.Do(func() { removeStale(os.TempDir()) })
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", prefix, os.Getpid()))
	if err != nil {
		return "", fmt.Errorf("testbin: %w", err)
	}
	builds.mu.Lock()
	builds.dirs = append(builds.dirs, dir)
	builds.mu.Unlock()
	args := append(append([]string{"build", "-o", dir + "/"}, flags...), pkgs...)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("testbin: go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return dir, nil
}

var sweep sync.Once

// removeStale removes the directories in tmp left by test binaries that
// have exited without calling Cleanup.
func removeStale(tmp string) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, prefix+"*"))
	for _, d := range dirs {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), prefix), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

// Cleanup removes the directories of every Build so far. Call it from
// TestMain once m.Run has returned.
func Cleanup() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	for _, d := range builds.dirs {
		_ = os.RemoveAll(d)
	}
	builds.dirs = nil
	builds.sets = nil
}
