package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// superuser is the role every cluster is created with (trust authentication).
	superuser = "postgres"
	// readyTimeout bounds how long a starting server may take to accept connections.
	readyTimeout = 30 * time.Second
	// connectTimeout bounds one connection attempt made for a test.
	connectTimeout = 30 * time.Second
	// failedLogLines is how much of the server log a failing test shows.
	failedLogLines = 40
)

// server is a backend's handle on one PostgreSQL server.
type server interface {
	host() string
	port() int
	running() bool
	start() error
	stop() error // fast shutdown, waits until the server is gone
	kill() error // crash: immediate shutdown, or SIGKILL
	logTail(n int) string
	destroy() error // stops the server if running and removes every trace of it
}

// backend starts servers: local binaries or Docker containers.
type backend interface {
	// available says why PostgreSQL cannot be had here (nil when it can), with a hint to the remedy;
	// it skips the test, or fails it under CI.
	available() error
	newServer() (server, error)
	// close removes what the backend keeps besides its servers; Main calls it after stopping them.
	close() error
}

var (
	theBackend = sync.OnceValue(func() backend {
		if os.Getenv("PGTEST_BACKEND") == "docker" {
			return &dockerBackend{}
		}
		return &localBackend{}
	})

	// live holds every server started and not yet destroyed, for Main to stop.
	live = struct {
		sync.Mutex
		servers map[server]struct{}
	}{servers: make(map[server]struct{})}

	shared struct {
		sync.Mutex
		c   *Cluster
		err error
	}

	dbSeq atomic.Int64
)

// Main runs the tests of a package and then stops every cluster started (Shared ones, and any left by a
// test) and removes their files:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// Main returns after cleaning up, and the test binary exits with the result of m.Run (the testing
// framework does so when TestMain returns). Only when the tests passed but the cleanup failed does
// Main itself exit, with status 1, after writing the error to stderr.
func Main(m *testing.M) {
	code := m.Run()
	if err := stopAll(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			os.Exit(1)
		}
	}
}

// stopAll destroys every live server and closes the backend.
func stopAll() error {
	live.Lock()
	servers := make([]server, 0, len(live.servers))
	for s := range live.servers {
		servers = append(servers, s)
	}
	live.Unlock()
	var errs []error
	for _, s := range servers {
		errs = append(errs, forget(s))
	}
	errs = append(errs, theBackend().close())
	return errors.Join(errs...)
}

// forget destroys s and drops it from live.
func forget(s server) error {
	err := s.destroy()
	live.Lock()
	delete(live.servers, s)
	live.Unlock()
	return err
}

// Cluster is one running PostgreSQL server (superuser "postgres", trust auth).
type Cluster struct {
	srv server
}

// New starts a new cluster for tb and stops it in tb.Cleanup. If the test failed, the cleanup first logs
// the tail of the server log.
func New(tb testing.TB) *Cluster {
	tb.Helper()
	c, err := start(tb)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			if tail := c.LogTail(failedLogLines); tail != "" {
				tb.Logf("pgtest: server log tail (%s):\n%s", c.Host(), tail)
			}
		}
		if err := forget(c.srv); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// Shared returns one cluster per test binary, started on first use and stopped by Main. Tests must not
// Stop, Kill or Restart it; give each test its own databases with NewDB. Without Main, the server still
// stops when the test binary exits, and its files are removed by the next test binary.
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	shared.Lock()
	defer shared.Unlock()
	if shared.c == nil && shared.err == nil {
		shared.c, shared.err = start(tb)
	}
	if shared.err != nil {
		tb.Fatalf("pgtest: shared cluster: %v", shared.err)
	}
	return shared.c
}

// start starts a server, skipping or failing tb when PostgreSQL is not available.
func start(tb testing.TB) (*Cluster, error) {
	tb.Helper()
	if v := os.Getenv("PGTEST_BACKEND"); v != "" && v != "local" && v != "docker" {
		tb.Fatalf("pgtest: PGTEST_BACKEND=%q, want local or docker", v)
	}
	b := theBackend()
	if err := b.available(); err != nil {
		unavailable(tb, err)
	}
	srv, err := b.newServer()
	if err != nil {
		return nil, err
	}
	live.Lock()
	live.servers[srv] = struct{}{}
	live.Unlock()
	return &Cluster{srv: srv}, nil
}

// unavailable skips tb because PostgreSQL cannot be had, or fails it under CI.
func unavailable(tb testing.TB, err error) {
	tb.Helper()
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		tb.Fatalf("pgtest: PostgreSQL is required under CI=true: %v", err)
	}
	tb.Skipf("pgtest: PostgreSQL not available, skipping: %v", err)
}

// Host returns the unix socket directory (local backend) or "127.0.0.1" (docker backend).
func (c *Cluster) Host() string { return c.srv.host() }

// Port returns the TCP port, which is also the port of the unix socket.
func (c *Cluster) Port() int { return c.srv.port() }

// DSN returns a libpq key/value connection string for database db as user postgres, e.g.
// "host=/tmp/... port=5433 user=postgres dbname=db sslmode=disable".
func (c *Cluster) DSN(db string) string { return dsn(c.Host(), c.Port(), db) }

// TCPDSN is DSN over TCP to 127.0.0.1.
func (c *Cluster) TCPDSN(db string) string { return dsn("127.0.0.1", c.Port(), db) }

func dsn(host string, port int, db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable",
		quoteDSN(host), port, superuser, quoteDSN(db))
}

// quoteDSN quotes a value of a key/value connection string when it needs it.
func quoteDSN(v string) string {
	if v != "" && !strings.ContainsAny(v, ` '\`) {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// Connect returns a connection to db, closed in tb.Cleanup.
func (c *Cluster) Connect(tb testing.TB, db string) *pgx.Conn {
	tb.Helper()
	conn, err := c.connect(db)
	if err != nil {
		c.fatalf(tb, "%v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		defer cancel()
		_ = conn.Close(ctx) // closing a connection to a stopped server may fail; nothing to do about it
	})
	return conn
}

func (c *Cluster) connect(db string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", db, err)
	}
	return conn, nil
}

// Exec runs sql on db and fails the test on error. Without args, sql may contain several statements
// (simple protocol); with args it is one statement with placeholders $1, $2, ...
func (c *Cluster) Exec(tb testing.TB, db, sql string, args ...any) {
	tb.Helper()
	if err := c.exec(db, sql, args...); err != nil {
		c.fatalf(tb, "%v", err)
	}
}

func (c *Cluster) exec(db, sql string, args ...any) error {
	conn, err := c.connect(db)
	if err != nil {
		return err
	}
	ctx := context.Background()
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("exec on %s: %w\n%s", db, err, abbrev(sql, 500))
	}
	return nil
}

// NewDB creates a fresh, empty database whose name is derived from tb.Name(), drops it in tb.Cleanup
// (if the server is running then), and returns its name.
func (c *Cluster) NewDB(tb testing.TB) string {
	tb.Helper()
	name := dbName(tb.Name(), dbSeq.Add(1))
	ident := pgx.Identifier{name}.Sanitize()
	c.Exec(tb, "postgres", "CREATE DATABASE "+ident+" TEMPLATE template0")
	tb.Cleanup(func() {
		if !c.srv.running() {
			return // stopped by the test, or already destroyed: nothing to drop
		}
		if err := c.exec("postgres", "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return name
}

// dbName makes a database name (at most 63 bytes, unquoted-identifier safe) from a test name and a
// sequence number that makes it unique in the test binary.
func dbName(testName string, seq int64) string {
	var b strings.Builder
	underscore := false
	for _, r := range strings.ToLower(testName) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			underscore = false
		} else if !underscore {
			b.WriteByte('_')
			underscore = true
		}
	}
	base := strings.Trim(b.String(), "_")
	if base == "" || base[0] >= '0' && base[0] <= '9' {
		base = "t" + base
	}
	suffix := "_" + strconv.FormatInt(seq, 10)
	const maxLen = 63 // NAMEDATALEN - 1
	if len(base)+len(suffix) > maxLen {
		base = strings.TrimRight(base[:maxLen-len(suffix)], "_")
	}
	return base + suffix
}

// Stop shuts the server down (fast mode) and waits until it is gone.
func (c *Cluster) Stop(tb testing.TB) {
	tb.Helper()
	if err := c.srv.stop(); err != nil {
		c.fatalf(tb, "stop: %v", err)
	}
}

// Start starts the server again on the same port and data directory and waits until it accepts
// connections.
func (c *Cluster) Start(tb testing.TB) {
	tb.Helper()
	if err := c.srv.start(); err != nil {
		c.fatalf(tb, "start: %v", err)
	}
}

// Restart is Stop followed by Start.
func (c *Cluster) Restart(tb testing.TB) {
	tb.Helper()
	c.Stop(tb)
	c.Start(tb)
}

// Kill crashes the server for fault tests: an immediate shutdown (SIGQUIT, like pg_ctl -m immediate) on
// the local backend, docker kill (SIGKILL) on the docker backend. The next Start runs crash recovery.
func (c *Cluster) Kill(tb testing.TB) {
	tb.Helper()
	if err := c.srv.kill(); err != nil {
		c.fatalf(tb, "kill: %v", err)
	}
}

// LogTail returns the last n lines of the server log (empty for the docker backend).
func (c *Cluster) LogTail(n int) string { return c.srv.logTail(n) }

// fatalf fails tb with a message followed by the tail of the server log.
func (c *Cluster) fatalf(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if tail := c.LogTail(failedLogLines); tail != "" {
		msg += "\nserver log tail:\n" + tail
	}
	tb.Fatal("pgtest: " + msg)
}

func abbrev(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
