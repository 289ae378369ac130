package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
	"github.com/gobucardo/gobucardo/pkg/testbin"
)

func TestMain(m *testing.M) {
	pgtest.Main(m)
	testbin.Cleanup()
}

// TestBinary runs the real mcp binary: exit statuses, stdout/stderr, and
// the main database found through GOBUCARDO_DSN.
func TestBinary(t *testing.T) {
	bin := filepath.Join(binaries(t), "mcp")
	c := pgtest.Shared(t)
	main := c.NewDB(t)
	replica := c.NewDB(t)
	c.Exec(t, replica, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	env := append(os.Environ(), "GOBUCARDO_DSN="+c.DSN(main))
	run := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != wantCode {
			t.Fatalf("mcp %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, out.String(), errb.String())
		}
		return out.String(), errb.String()
	}
	if out, _ := run(0, "--version"); !strings.Contains(out, "mcp version") {
		t.Errorf("--version printed %q", out)
	}
	run(0, "install")
	run(0, "add", "db", "A", "dsn="+c.DSN(replica))
	if out, _ := run(0, "add", "table", "t", "db=A"); !strings.Contains(out, "key: id integer, primary key") {
		t.Errorf("add table printed %q", out)
	}
	if _, errOut := run(1, "add", "sync", "s", "relgroup=nope", "dbs=A:source"); !strings.HasPrefix(errOut, "mcp: unknown relgroup \"nope\"") {
		t.Errorf("stderr %q", errOut)
	}
	if _, errOut := run(2, "bogus"); !strings.Contains(errOut, "unknown command") {
		t.Errorf("stderr %q", errOut)
	}
	if out, _ := run(0, "list", "tables", "--json"); !strings.Contains(out, `"key_columns": [`) {
		t.Errorf("list --json printed %q", out)
	}
}
