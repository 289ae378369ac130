package admin

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
	"github.com/gobucardo/gobucardo/pkg/testbin"
)

func TestMain(m *testing.M) {
	pgtest.Main(m)
	testbin.Cleanup()
}

// replicaSchema is created on every replicated test database.
const replicaSchema = `
CREATE TABLE public.accounts (aid integer PRIMARY KEY, bid integer NOT NULL, abalance integer NOT NULL, filler text);
CREATE TABLE public.branches (bid integer PRIMARY KEY, bbalance integer NOT NULL);
CREATE TABLE public.nokey (a integer, b text);
CREATE SEQUENCE public.order_seq;
`

// fixture is a main database with the catalog installed and replicated
// databases A, B, C (each with replicaSchema) on the shared cluster.
type fixture struct {
	t    *testing.T
	c    *pgtest.Cluster
	main string
	dsn  string
	db   map[string]string // catalog db name -> database name
	// bin, when set, is the mcp binary that run executes instead of
	// running mcp in-process.
	bin string
}

func newFixture(t *testing.T, install bool) *fixture {
	t.Helper()
	c := pgtest.Shared(t)
	f := &fixture{t: t, c: c, main: c.NewDB(t), db: map[string]string{}}
	f.dsn = c.DSN(f.main)
	for _, n := range []string{"A", "B", "C"} {
		f.db[n] = c.NewDB(t)
		c.Exec(t, f.db[n], replicaSchema)
	}
	if install {
		f.ok("install")
	}
	return f
}

type result struct {
	out, err string
	code     int
}

// run runs mcp against the fixture's main database: in-process, or the
// binary f.bin when set.
func (f *fixture) run(args ...string) result {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	args = append([]string{"--dsn", f.dsn}, args...)
	if f.bin == "" {
		code := Run(ctx, append([]string{"mcp"}, args...), &out, &errb)
		return result{out: out.String(), err: errb.String(), code: code}
	}
	cmd := exec.CommandContext(ctx, f.bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		f.t.Fatalf("mcp %s: %v", strings.Join(args, " "), err)
	}
	return result{out: out.String(), err: errb.String(), code: cmd.ProcessState.ExitCode()}
}

// ok runs mcp and fails the test unless it exits 0; it returns stdout.
func (f *fixture) ok(args ...string) string {
	f.t.Helper()
	r := f.run(args...)
	if r.code != 0 {
		f.t.Fatalf("mcp %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.out
}

// fail runs mcp, expects exit status code and an error naming every want,
// and checks that the catalog did not change. It returns stderr.
func (f *fixture) fail(code int, want []string, args ...string) string {
	f.t.Helper()
	before := f.snapshot()
	r := f.run(args...)
	if r.code != code {
		f.t.Fatalf("mcp %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.out, r.err)
	}
	for _, w := range want {
		if !strings.Contains(r.err, w) {
			f.t.Errorf("mcp %s: stderr %q does not say %q", strings.Join(args, " "), r.err, w)
		}
	}
	if strings.Count(strings.TrimSpace(r.err), "\n") > 0 && !strings.Contains(r.err, "problems:") {
		f.t.Errorf("mcp %s: want one sentence, got:\n%s", strings.Join(args, " "), r.err)
	}
	if strings.Contains(r.out, "Added") || strings.Contains(r.out, "Changed") || strings.Contains(r.out, "Removed") {
		f.t.Errorf("mcp %s failed but printed %q", strings.Join(args, " "), r.out)
	}
	if after := f.snapshot(); after != before {
		f.t.Errorf("mcp %s failed but changed the catalog:\nbefore: %s\nafter:  %s", strings.Join(args, " "), before, after)
	}
	return r.err
}

// catalogTables are compared by snapshot.
var catalogTables = []string{"db", "dbgroup", "dbgroup_member", "relation", "relgroup", "relgroup_member",
	"sync", "customcode", "customcode_map", "schema_migration", "setting"}

// snapshot returns the whole catalog as text (empty if not installed).
func (f *fixture) snapshot() string {
	f.t.Helper()
	conn := f.c.Connect(f.t, f.main)
	var installed bool
	if err := conn.QueryRow(context.Background(), "SELECT to_regclass('gobucardo.db') IS NOT NULL").Scan(&installed); err != nil {
		f.t.Fatal(err)
	}
	if !installed {
		return ""
	}
	var b strings.Builder
	for _, tbl := range catalogTables {
		var s string
		err := conn.QueryRow(context.Background(),
			"SELECT coalesce(json_agg(t ORDER BY t::text)::text, '[]') FROM gobucardo."+tbl+" t").Scan(&s)
		if err != nil {
			f.t.Fatalf("snapshot %s: %v", tbl, err)
		}
		b.WriteString(tbl + "=" + s + "\n")
	}
	return b.String()
}

// addDBs adds A, B and C to the catalog.
func (f *fixture) addDBs() {
	f.t.Helper()
	for _, n := range []string{"A", "B", "C"} {
		f.ok("add", "db", n, "host="+f.c.Host(), "port="+strconv.Itoa(f.c.Port()), "user=postgres", "dbname="+f.db[n])
	}
}
