package catalog

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// backendPID is the server process of the connection cc holds, connecting if
// it must.
func backendPID(t *testing.T, cc *Conn) (*pgx.Conn, int) {
	t.Helper()
	conn, err := cc.Get(context.Background())
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	var pid int
	if err := conn.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatalf("query on the connection Get returned: %v", err)
	}
	return conn, pid
}

// broken runs a query on the connection cc holds, expecting the error of a
// session that is gone, and hands it to Failed.
func broken(t *testing.T, cc *Conn) {
	t.Helper()
	conn, err := cc.Get(context.Background())
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	_, err = conn.Exec(context.Background(), "SELECT 1")
	if err == nil || !(pg.IsConnectionError(err) || conn.IsClosed()) {
		t.Fatalf("query on a broken session: %v (closed %v), want a connection error", err, conn.IsClosed())
	}
	cc.Failed(err)
}

// TestConnKeepsAndForgets: Get connects once and hands out the same session
// until an error broke it; errors that did not break it keep it.
func TestConnKeepsAndForgets(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	cc := &Conn{DSN: c.DSN(db), ConnectTimeout: 5 * time.Second}
	t.Cleanup(cc.Close)
	ctx := context.Background()

	first, pid := backendPID(t, cc)
	if again, pid2 := backendPID(t, cc); again != first || pid2 != pid {
		t.Fatalf("second Get: another session (pid %d, was %d)", pid2, pid)
	}

	// Errors of a live session keep it.
	_, err := first.Exec(ctx, "SELECT FROM no_such_table")
	if err == nil {
		t.Fatal("query on a missing table succeeded")
	}
	cc.Failed(err)
	cc.Failed(nil)
	if again, pid2 := backendPID(t, cc); again != first || pid2 != pid {
		t.Fatalf("after an error that did not break it: another session (pid %d, was %d)", pid2, pid)
	}

	// A terminated backend is forgotten and the next Get connects again.
	c.Exec(t, db, "SELECT pg_terminate_backend($1)", pid)
	broken(t, cc)
	if !first.IsClosed() {
		t.Error("the broken connection was not closed")
	}
	second, pid2 := backendPID(t, cc)
	if second == first || pid2 == pid {
		t.Fatalf("after pg_terminate_backend: the same session (pid %d)", pid2)
	}

	// An error that says the session is gone drops it, even before the
	// connection noticed.
	cc.Failed(io.ErrUnexpectedEOF)
	if !second.IsClosed() {
		t.Fatal("a connection error left the connection open")
	}
	second, pid2 = backendPID(t, cc)

	// Close lets the session go; Get connects again; Close twice is harmless.
	cc.Close()
	if !second.IsClosed() {
		t.Error("Close left the connection open")
	}
	cc.Close()
	if third, pid3 := backendPID(t, cc); third == second || pid3 == pid2 {
		t.Fatalf("Get after Close: the same session (pid %d)", pid3)
	}

	// The zero Conn holds nothing to forget or close.
	var zero Conn
	zero.Failed(context.Canceled)
	zero.Close()
}

// TestConnServerRestart: across a restart and an outage of the server, Get
// fails while it is down and reconnects once it is back.
func TestConnServerRestart(t *testing.T) {
	c := pgtest.New(t)
	db := c.NewDB(t)
	cc := &Conn{DSN: c.DSN(db), ConnectTimeout: 5 * time.Second}
	t.Cleanup(cc.Close)
	_, pid := backendPID(t, cc)

	c.Restart(t)
	broken(t, cc)
	_, pid2 := backendPID(t, cc)
	if pid2 == pid {
		t.Fatalf("after a restart: the same backend pid %d", pid)
	}

	c.Stop(t)
	broken(t, cc)
	if _, err := cc.Get(context.Background()); err == nil || !pg.IsConnectionError(err) {
		t.Fatalf("Get while the server is down: %v, want a connection error", err)
	}
	c.Start(t)
	backendPID(t, cc)
}
