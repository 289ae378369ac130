package pgtest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// orphanEnv names the file a TestOrphanChild process writes its server's pids to.
const orphanEnv = "PGTEST_ORPHAN_CHILD"

func docker() bool { return os.Getenv("PGTEST_BACKEND") == "docker" }

// queryInt returns the single integer sql returns on db.
func queryInt(t *testing.T, c *pgtest.Cluster, db, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := c.Connect(t, db).QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// connectErr tries to connect with dsn and returns the error.
func connectErr(dsn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err == nil {
		_ = conn.Close(ctx)
		return nil
	}
	return err
}

func TestStart(t *testing.T) {
	pgtest.Shared(t) // makes the template: its initdb is not part of a cluster's start time
	begin := time.Now()
	c := pgtest.New(t)
	elapsed := time.Since(begin)
	t.Logf("cluster started from the template in %v", elapsed)
	if elapsed > 2*time.Second {
		t.Errorf("cluster took %v to start, want < 2s", elapsed)
	}
	if !docker() && !filepath.IsAbs(c.Host()) {
		t.Errorf("Host() = %q, want a unix socket directory", c.Host())
	}
	for _, tc := range []struct {
		name, dsn string
		tcp       bool
	}{
		{"unix", c.DSN("postgres"), docker()},
		{"tcp", c.TCPDSN("postgres"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, tc.dsn)
			if err != nil {
				t.Fatalf("connect %q: %v", tc.dsn, err)
			}
			defer conn.Close(ctx)
			var user string
			var tcp bool
			err = conn.QueryRow(ctx, `SELECT current_user, inet_client_addr() IS NOT NULL`).Scan(&user, &tcp)
			if err != nil {
				t.Fatal(err)
			}
			if user != "postgres" {
				t.Errorf("current_user = %q, want postgres", user)
			}
			if tcp != tc.tcp {
				t.Errorf("over TCP = %v, want %v (dsn %q)", tcp, tc.tcp, tc.dsn)
			}
		})
	}
}

func TestNewDB(t *testing.T) {
	c := pgtest.Shared(t)
	var names []string
	for _, name := range []string{"two databases", strings.Repeat("a long name with 'odd' chars/", 5)} {
		t.Run(name, func(t *testing.T) {
			a, b := c.NewDB(t), c.NewDB(t)
			if a == b {
				t.Fatalf("NewDB returned %q twice", a)
			}
			for _, db := range []string{a, b} {
				if len(db) > 63 {
					t.Errorf("database name %q is %d bytes, want <= 63", db, len(db))
				}
				if n := queryInt(t, c, "postgres", `SELECT count(*) FROM pg_database WHERE datname = $1`, db); n != 1 {
					t.Errorf("database %q: %d in pg_database, want 1", db, n)
				}
				if n := queryInt(t, c, db, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`); n != 0 {
					t.Errorf("database %q has %d tables, want 0", db, n)
				}
			}
			c.Exec(t, a, `CREATE TABLE t (v int); INSERT INTO t VALUES (1)`)
			c.Exec(t, a, `INSERT INTO t VALUES ($1)`, 2)
			if n := queryInt(t, c, a, `SELECT sum(v) FROM t`); n != 3 {
				t.Errorf("sum(v) = %d, want 3", n)
			}
			c.Connect(t, a) // an open connection must not keep the database from being dropped
			names = append(names, a, b)
		})
	}
	if len(names) != 4 {
		t.Fatalf("subtests made %d databases, want 4", len(names))
	}
	if n := queryInt(t, c, "postgres", `SELECT count(*) FROM pg_database WHERE datname = ANY($1)`, names); n != 0 {
		t.Errorf("%d of the databases %q remain after their tests, want 0", n, names)
	}
}

func TestStopStartRestartKill(t *testing.T) {
	c := pgtest.New(t)
	db := c.NewDB(t)
	sum := func() int { return queryInt(t, c, db, `SELECT coalesce(sum(v), 0) FROM t`) }
	c.Exec(t, db, `CREATE TABLE t (v int); INSERT INTO t VALUES (1)`)

	c.Stop(t)
	if err := connectErr(c.DSN(db)); err == nil {
		t.Fatal("connected to a stopped server")
	}
	c.Start(t)
	if got := sum(); got != 1 {
		t.Fatalf("after Stop and Start: sum = %d, want 1", got)
	}

	c.Exec(t, db, `INSERT INTO t VALUES (2)`)
	c.Restart(t)
	if got := sum(); got != 3 {
		t.Fatalf("after Restart: sum = %d, want 3", got)
	}

	c.Exec(t, db, `INSERT INTO t VALUES (4)`) // committed just before the crash
	c.Kill(t)
	if err := connectErr(c.DSN(db)); err == nil {
		t.Fatal("connected to a killed server")
	}
	c.Start(t)
	if got := sum(); got != 7 {
		t.Fatalf("after Kill and Start: sum = %d, want 7", got)
	}
	if !docker() { // LOG lines pass log_min_messages = warning
		// Start's tries to connect during recovery log a line each: look far enough back.
		if log := c.LogTail(200); !strings.Contains(log, "was interrupted") || !strings.Contains(log, "redo done") {
			t.Errorf("server log shows no crash recovery after Kill:\n%s", log)
		}
	}
}

func TestTwoClusters(t *testing.T) {
	a, b := pgtest.New(t), pgtest.New(t)
	if a.Port() == b.Port() {
		t.Errorf("both clusters have port %d", a.Port())
	}
	if a.DSN("postgres") == b.DSN("postgres") {
		t.Errorf("both clusters have DSN %q", a.DSN("postgres"))
	}
	db := a.NewDB(t)
	if n := queryInt(t, b, "postgres", `SELECT count(*) FROM pg_database WHERE datname = $1`, db); n != 0 {
		t.Errorf("database %q of one cluster exists in the other", db)
	}
}

func TestParallel(t *testing.T) {
	for i := range 3 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			own, shared := pgtest.New(t), pgtest.Shared(t)
			for _, c := range []*pgtest.Cluster{own, shared} {
				db := c.NewDB(t)
				c.Exec(t, db, `CREATE TABLE t (v int)`)
				c.Exec(t, db, `INSERT INTO t VALUES ($1)`, i)
				if n := queryInt(t, c, db, `SELECT sum(v) FROM t`); n != i {
					t.Errorf("sum(v) = %d, want %d", n, i)
				}
			}
		})
	}
}

func TestBinDir(t *testing.T) {
	if docker() {
		t.Skip("the docker backend uses no local binaries")
	}
	pgtest.Shared(t) // skips, or fails under CI, when PostgreSQL is not available
	dir, err := pgtest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"postgres", "initdb"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("BinDir() = %s: %v", dir, err)
		}
	}
}

func TestShared(t *testing.T) {
	c := pgtest.Shared(t)
	t.Run("again", func(t *testing.T) {
		if got := pgtest.Shared(t); got != c {
			t.Errorf("Shared returned %p, then %p", c, got)
		}
	})
	if n := queryInt(t, c, "postgres", `SELECT 1`); n != 1 {
		t.Errorf("SELECT 1 = %d", n)
	}
}

// TestOrphan proves that no server outlives a test binary killed with SIGKILL: it runs this test
// binary's TestOrphanChild, which starts a cluster and waits, kills it, and waits for its server to go.
func TestOrphan(t *testing.T) {
	if docker() {
		t.Skip("the docker backend cannot stop containers when the test binary is killed")
	}
	pgtest.Shared(t) // skips, or fails under CI, when PostgreSQL is not available
	// Become the parent of the child's orphans, so that alive can reap them once they exit, instead
	// of leaving zombies to an init that may not reap them.
	setSubreaper(t)
	pidFile := filepath.Join(t.TempDir(), "pids")
	var out bytes.Buffer
	child := exec.Command(os.Args[0], "-test.run=^TestOrphanChild$", "-test.count=1", "-test.v")
	child.Env = append(os.Environ(), orphanEnv+"="+pidFile)
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = child.Wait() // killed, so an error
		close(exited)
	}()
	t.Cleanup(func() {
		_ = child.Process.Kill()
		<-exited
	})

	var pids []int
	deadline := time.Now().Add(60 * time.Second)
	for pids == nil {
		if b, err := os.ReadFile(pidFile); err == nil {
			for _, f := range strings.Fields(string(b)) {
				pid, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("pid file %q: %v", b, err)
				}
				pids = append(pids, pid)
			}
		}
		select {
		case <-exited:
			t.Fatalf("child exited before writing its pids:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("child wrote no pids in 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { // if the test failed, leave no server (nor zombie) behind
		for _, pid := range pids {
			if alive(pid) {
				_ = syscall.Kill(pid, syscall.SIGQUIT)
			}
		}
		for _, pid := range pids {
			for deadline := time.Now().Add(10 * time.Second); alive(pid) && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("pid %d of the child's server is not running", pid)
		}
	}

	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	killed := time.Now()
	for _, pid := range pids {
		for alive(pid) {
			if time.Since(killed) > 10*time.Second {
				t.Fatalf("pid %d still running 10s after its test binary was killed", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("the child's postmaster and backend (pids %v) were gone %v after SIGKILL of the child",
		pids, time.Since(killed).Round(time.Millisecond))
}

// TestOrphanChild is run by TestOrphan in a child process: it starts a cluster, writes the pids of its
// postmaster and of a backend to the file named by $PGTEST_ORPHAN_CHILD, and waits to be killed.
func TestOrphanChild(t *testing.T) {
	pidFile := os.Getenv(orphanEnv)
	if pidFile == "" {
		t.Skip("helper process of TestOrphan")
	}
	c := pgtest.New(t)
	backend := queryInt(t, c, "postgres", `SELECT pg_backend_pid()`)
	postmaster, err := parentPID(backend)
	if err != nil {
		t.Fatal(err)
	}
	tmp := pidFile + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d %d\n", postmaster, backend), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, pidFile); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Minute)
	t.Error("not killed by TestOrphan within 2 minutes")
}

// parentPID returns the parent of process pid.
func parentPID(pid int) (int, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid ...
	i := bytes.LastIndexByte(stat, ')')
	var fields []string
	if i >= 0 {
		fields = strings.Fields(string(stat[i+1:]))
	}
	if len(fields) < 2 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %q", pid, stat)
	}
	return strconv.Atoi(fields[1])
}

// setSubreaper makes the test binary the subreaper of its descendants for the rest of t.
func setSubreaper(t *testing.T) {
	t.Helper()
	const prSetChildSubreaper = 36 // PR_SET_CHILD_SUBREAPER of <linux/prctl.h>
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", errno)
	}
	t.Cleanup(func() { _, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 0, 0) })
}

// alive reports whether process pid exists and is not a zombie, reaping it if it is a zombie child.
func alive(pid int) bool {
	var status syscall.WaitStatus
	if reaped, _ := syscall.Wait4(pid, &status, syscall.WNOHANG, nil); reaped == pid {
		return false
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
