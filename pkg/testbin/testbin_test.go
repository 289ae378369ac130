package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	m.Run()
	Cleanup()
}

const hello = "github.com/gobucardo/gobucardo/pkg/testbin/testdata/hello"

// TestBuild: a package is built once, the binary runs, and a second call
// gets the same directory without building again.
func TestBuild(t *testing.T) {
	dir := Build(t, hello)
	out, err := exec.Command(filepath.Join(dir, "hello")).Output()
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("hello: %q %v", out, err)
	}
	if again := Build(t, hello); again != dir {
		t.Errorf("second Build: %s, want %s", again, dir)
	}
	if race := BuildRace(t, hello); (race == dir) == raceEnabled {
		t.Errorf("BuildRace shares Build's directory: %v, race detector on: %v", race == dir, raceEnabled)
	}
}

// TestBuildFails: a package that does not build gives the compiler's
// output.
func TestBuildFails(t *testing.T) {
	_, err := run(nil, []string{hello + "/nonexistent"})
	if err == nil || !strings.Contains(err.Error(), "go build") || !strings.Contains(err.Error(), "nonexistent") {
		t.Fatalf("error %v", err)
	}
}

// TestRemoveStale: a directory of a test binary that has exited is
// removed; those of live processes, this one included, and other files
// stay.
func TestRemoveStale(t *testing.T) {
	tmp := t.TempDir()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]bool{ // name: whether it stays
		fmt.Sprintf("%s%d-1", prefix, gone.Process.Pid): false,
		fmt.Sprintf("%s%d-2", prefix, os.Getpid()):      true,
		fmt.Sprintf("%s%d-3", prefix, os.Getppid()):     true,
		prefix + "notapid-4":                            true,
		"other-5":                                       true,
	}
	for d := range dirs {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	removeStale(tmp)
	for d, stays := range dirs {
		if _, err := os.Stat(filepath.Join(tmp, d)); (err == nil) != stays {
			t.Errorf("%s: stat %v, want it to stay: %v", d, err, stays)
		}
	}
}
