package bench

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// serverSettings are applied to every cluster of the benchmarks on top of
// pgtest's (which favour start-up speed: shared_buffers 16MB): PostgreSQL's
// own default, so that the figures resemble a stock server's.
var serverSettings = map[string]string{
	"shared_buffers": "128MB",
}

// newServer starts a cluster of its own for b, with serverSettings.
func newServer(b *testing.B) *pgtest.Cluster {
	b.Helper()
	c := pgtest.New(b)
	for k, v := range serverSettings {
		c.Exec(b, "postgres", "ALTER SYSTEM SET "+k+" = '"+v+"'")
	}
	c.Restart(b)
	return c
}

// serverPair is two clusters of their own with a database each: A, the
// source (or first source), and B.
type serverPair struct {
	aC, bC   *pgtest.Cluster
	aDB, bDB string
	a, b     *pgx.Conn // connections to aDB and bDB
	server   string    // serverInfo of A's
}

// newServerPair starts the clusters of a pair; what names them in the
// progress line.
func newServerPair(b *testing.B, what string) serverPair {
	b.Helper()
	progressf(b, "starting the %s", what)
	var p serverPair
	p.aC, p.bC = newServer(b), newServer(b)
	p.aDB, p.bDB = p.aC.NewDB(b), p.bC.NewDB(b)
	p.a, p.b = p.aC.Connect(b, p.aDB), p.bC.Connect(b, p.bDB)
	p.server = serverInfo(b, p.a)
	return p
}

// newMCP installs a main database on A's cluster and adds the pair's
// databases to it as db A and db B.
func (p serverPair) newMCP(b *testing.B) mcp {
	b.Helper()
	m := mcp{bin: mcpBinary(b), dsn: p.aC.DSN("gobucardo")}
	m.run(b, "install", "--create-db")
	m.run(b, append([]string{"add", "db", "A"}, dbArgs(p.aC, p.aDB)...)...)
	m.run(b, append([]string{"add", "db", "B"}, dbArgs(p.bC, p.bDB)...)...)
	return m
}

// serverInfo describes the server behind conn for the report's header.
func serverInfo(b *testing.B, conn *pgx.Conn) string {
	b.Helper()
	var version, buffers, fsync, syncCommit string
	err := conn.QueryRow(context.Background(), `SELECT current_setting('server_version'), current_setting('shared_buffers'),
		current_setting('fsync'), current_setting('synchronous_commit')`).Scan(&version, &buffers, &fsync, &syncCommit)
	if err != nil {
		b.Fatalf("read server settings: %v", err)
	}
	return "PostgreSQL " + version + "; shared_buffers " + buffers + ", fsync " + fsync + ", synchronous_commit " + syncCommit
}

// timedExec runs sql on conn and returns how long it took, failing b on
// error. Without a transaction around it, the time includes the commit.
func timedExec(b *testing.B, conn *pgx.Conn, sql string, args ...any) time.Duration {
	b.Helper()
	start := time.Now()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		b.Fatalf("%s: %v", sql, err)
	}
	return time.Since(start)
}

// mustExec runs sql on conn, failing b on error.
func mustExec(b *testing.B, conn *pgx.Conn, sql string, args ...any) {
	b.Helper()
	timedExec(b, conn, sql, args...)
}

// settle checkpoints every connection's server, so that a checkpoint caused
// by earlier work does not land in the next timed step.
func settle(b *testing.B, conns ...*pgx.Conn) {
	b.Helper()
	for _, c := range conns {
		mustExec(b, c, "CHECKPOINT")
	}
}
