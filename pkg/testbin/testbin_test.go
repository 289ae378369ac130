package testbin

import (
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
