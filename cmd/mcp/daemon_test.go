package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
	"github.com/gobucardo/gobucardo/pkg/testbin"
)

// The daemon's end-to-end tests run the real mcp, controller and kid
// binaries, built once per test binary (with -race when the tests are).

// binaries returns the directory of mcp, controller and kid, built once
// (with -race when the tests are).
func binaries(t *testing.T) string {
	t.Helper()
	return testbin.BuildRace(t, "github.com/gobucardo/gobucardo/cmd/...")
}

// daemon is one test's catalog, replicated dbs and MCP.
type daemon struct {
	t       *testing.T
	bin     string
	env     []string
	main    string
	c       *pgtest.Cluster
	mcp     *exec.Cmd
	log     *bytes.Buffer
	logMu   sync.Mutex
	exited  chan error
	lastTry string
}

// stop stops the MCP with mcp stop and checks that mcp run exits cleanly.
func (d *daemon) stop() {
	d.t.Helper()
	d.run(0, "stop")
	if err := d.exit("mcp stop"); err != nil {
		d.t.Errorf("mcp run after mcp stop: %v", err)
	}
}

// exit waits for mcp run to exit after what, and returns its exit error.
func (d *daemon) exit(what string) error {
	d.t.Helper()
	select {
	case err := <-d.exited:
		d.mcp = nil
		return err
	case <-time.After(30 * time.Second):
		d.t.Fatalf("mcp run did not exit after %s", what)
	}
	return nil
}

func newDaemon(t *testing.T, c *pgtest.Cluster) *daemon {
	d := &daemon{t: t, bin: binaries(t), c: c, log: &bytes.Buffer{}}
	d.main = c.NewDB(t)
	d.env = append(os.Environ(), "GOBUCARDO_DSN="+c.DSN(d.main))
	d.run(0, "install")
	return d
}

// Write implements io.Writer for the MCP's log.
func (d *daemon) Write(p []byte) (int, error) {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.log.Write(p)
}

func (d *daemon) logText() string {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.log.String()
}

// run runs mcp and checks its exit status.
func (d *daemon) run(want int, args ...string) string {
	d.t.Helper()
	out, code := d.try(args...)
	if code != want {
		d.t.Fatalf("mcp %s: exit %d, want %d\n%s\nMCP log:\n%s", strings.Join(args, " "), code, want, out, tailLines(d.logText(), 40))
	}
	return out
}

func (d *daemon) try(args ...string) (string, int) {
	cmd := exec.Command(filepath.Join(d.bin, "mcp"), args...)
	cmd.Env = d.env
	out, err := cmd.CombinedOutput()
	d.lastTry = strings.Join(args, " ") + ": " + string(out)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	} else if err != nil {
		d.t.Fatal(err)
	}
	return string(out), 0
}

// start runs `mcp run --log-level debug` with extra arguments in the
// background until the test ends.
func (d *daemon) start(extra ...string) {
	d.t.Helper()
	d.startRun(append([]string{"--log-level", "debug"}, extra...)...)
}

// startRun runs `mcp run` with args in the background until the test ends.
func (d *daemon) startRun(args ...string) {
	d.t.Helper()
	cmd := exec.Command(filepath.Join(d.bin, "mcp"), append([]string{"run"}, args...)...)
	cmd.Env = d.env
	cmd.Stdout, cmd.Stderr = d, d
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.mcp, d.exited = cmd, make(chan error, 1)
	go func() { d.exited <- cmd.Wait() }()
	d.t.Cleanup(func() {
		if d.mcp != nil {
			_ = d.mcp.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-d.exited:
				if err != nil {
					d.t.Logf("mcp run exited after SIGTERM: %v", err)
				}
			case <-time.After(30 * time.Second):
				_ = d.mcp.Process.Kill()
			}
			d.mcp = nil
		}
		if d.t.Failed() {
			d.t.Logf("MCP log:\n%s", tailLines(d.logText(), 80))
		}
	})
	var last string
	d.eventually(15*time.Second, "mcp ping OK", func() bool {
		out, code := d.try("ping")
		last = out
		return code == 0 && strings.HasPrefix(out, "OK")
	})
	_ = last
}

// eventually polls cond until it holds or the deadline passes.
func (d *daemon) eventually(limit time.Duration, what string, cond func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			d.t.Fatalf("after %s still not: %s (%s)", limit, what, d.lastTry)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

type psRow struct {
	PID    int    `json:"pid"`
	PPID   int    `json:"ppid"`
	Role   string `json:"role"`
	Sync   string `json:"sync"`
	State  string `json:"state"`
	Detail string `json:"detail"`
	RSS    int64  `json:"rss_bytes"`
}

func (d *daemon) ps() []psRow {
	d.t.Helper()
	var doc struct {
		Processes []psRow `json:"processes"`
	}
	if err := json.Unmarshal([]byte(d.run(0, "ps", "--json")), &doc); err != nil {
		d.t.Fatal(err)
	}
	return doc.Processes
}

func (d *daemon) pidOf(role, sync string) int {
	for _, p := range d.ps() {
		if p.Role == role && p.Sync == sync {
			return p.PID
		}
	}
	return 0
}

func (d *daemon) count(db, table string) int {
	d.t.Helper()
	conn := d.c.Connect(d.t, db)
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		d.t.Fatal(err)
	}
	return n
}

// contents is a table's ordered contents as one string.
func contents(t *testing.T, c *pgtest.Cluster, db, table string) string {
	t.Helper()
	conn := c.Connect(t, db)
	defer conn.Close(context.Background())
	var s *string
	if err := conn.QueryRow(context.Background(), "SELECT string_agg(t::text, ',' ORDER BY t) FROM "+table+" t").Scan(&s); err != nil {
		t.Fatal(err)
	}
	if s == nil {
		return ""
	}
	return *s
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// twoDBs makes a sync s from db A (source) to db B (target) over table t.
func (d *daemon) twoDBs(c *pgtest.Cluster, srcCluster, dstCluster *pgtest.Cluster, opts ...string) (src, dst string) {
	src, dst = srcCluster.NewDB(d.t), dstCluster.NewDB(d.t)
	for _, db := range []struct {
		cl *pgtest.Cluster
		n  string
	}{{srcCluster, src}, {dstCluster, dst}} {
		db.cl.Exec(d.t, db.n, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	}
	d.run(0, "add", "db", "A", "dsn="+srcCluster.DSN(src))
	d.run(0, "add", "db", "B", "dsn="+dstCluster.DSN(dst))
	d.run(0, "add", "table", "t", "db=A", "relgroup=rg")
	d.run(0, append([]string{"add", "sync", "s", "relgroup=rg", "dbs=A:source,B:target"}, opts...)...)
	return src, dst
}

func TestDaemonEndToEnd(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	src, dst := d.twoDBs(c, c, c)
	d.start()

	// A second MCP on the same catalog is refused with a clear message.
	out, code := d.try("run")
	if code != 1 || !strings.Contains(out, "another MCP is running on this catalog") {
		t.Errorf("second mcp run: exit %d, %q", code, out)
	}

	// Autokick alone carries a commit to the target.
	c.Exec(t, src, "INSERT INTO public.t VALUES (1, 'one')")
	d.eventually(10*time.Second, "row 1 on the target", func() bool { return d.count(dst, "public.t") == 1 })
	c.Exec(t, src, "UPDATE public.t SET v = 'uno' WHERE id = 1")
	d.eventually(10*time.Second, "row 1 updated on the target", func() bool {
		return contents(t, c, dst, "public.t") == "(1,uno)"
	})

	// mcp kick --timeout waits for the run and reports it.
	if out := d.run(0, "kick", "s", "--timeout", "20s"); !strings.Contains(out, "Kick s: Complete") {
		t.Errorf("kick printed %q", out)
	}
	if out, code := d.try("kick", "nope", "--timeout", "1s"); code != 3 || !strings.Contains(out, `unknown sync "nope"`) {
		t.Errorf("kick of an unknown sync: exit %d, %q", code, out)
	}

	// ps shows the tree: the MCP, the controller, its kid.
	var ctlPID, kidPID int
	d.eventually(10*time.Second, "ps shows mcp, controller and kid", func() bool {
		rows := d.ps()
		ctlPID, kidPID = 0, 0
		var mcpPID int
		for _, r := range rows {
			switch r.Role {
			case "mcp":
				mcpPID = r.PID
			case "controller":
				ctlPID = r.PID
				if r.PPID != mcpPID || r.Sync != "s" {
					return false
				}
			case "kid":
				kidPID = r.PID
				if r.PPID != ctlPID || r.RSS <= 0 {
					return false
				}
			}
		}
		return mcpPID == d.mcp.Process.Pid && ctlPID > 0 && kidPID > 0
	})
	if out := d.run(0, "ps"); !strings.Contains(out, "PID") || !strings.Contains(out, "controller") {
		t.Errorf("ps printed %q", out)
	}
	status := d.run(0, "status")
	if !strings.Contains(status, "Last good") || !strings.Contains(status, "good") {
		t.Errorf("status printed %q", status)
	}
	if detail := d.run(0, "status", "s"); !strings.Contains(detail, "Controller:") || !strings.Contains(detail, "A:source B:target") {
		t.Errorf("status s printed %q", detail)
	}

	// Pause: once mcp pause has returned nothing runs, though the
	// controller may not have heard of it yet; resume: it catches up.
	if out := d.run(0, "pause", "s"); !strings.Contains(out, "Paused sync s") {
		t.Errorf("pause printed %q", out)
	}
	c.Exec(t, src, "INSERT INTO public.t VALUES (2, 'two')")
	d.eventually(10*time.Second, "controller paused", func() bool {
		for _, r := range d.ps() {
			if r.Role == "controller" && r.State == "paused" {
				return true
			}
		}
		return false
	})
	if out, code := d.try("kick", "s", "--timeout", "1s"); code != 3 || !strings.Contains(out, "paused") {
		t.Errorf("kick of a paused sync: exit %d, %q", code, out)
	}
	time.Sleep(300 * time.Millisecond) // a paused sync must not copy row 2
	if n := d.count(dst, "public.t"); n != 1 {
		t.Errorf("paused sync copied: target has %d rows", n)
	}
	d.run(0, "resume", "s")
	d.eventually(10*time.Second, "row 2 after resume", func() bool { return d.count(dst, "public.t") == 2 })

	d.run(0, "message", "hello from the test")
	d.eventually(5*time.Second, "message in the MCP log", func() bool { return strings.Contains(d.logText(), "hello from the test") })

	// mcp stop leaves no process behind.
	d.stop()
	for _, pid := range []int{ctlPID, kidPID} {
		if alive(pid) {
			t.Errorf("process %d still alive after mcp stop", pid)
		}
	}
	if out := d.run(0, "ps"); !strings.Contains(out, "No MCP is running") {
		t.Errorf("ps after stop printed %q", out)
	}
	if out, code := d.try("ping"); code != 2 || !strings.HasPrefix(out, "CRITICAL") {
		t.Errorf("ping after stop: exit %d, %q", code, out)
	}
}

// digest is a table's row count and the md5 of its ordered contents.
func digest(t *testing.T, c *pgtest.Cluster, db string) string {
	t.Helper()
	conn := c.Connect(t, db)
	defer conn.Close(context.Background())
	var s string
	err := conn.QueryRow(context.Background(),
		"SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '') FROM public.t t").Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDaemonKills kills a kid in the middle of a large run, then the
// controller: the MCP and controller recover on their own, and the target
// ends with exactly the source's rows.
func TestDaemonKills(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	src, dst := d.twoDBs(c, c, c)
	d.start()
	c.Exec(t, src, "INSERT INTO public.t SELECT g, repeat('x', 50) || g FROM generate_series(1, 300000) g")
	var killed int
	bumped := time.Now()
	d.eventually(60*time.Second, "a kid busy with the big run", func() bool {
		for _, p := range d.ps() {
			if p.Role == "kid" && p.State == "running" && strings.Contains(p.Detail, "public.t") {
				killed = p.PID
				return syscall.Kill(p.PID, syscall.SIGKILL) == nil
			}
		}
		if time.Since(bumped) > 5*time.Second {
			// ps (published every second) missed that run: make another.
			c.Exec(t, src, "UPDATE public.t SET v = v || 'y'")
			bumped = time.Now()
		}
		return false
	})
	d.eventually(60*time.Second, "target equal to source after the kid was killed", func() bool {
		return digest(t, c, dst) == digest(t, c, src)
	})
	if alive(killed) {
		t.Errorf("killed kid %d still alive", killed)
	}
	if !strings.Contains(d.run(0, "status", "s"), "Last bad") {
		t.Error("status shows no failed run")
	}

	ctl := d.pidOf("controller", "s")
	if ctl == 0 {
		t.Fatal("no controller in ps")
	}
	if err := syscall.Kill(ctl, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.Exec(t, src, "UPDATE public.t SET v = 'changed' WHERE id % 1000 = 0")
	c.Exec(t, src, "DELETE FROM public.t WHERE id % 1000 = 1")
	d.eventually(60*time.Second, "target equal to source after the controller was killed", func() bool {
		return digest(t, c, dst) == digest(t, c, src)
	})
	d.eventually(10*time.Second, "a new controller", func() bool {
		p := d.pidOf("controller", "s")
		return p != 0 && p != ctl
	})
}

// TestDaemonOutages stops the source, then the target, for a while: the
// daemon catches up after each comes back, without any command.
func TestDaemonOutages(t *testing.T) {
	shared := pgtest.Shared(t)
	srcC, dstC := pgtest.New(t), pgtest.New(t)
	d := newDaemon(t, shared)
	src, dst := d.twoDBs(shared, srcC, dstC)
	d.start()
	srcC.Exec(t, src, "INSERT INTO public.t VALUES (1, 'before')")
	d.eventually(10*time.Second, "row 1", func() bool { return contents(t, dstC, dst, "public.t") == "(1,before)" })

	srcC.Stop(t)
	time.Sleep(2 * time.Second) // an outage long enough for every session to notice
	srcC.Start(t)
	srcC.Exec(t, src, "INSERT INTO public.t VALUES (2, 'after source outage')")
	d.eventually(30*time.Second, "row 2 after the source came back", func() bool {
		return contents(t, dstC, dst, "public.t") == "(1,before),(2,\"after source outage\")"
	})

	dstC.Stop(t)
	srcC.Exec(t, src, "INSERT INTO public.t VALUES (3, 'during target outage')")
	time.Sleep(2 * time.Second) // runs fail meanwhile
	dstC.Start(t)
	d.eventually(60*time.Second, "row 3 after the target came back", func() bool {
		return digest(t, dstC, dst) == digest(t, srcC, src)
	})
}

// TestDaemonFullcopySync: a fullcopy-only sync runs when kicked, once, and
// not again by itself (each of its runs copies everything).
func TestDaemonFullcopySync(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	src, dst := c.NewDB(t), c.NewDB(t)
	c.Exec(t, src, "CREATE TABLE public.hist (a int, b text)")
	c.Exec(t, dst, "CREATE TABLE public.hist (a int, b text)")
	c.Exec(t, src, "INSERT INTO public.hist SELECT g, 'x' FROM generate_series(1, 10) g")
	d.run(0, "add", "db", "A", "dsn="+c.DSN(src))
	d.run(0, "add", "db", "B", "dsn="+c.DSN(dst))
	d.run(0, "add", "table", "hist", "db=A", "relgroup=rg")
	d.run(0, "add", "sync", "f", "relgroup=rg", "dbs=A:source,B:fullcopy", "autokick=false")
	d.start()
	d.run(0, "kick", "f", "--timeout", "20s")
	if n := d.count(dst, "public.hist"); n != 10 {
		t.Fatalf("fullcopy target has %d rows, want 10", n)
	}
	conn := c.Connect(t, d.main)
	defer conn.Close(context.Background())
	runs := func() int {
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM gobucardo.syncrun WHERE sync_name = 'f'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := runs()
	time.Sleep(time.Second) // a sync that loops would run many times meanwhile
	if after := runs(); after != before {
		t.Errorf("the fullcopy sync ran %d more times by itself", after-before)
	}
}

// TestDaemonChecktimeAndActivation: without autokick, checktime alone
// carries a change; deactivate stops the controller and activate starts it
// again, through the reload the catalog change sends.
func TestDaemonChecktimeAndActivation(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	src, dst := d.twoDBs(c, c, c, "autokick=false", "checktime=1s")
	d.start()
	c.Exec(t, src, "INSERT INTO public.t VALUES (1, 'by checktime')")
	d.eventually(15*time.Second, "row 1 through checktime", func() bool { return d.count(dst, "public.t") == 1 })

	d.run(0, "deactivate", "s")
	d.eventually(15*time.Second, "no controller once inactive", func() bool { return d.pidOf("controller", "s") == 0 })
	if out := d.run(0, "status"); !strings.Contains(out, "inactive") {
		t.Errorf("status of an inactive sync: %q", out)
	}
	d.run(0, "activate", "s")
	d.eventually(15*time.Second, "a controller once active again", func() bool { return d.pidOf("controller", "s") != 0 })
	c.Exec(t, src, "INSERT INTO public.t VALUES (2, 'after activate')")
	d.eventually(15*time.Second, "row 2", func() bool { return d.count(dst, "public.t") == 2 })
}

// TestDaemonTwoSourcesGoIdle: with two sources, writes on both converge and
// the controller then goes idle: applying one source's rows to the other
// must not kick the sync again (nothing echoes).
func TestDaemonTwoSourcesGoIdle(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	a, b, tgt := c.NewDB(t), c.NewDB(t), c.NewDB(t)
	for _, db := range []string{a, b, tgt} {
		c.Exec(t, db, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
	}
	d.run(0, "add", "db", "A", "dsn="+c.DSN(a))
	d.run(0, "add", "db", "B", "dsn="+c.DSN(b))
	d.run(0, "add", "db", "C", "dsn="+c.DSN(tgt))
	d.run(0, "add", "table", "t", "db=A", "relgroup=rg")
	d.run(0, "add", "sync", "s", "relgroup=rg", "dbs=A:source,B:source,C:target")
	d.start()
	c.Exec(t, a, "INSERT INTO public.t SELECT g, 'a' FROM generate_series(1, 100) g")
	c.Exec(t, b, "INSERT INTO public.t SELECT g, 'b' FROM generate_series(101, 200) g")
	d.eventually(20*time.Second, "all three equal", func() bool {
		return digest(t, c, tgt) == digest(t, c, a) && digest(t, c, b) == digest(t, c, a) && d.count(tgt, "public.t") == 200
	})
	d.eventually(10*time.Second, "the controller idle", func() bool {
		for _, p := range d.ps() {
			if p.Role == "controller" {
				return p.State == "idle"
			}
		}
		return false
	})
	conn := c.Connect(t, d.main)
	defer conn.Close(context.Background())
	runs := func() int {
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM gobucardo.syncrun").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := runs()
	time.Sleep(1500 * time.Millisecond) // an echo would show as runs meanwhile
	if after := runs(); after != before {
		t.Errorf("%d runs while nothing changed", after-before)
	}
}
