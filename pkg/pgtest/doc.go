// Package pgtest starts real, throw-away PostgreSQL clusters for tests.
//
// Tests talk to a real server, never a mock. A package that uses pgtest runs its tests through Main, so
// that every cluster is stopped and its files removed when the tests end:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		c := pgtest.New(t)     // a cluster of its own, stopped in t.Cleanup
//		db := c.NewDB(t)       // a fresh database, dropped in t.Cleanup
//		c.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY)`)
//		conn := c.Connect(t, db)
//		...
//	}
//
// Shared gives one cluster per test binary for tests that only need databases; New gives a cluster of
// its own to a test that stops, kills or reconfigures it. Never Stop, Kill or Restart the shared cluster.
//
// # Local backend (the default)
//
// The server binaries are found by BinDir: PGTEST_BINDIR if set, else `pg_config --bindir`, else the
// highest version under /usr/lib/postgresql/*/bin. The first cluster of a test binary runs initdb once
// (trust authentication, superuser postgres, UTF8, locale C) into a template data directory; each cluster
// is a copy of it, so a cluster starts in a fraction of a second. Each cluster listens on a free TCP port
// on 127.0.0.1 and on a unix socket in a directory of its own (Host). The server is tuned for speed and
// not for durability against an operating system crash: fsync, full_page_writes off, shared_buffers 16MB.
// synchronous_commit stays on (it costs one write(2) per commit with fsync off) so that a committed
// transaction survives Kill, which fault tests rely on. The settings are written to postgresql.conf, so
// a test may change them with ALTER SYSTEM and Restart; the port, socket directory and listen address
// are given on the command line and cannot be changed. The server writes its log to a file in the cluster
// directory (log_min_messages = warning, which still lets LOG lines such as startup, shutdown and crash
// recovery through); LogTail reads it, and a failed test using New shows its tail.
//
// All files live under a base directory os.TempDir()/gobucardo-pgtest-<pid>-*, removed by Main. Creating
// the thousand files of a data directory dominates the start time on a slow disk; TMPDIR=/dev/shm makes
// it negligible. A test
// binary also removes the base directories of earlier test binaries that are no longer running (killed,
// or run without Main).
//
// PostgreSQL refuses to run as root. When the test runs as root, initdb and postgres run as the OS user
// postgres (which must exist), and every directory they use is made reachable by and owned by it; this is
// why the base directory is under os.TempDir() (which must be reachable by that user) and not under
// t.TempDir(), which is private to root.
//
// # No orphaned servers
//
// Every server is a child process of the test binary (postgres is run directly, not through pg_ctl,
// which would daemonize it), in a process group of its own, and is started with a parent-death signal
// (SysProcAttr.Pdeathsig = SIGQUIT, an immediate shutdown). Linux sends that signal when the thread that
// started the child exits, not the process, so all servers are started from one goroutine locked to its
// OS thread that never returns. A server is therefore stopped when the test binary exits in any way:
// normally (Main and t.Cleanup stop servers gracefully), by a panic, by `go test -timeout`, or by SIGKILL.
//
// # Docker backend
//
// With PGTEST_BACKEND=docker the clusters are containers started with github.com/ory/dockertest from the
// image PGTEST_IMAGE (default postgres:15), with trust authentication, published on a free port of
// 127.0.0.1 (Host is "127.0.0.1", and DSN is the same as TCPDSN). Stop, Start, Restart and Kill map to
// docker stop, start, restart and kill (SIGKILL); a cluster is purged, with its volumes, when it is no
// longer needed. LogTail is empty (use docker logs). Containers are labelled with the pid and host name
// of the test binary, and containers left by dead test binaries of this host are purged at start. The
// Docker daemon is found as dockertest finds it (DOCKER_HOST, else the local socket).
//
// # Environment
//
//	PGTEST_BACKEND  "local" (default) or "docker"
//	PGTEST_BINDIR   directory of the postgres and initdb binaries (local backend)
//	PGTEST_IMAGE    Docker image (docker backend), default postgres:15
//	CI              when true, a missing PostgreSQL (no binaries, no postgres user when root, Docker
//	                unreachable) fails the test; otherwise the test is skipped with a hint to install
//	                PostgreSQL (apt-get install postgresql)
//
// Errors other than a missing PostgreSQL, such as a server that does not start, always fail the test.
//
// The package runs on Linux only (it relies on Pdeathsig and /proc).
package pgtest
