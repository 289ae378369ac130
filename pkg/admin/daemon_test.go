package admin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPidFile(t *testing.T) {
	dir := t.TempDir()
	written := filepath.Join(dir, "run", "gobucardo", "mcp.pid")
	if err := writePidFile(written, 4242); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(written); err != nil || string(b) != "4242\n" {
		t.Fatalf("pid file holds %q, %v", b, err)
	}
	cases := []struct {
		name, content string // "-" for no file
		want          int
	}{
		{"as written", "4242\n", 4242},
		{"spaces around", "  17 \r\n", 17},
		{"no file", "-", 0},
		{"empty", "", 0},
		{"not a number", "mcp\n", 0},
		{"zero", "0\n", 0},
		{"negative", "-5\n", 0},
		{"two numbers", "1 2\n", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mcp.pid")
			if tc.content != "-" {
				if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := readPid(path); got != tc.want {
				t.Errorf("readPid(%q) = %d, want %d", tc.content, got, tc.want)
			}
		})
	}
	if got := readPid(written); got != 4242 {
		t.Errorf("readPid of the written file = %d", got)
	}
	// A pid file whose directory cannot be made is an error naming the pid file.
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writePidFile(filepath.Join(blocker, "mcp.pid"), 1); err == nil || !strings.HasPrefix(err.Error(), "pid file: ") {
		t.Errorf("writePidFile under a file = %v, want a pid file error", err)
	}
}
