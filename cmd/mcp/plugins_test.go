package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
	"github.com/gobucardo/gobucardo/pkg/testbin"
)

// The plugin end-to-end tests run the example plugins of plugins/ (and the
// SDK's misbehaving test plugin) under the real daemon.

// plugins returns the directory of the example plugins and the SDK's
// misbehaving test plugin, built once.
func plugins(t *testing.T) string {
	t.Helper()
	return testbin.Build(t, "github.com/gobucardo/gobucardo/plugins/...", "github.com/gobucardo/gobucardo/pkg/sdk/testdata/misbehave")
}

// copyPlugin copies a built plugin to a path of the test's own, which the
// test may replace.
func copyPlugin(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(plugins(t), name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// multiMaster makes sync s over table (with schema) between sources A, B
// and C (and db T as a target when target is set).
func (d *daemon) multiMaster(schema, table string, target bool) map[string]string {
	dbs := map[string]string{}
	names := []string{"A", "B", "C"}
	if target {
		names = append(names, "T")
	}
	var members []string
	for _, n := range names {
		dbs[n] = d.c.NewDB(d.t)
		d.c.Exec(d.t, dbs[n], schema)
		d.run(0, "add", "db", n, "dsn="+d.c.DSN(dbs[n]))
		role := "source"
		if n == "T" {
			role = "target"
		}
		members = append(members, n+":"+role)
	}
	d.run(0, "add", "table", table, "db=A", "relgroup=rg")
	d.run(0, "add", "sync", "s", "relgroup=rg", "dbs="+strings.Join(members, ","))
	return dbs
}

// pause pauses sync s: once mcp pause has returned, no run of s is in
// progress and none starts, so that writes made next meet in one run.
func (d *daemon) pause() {
	d.t.Helper()
	d.run(0, "pause", "s")
}

func (d *daemon) query(sql string, args ...any) string {
	d.t.Helper()
	conn := d.c.Connect(d.t, d.main)
	defer conn.Close(context.Background())
	var s *string
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		d.t.Fatal(err)
	}
	if s == nil {
		return ""
	}
	return *s
}

// allEqual waits for every db to hold the same rows of table.
func (d *daemon) allEqual(dbs map[string]string, table string, limit time.Duration) {
	d.t.Helper()
	var last []string
	d.eventually(limit, "every db the same", func() bool {
		last = last[:0]
		for _, db := range dbs {
			last = append(last, contents(d.t, d.c, db, table))
		}
		for _, c := range last[1:] {
			if c != last[0] {
				return false
			}
		}
		return true
	})
}

// TestDaemonPlugins: three masters with a conflict plugin (highest
// version wins) and an exception plugin (park unique violations): the
// scenario of Bucardo's t/40-customcode-exception.t, where each master
// inserts a row with the same value of a unique column that is not the key.
func TestDaemonPlugins(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	dbs := d.multiMaster("CREATE TABLE public.t (id int PRIMARY KEY, email text UNIQUE, version int NOT NULL)", "public.t", false)
	d.run(0, "add", "customcode", "newest", "plugin="+filepath.Join(plugins(t), "highest"), "whenrun=conflict", "sync=s", "column=version")
	d.run(0, "add", "customcode", "dupes", "plugin="+filepath.Join(plugins(t), "parkunique"), "whenrun=exception", "sync=s")
	d.run(0, "update", "sync", "s", "conflict_strategy=custom")
	d.start()

	c.Exec(t, dbs["A"], "INSERT INTO public.t VALUES (1, 'one@example.com', 1)")
	d.allEqual(dbs, "public.t", 20*time.Second)
	// The plugins run under the kid, as mcp ps shows.
	var kid int
	d.eventually(10*time.Second, "two plugins under the kid in mcp ps", func() bool {
		n := 0
		for _, p := range d.ps() {
			if p.Role == "kid" {
				kid = p.PID
			}
			if p.Role == "plugin" && p.PPID == kid && kid != 0 && strings.HasPrefix(p.Detail, "customcode ") {
				n++
			}
		}
		return n == 2
	})

	// A conflict: the highest version wins, wherever it was written.
	d.pause()
	for db, v := range map[string]int{"A": 5, "B": 9, "C": 7} {
		c.Exec(t, dbs[db], "UPDATE public.t SET version = $1, email = $2 WHERE id = 1", v, fmt.Sprintf("%s@example.com", db))
	}
	d.run(0, "resume", "s")
	d.allEqual(dbs, "public.t", 20*time.Second)
	if got := contents(t, c, dbs["C"], "public.t"); got != "(1,B@example.com,9)" {
		t.Errorf("after the conflict: %s", got)
	}
	if s := d.query("SELECT string_agg(strategy || ' ' || winner, ';') FROM gobucardo.conflict_log"); s != "customcode newest B" {
		t.Errorf("conflict log: %q", s)
	}

	// The unique violations: each master inserts the same email.
	d.pause()
	c.Exec(t, dbs["A"], "INSERT INTO public.t VALUES (10, 'x@example.com', 1)")
	c.Exec(t, dbs["B"], "INSERT INTO public.t VALUES (11, 'x@example.com', 1)")
	c.Exec(t, dbs["C"], "INSERT INTO public.t VALUES (12, 'y@example.com', 1)")
	d.run(0, "resume", "s")
	d.run(0, "kick", "s", "--timeout", "30s")
	parked := d.run(0, "parked", "s")
	if !strings.Contains(parked, "3") || !strings.Contains(parked, "23505") {
		t.Errorf("mcp parked:\n%s", parked)
	}
	if n := d.query("SELECT count(*)::text FROM gobucardo.parked WHERE customcode = 'dupes'"); n != "3" {
		t.Errorf("%s parked rows, want 3 (A→B 10, B→A 11, B→C 11)", n)
	}
	if st := d.run(0, "status", "s"); !strings.Contains(st, "3 rows: mcp parked s lists them") ||
		!strings.Contains(st, "dupes (exception, sync), newest (conflict, sync)") {
		t.Errorf("mcp status s does not show the parked rows and the customcode:\n%s", st)
	}
	if got := d.query("SELECT state FROM gobucardo.syncrun WHERE status LIKE '%3 parked%' ORDER BY id DESC LIMIT 1"); got != "good" {
		t.Errorf("the run that parked rows is %q", got)
	}
	// An operator settles it on B; the change replicates, and the parked
	// rows go in on retry.
	c.Exec(t, dbs["B"], "UPDATE public.t SET email = 'z@example.com' WHERE id = 11")
	d.run(0, "kick", "s", "--timeout", "30s")
	d.run(0, "parked", "retry", "s")
	if n := d.query("SELECT count(*)::text FROM gobucardo.parked"); n != "0" {
		t.Errorf("%s parked rows left after retry", n)
	}
	d.allEqual(dbs, "public.t", 20*time.Second)
	if got := contents(t, c, dbs["A"], "public.t"); !strings.Contains(got, "(10,x@example.com,1)") || !strings.Contains(got, "(11,z@example.com,1)") {
		t.Errorf("after retry: %s", got)
	}
}

// TestDaemonPluginCounters: the counters plugin adds each master's change,
// with the target's row as the common base.
func TestDaemonPluginCounters(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	dbs := d.multiMaster("CREATE TABLE public.stock (item text PRIMARY KEY, on_hand int)", "public.stock", true)
	d.run(0, "add", "customcode", "stock", "plugin="+filepath.Join(plugins(t), "counters"), "whenrun=conflict", "table=public.stock",
		"columns=on_hand")
	d.start()
	c.Exec(t, dbs["A"], "INSERT INTO public.stock VALUES ('apple', 100)")
	d.allEqual(dbs, "public.stock", 20*time.Second)
	d.pause()
	c.Exec(t, dbs["A"], "UPDATE public.stock SET on_hand = on_hand - 3")
	c.Exec(t, dbs["B"], "UPDATE public.stock SET on_hand = on_hand - 10")
	c.Exec(t, dbs["C"], "UPDATE public.stock SET on_hand = on_hand + 50")
	d.run(0, "resume", "s")
	d.allEqual(dbs, "public.stock", 20*time.Second)
	if got := contents(t, c, dbs["T"], "public.stock"); got != "(apple,137)" {
		t.Errorf("stock after three changes: %s, want 100-3-10+50", got)
	}
	if out := d.run(0, "conflicts", "s"); !strings.Contains(out, "(merged)") {
		t.Errorf("mcp conflicts does not show the merge:\n%s", out)
	}
}

// TestDaemonPluginWindow: a run hook outside its window cancels runs,
// which are recorded as cancelled and not retried as failures.
func TestDaemonPluginWindow(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	src, dst := d.twoDBs(c, c, c)
	now := time.Now().UTC()
	closed := fmt.Sprintf("%s-%s", now.Add(2*time.Hour).Format("15:04"), now.Add(3*time.Hour).Format("15:04"))
	d.run(0, "add", "customcode", "nightly", "plugin="+filepath.Join(plugins(t), "window"), "whenrun=before_sync", "sync=s", "window="+closed)
	d.start()
	c.Exec(t, src, "INSERT INTO public.t VALUES (1, 'waits')")
	d.eventually(20*time.Second, "a cancelled run", func() bool {
		return strings.Contains(d.query("SELECT string_agg(state || ': ' || status, ';') FROM gobucardo.syncrun"), "cancelled: Cancelled: customcode nightly cancelled the run at before_sync")
	})
	if n := d.count(dst, "public.t"); n != 0 {
		t.Fatalf("a run outside the window copied %d rows", n)
	}
	if bad := d.query("SELECT count(*)::text FROM gobucardo.syncrun WHERE state = 'bad'"); bad != "0" {
		t.Errorf("%s bad runs: a cancel is not a failure", bad)
	}
	open := fmt.Sprintf("%s-%s", now.Add(-time.Hour).Format("15:04"), now.Add(time.Hour).Format("15:04"))
	d.run(0, "update", "customcode", "nightly", "window="+open)
	d.run(0, "kick", "s", "--timeout", "30s")
	if n := d.count(dst, "public.t"); n != 1 {
		t.Errorf("inside the window: %d rows on the target", n)
	}
}

// TestDaemonPluginFailures: a plugin killed with kill -9 in the middle of
// a run, one that never answers, and one whose binary was replaced after
// registration each fail the run cleanly with a reason; the first and the
// last recover by themselves.
func TestDaemonPluginFailures(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	a, b := c.NewDB(t), c.NewDB(t)
	for _, db := range []string{a, b} {
		c.Exec(t, db, "CREATE TABLE public.t (id int PRIMARY KEY, v int); CREATE TABLE public.sleep (id int PRIMARY KEY, v int)")
	}
	d.run(0, "add", "db", "A", "dsn="+c.DSN(a))
	d.run(0, "add", "db", "B", "dsn="+c.DSN(b))
	d.run(0, "add", "table", "public.t", "public.sleep", "db=A", "relgroup=rg")
	d.run(0, "add", "sync", "s", "relgroup=rg", "dbs=A:source,B:source")
	highest := copyPlugin(t, "highest")
	d.run(0, "add", "customcode", "newest", "plugin="+highest, "whenrun=conflict", "table=public.t", "column=v")
	d.start()
	c.Exec(t, a, "INSERT INTO public.t SELECT g, 0 FROM generate_series(1, 5000) g")
	d.eventually(30*time.Second, "B has A's rows", func() bool { return d.count(b, "public.t") == 5000 })

	pluginPid := func() int {
		for _, p := range d.ps() {
			if p.Role == "plugin" && p.Detail == "customcode newest" {
				return p.PID
			}
		}
		return 0
	}
	lastBad := func() string {
		return d.query("SELECT coalesce((SELECT status FROM gobucardo.syncrun WHERE state = 'bad' ORDER BY id DESC LIMIT 1), '')")
	}
	// kill -9 while the run asks the plugin about 5000 conflicts: a moment
	// after the controller logs the start of the run that resume kicks
	// (longer at each try, should the run have been faster).
	var killed int
	for try := 0; try < 6 && !strings.Contains(lastBad(), "died during the call"); try++ {
		d.pause()
		c.Exec(t, a, "UPDATE public.t SET v = v + 2")
		c.Exec(t, b, "UPDATE public.t SET v = v + 1")
		// The run starts before `mcp resume` has exited: watch the log
		// while it runs.
		starts := strings.Count(d.logText(), `"msg":"run","role":"controller"`)
		resumed := make(chan int, 1)
		cmd := exec.Command(filepath.Join(d.bin, "mcp"), "resume", "s")
		cmd.Env = d.env
		go func() { // not d.try, which the polls below share
			err := cmd.Run()
			code := 0
			if err != nil {
				code = 1
			}
			resumed <- code
		}()
		d.eventually(10*time.Second, "the run after resume", func() bool {
			return strings.Count(d.logText(), `"msg":"run","role":"controller"`) > starts
		})
		time.Sleep(time.Duration(50<<try) * time.Millisecond)
		if pid := pluginPid(); pid != 0 && syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = pid
		}
		if code := <-resumed; code != 0 {
			t.Fatalf("mcp resume s: exit %d", code)
		}
		d.eventually(60*time.Second, "A and B the same after the plugin was killed", func() bool {
			return contents(t, c, a, "public.t") == contents(t, c, b, "public.t")
		})
	}
	t.Logf("killed plugin %d; the failed run says %q", killed, lastBad())
	if bad := lastBad(); !strings.Contains(bad, `plugin "highest"`) || !strings.Contains(bad, "died during the call") {
		t.Fatalf("no run failed for the killed plugin; the last failed run says %q", bad)
	}
	d.eventually(10*time.Second, "a new plugin process", func() bool { p := pluginPid(); return p != 0 && p != killed })
	t.Logf("runs that asked the plugin about 5000 conflicts: %s", d.query(`SELECT string_agg(status, '; ' ORDER BY id) FROM gobucardo.syncrun
		WHERE state = 'good' AND conflicts = 5000`))

	// A replaced binary is refused until it is registered again (or put back).
	orig, err := os.ReadFile(highest)
	if err != nil {
		t.Fatal(err)
	}
	other, err := os.ReadFile(filepath.Join(plugins(t), "counters"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(highest+".new", other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(highest+".new", highest); err != nil {
		t.Fatal(err)
	}
	// The running process is reused until it has to be started again.
	if pid := pluginPid(); pid == 0 || syscall.Kill(pid, syscall.SIGKILL) != nil {
		t.Fatal("no plugin process to kill")
	}
	c.Exec(t, a, "UPDATE public.t SET v = 100 WHERE id = 1")
	d.eventually(30*time.Second, "a run refused for the checksum", func() bool {
		return strings.Contains(d.query("SELECT status FROM gobucardo.syncrun WHERE state = 'bad' ORDER BY id DESC LIMIT 1"),
			"has changed since it was registered")
	})
	if err := os.WriteFile(highest+".new", orig, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(highest+".new", highest); err != nil {
		t.Fatal(err)
	}
	d.eventually(60*time.Second, "the change carried once the binary is back", func() bool {
		return contents(t, c, a, "public.t") == contents(t, c, b, "public.t")
	})

	// A plugin that never answers: the run fails at its timeout and the
	// other table's rows are not applied either.
	d.run(0, "add", "customcode", "sleepy", "plugin="+filepath.Join(plugins(t), "misbehave"), "whenrun=conflict", "table=public.sleep", "timeout=1s")
	c.Exec(t, a, "INSERT INTO public.sleep VALUES (1, 1)")
	d.eventually(20*time.Second, "B has the sleep row", func() bool { return d.count(b, "public.sleep") == 1 })
	d.pause()
	c.Exec(t, a, "UPDATE public.sleep SET v = 2; INSERT INTO public.t VALUES (-1, 0)")
	c.Exec(t, b, "UPDATE public.sleep SET v = 3")
	d.run(0, "resume", "s")
	d.eventually(30*time.Second, "a run failed at the plugin's timeout", func() bool {
		return strings.Contains(d.query("SELECT status FROM gobucardo.syncrun WHERE state = 'bad' ORDER BY id DESC LIMIT 1"),
			"no answer within its timeout of 1s")
	})
	if n := d.count(b, "public.t WHERE id = -1"); n != 0 {
		t.Error("a failed run applied a row of another table")
	}
	if out := d.run(0, "status", "s"); !strings.Contains(out, "timeout") {
		t.Errorf("mcp status s does not show the reason:\n%s", out)
	}
}

// TestAddForkingPlugin: `mcp add customcode` with a plugin file that is a
// shell script running sleep (a child that holds the plugin's stdout and
// stderr) fails at the start timeout, not when sleep ends, and leaves no
// sleep behind.
func TestAddForkingPlugin(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	a := c.NewDB(t)
	c.Exec(t, a, "CREATE TABLE public.t (id int PRIMARY KEY, v int)")
	d.run(0, "add", "db", "A", "dsn="+c.DSN(a))
	d.run(0, "add", "table", "public.t", "db=A", "relgroup=rg")
	d.run(0, "add", "sync", "s", "relgroup=rg", "dbs=A:source")
	dir := t.TempDir()
	script, pidFile := filepath.Join(dir, "forker"), filepath.Join(dir, "sleep.pid")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nsleep 150 &\necho $! > "+pidFile+"\nwait\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	out := d.run(1, "add", "customcode", "forker", "plugin="+script, "whenrun=conflict", "sync=s")
	took := time.Since(began)
	if !strings.Contains(out, "timeout while waiting for plugin to start") {
		t.Errorf("mcp add customcode said %q", out)
	}
	// The start timeout is 10 s; the pipes are waited for a second more.
	if took > 20*time.Second {
		t.Errorf("mcp add customcode took %s", took)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the plugin's sleep (pid %d) outlived mcp add customcode", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("mcp add customcode failed after %s", took)
}

// running reports whether pid runs: it exists and is not a zombie waiting
// for a reaper.
func running(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	state := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	return len(state) > 0 && state[0] != "Z"
}
