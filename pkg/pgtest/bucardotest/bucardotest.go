package bucardotest

import (
	"bytes"
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
)

// MainDB is the name of Bucardo's main database on the cluster.
const MainDB = "bucardo"

// Bucardo is a Bucardo installed on a pgtest cluster.
type Bucardo struct {
	C *pgtest.Cluster
	// DB is the name of Bucardo's main database (MainDB).
	DB     string
	piddir string
}

// Missing returns what a machine lacks to run Bucardo against the pgtest
// server binaries, as the Debian package to install, or "" if nothing.
func Missing() string {
	if _, err := exec.LookPath("bucardo"); err != nil {
		return "the bucardo command (apt-get install bucardo libdbd-pg-perl)"
	}
	bin, err := pgtest.BinDir()
	if err != nil {
		return "PostgreSQL's server binaries (apt-get install postgresql)"
	}
	if _, err := os.Stat(filepath.Join(bin, "..", "lib", "plperl.so")); err != nil {
		return fmt.Sprintf("PL/Perl for the PostgreSQL of %s (apt-get install postgresql-plperl-%s)", bin, majorOf(bin))
	}
	return ""
}

// majorOf guesses the major version from a bin directory such as
// /usr/lib/postgresql/15/bin.
func majorOf(bin string) string {
	v := filepath.Base(filepath.Dir(bin))
	if _, err := strconv.Atoi(v); err != nil {
		return "15"
	}
	return v
}

// Install runs bucardo install on c (its main database MainDB, PL/PerlU
// created by Bucardo) and returns it. It skips tb, naming the package, when
// Bucardo or PL/Perl is missing.
func Install(tb testing.TB, c *pgtest.Cluster) *Bucardo {
	tb.Helper()
	if m := Missing(); m != "" {
		tb.Skipf("bucardotest: Bucardo cannot run here: install %s", m)
	}
	b := &Bucardo{C: c, DB: MainDB, piddir: tb.TempDir()}
	b.bucardo(tb, "install", "--batch")
	return b
}

// Run runs the bucardo command with args against this Bucardo and returns
// its output; it fails tb when bucardo fails or says it did nothing.
func (b *Bucardo) Run(tb testing.TB, args ...string) string {
	tb.Helper()
	out := b.bucardo(tb, args...)
	for _, bad := range []string{"Did not find matches", "ERROR", "already exists", "Usage:"} {
		if strings.Contains(out, bad) {
			tb.Fatalf("bucardo %s: %s", strings.Join(args, " "), out)
		}
	}
	return out
}

func (b *Bucardo) bucardo(tb testing.TB, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := []string{"--dbhost", b.C.Host(), "--dbport", strconv.Itoa(b.C.Port()), "--dbuser", "postgres",
		"--dbname", b.DB, "--piddir", b.piddir, "--quiet"}
	cmd := exec.CommandContext(ctx, "bucardo", append(conn, args...)...)
	cmd.Dir = b.piddir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		tb.Fatalf("bucardo %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// DSN is the connection string of Bucardo's main database, as user postgres.
func (b *Bucardo) DSN() string { return b.C.DSN(b.DB) }

// AddDB adds database dbname of the cluster to Bucardo as name, with extra
// settings (pass=..., status=...).
func (b *Bucardo) AddDB(tb testing.TB, name, dbname string, extra ...string) {
	tb.Helper()
	args := []string{"add", "db", name, "dbname=" + dbname, "host=" + b.C.Host(), "port=" + strconv.Itoa(b.C.Port()), "user=postgres"}
	b.Run(tb, append(args, extra...)...)
}

// Start starts Bucardo's daemon (bucardo start, logging into a temp
// directory), waits until it listens for kicks, and stops it in tb.Cleanup: bucardo stop, then SIGKILL to any
// process whose pid file is left.
func (b *Bucardo) Start(tb testing.TB) {
	tb.Helper()
	logdir := tb.TempDir()
	tb.Cleanup(func() { b.stop(tb, logdir) })
	b.bucardo(tb, "start", "--logdest", logdir)
	// bucardo start returns once it has forked; the daemon hears kicks
	// (NOTIFY) only from its main loop on.
	deadline := time.Now().Add(60 * time.Second)
	for {
		data, _ := os.ReadFile(filepath.Join(logdir, "log.bucardo"))
		if strings.Contains(string(data), "Entering main loop") {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("bucardotest: Bucardo's daemon did not reach its main loop within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop stops the daemon started by Start and logs its log tail if tb failed.
func (b *Bucardo) stop(tb testing.TB, logdir string) {
	tb.Helper()
	b.bucardo(tb, "stop")
	deadline := time.Now().Add(30 * time.Second)
	for {
		pids := b.pids()
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if tb.Failed() {
		if data, err := os.ReadFile(filepath.Join(logdir, "log.bucardo")); err == nil {
			tail := string(data)
			if len(tail) > 8000 {
				tail = tail[len(tail)-8000:]
			}
			tb.Logf("bucardotest: Bucardo's log tail:\n%s", tail)
		}
	}
}

// pids returns the pids of Bucardo's pid files that are alive.
func (b *Bucardo) pids() []int {
	files, _ := filepath.Glob(filepath.Join(b.piddir, "bucardo*.pid"))
	var out []int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		fields := strings.Fields(string(data))
		if len(fields) == 0 {
			continue
		}
		pid, err := strconv.Atoi(fields[0])
		if err == nil && pid > 0 && syscall.Kill(pid, 0) == nil {
			out = append(out, pid)
		}
	}
	return out
}
