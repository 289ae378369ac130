package catalog

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// flushCounter is a connection to the server that counts its writes: pgx
// writes once per round trip (a query, or a pipeline up to its Sync), then
// waits for the answer.
type flushCounter struct {
	net.Conn
	writes *atomic.Int64
}

func (f flushCounter) Write(b []byte) (int, error) {
	f.writes.Add(1)
	return f.Conn.Write(b)
}

// countedConn connects to dbname on the shared cluster through a
// flushCounter.
func countedConn(t *testing.T, dsn string) (*pgx.Conn, *atomic.Int64) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	writes := new(atomic.Int64)
	var d net.Dialer
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return flushCounter{Conn: c, writes: writes}, nil
	}
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn, writes
}

// runSetup is a sync s (and a sync other) on a catalog.
const runSetup = `
	INSERT INTO gobucardo.db (name, dbname) VALUES ('A', 'a'), ('B', 'b');
	INSERT INTO gobucardo.dbgroup (name) VALUES ('g');
	INSERT INTO gobucardo.dbgroup_member (dbgroup, db, role, position) VALUES ('g', 'A', 'source', 0), ('g', 'B', 'target', 1);
	INSERT INTO gobucardo.relgroup (name, db) VALUES ('r', 'A');
	INSERT INTO gobucardo.sync (name, relgroup, dbgroup) VALUES ('s', 'r', 'g'), ('other', 'r', 'g');`

// TestStartRunRoundTrips: once its statements are prepared on the session,
// a run that starts (the common case: not paused, lock free), a run refused
// as busy and one refused as paused each cost one round trip to the main
// database (it took seven: BEGIN, the share lock, the pause, the record,
// the run lock, the interrupted runs, COMMIT); the run is recorded and holds
// the run lock all the same.
func TestStartRunRoundTrips(t *testing.T) {
	c, conn := installed(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, runSetup); err != nil {
		t.Fatal(err)
	}
	var dbname string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&dbname); err != nil {
		t.Fatal(err)
	}
	ctl, writes := countedConn(t, c.DSN(dbname))
	start := func() (int64, int64, error) {
		t.Helper()
		before := writes.Load()
		id, err := StartRun(ctx, ctl, "s", 1, "h", "Started (test)")
		return id, writes.Load() - before, err
	}
	// The first run prepares the statements.
	id, _, err := start()
	if err != nil {
		t.Fatal(err)
	}
	if err := FinishRun(ctx, ctl, "s", id, RunEnd{State: RunGood, Status: "Complete"}); err != nil {
		t.Fatal(err)
	}
	id, trips, err := start()
	if err != nil {
		t.Fatal(err)
	}
	if trips != 1 {
		t.Errorf("StartRun took %d round trips, want 1", trips)
	}
	var state string
	if err := conn.QueryRow(ctx, "SELECT state FROM gobucardo.syncrun WHERE id = $1", id).Scan(&state); err != nil || state != RunRunning {
		t.Errorf("the run started is %q (%v), want running", state, err)
	}
	if _, err := StartRun(ctx, conn, "s", 2, "h", "Started (test)"); !errors.As(err, new(*BusyError)) {
		t.Errorf("StartRun on another session while the run holds its lock = %v, want a BusyError", err)
	}

	// Busy: another session holds the lock.
	if err := FinishRun(ctx, ctl, "s", id, RunEnd{State: RunGood, Status: "Complete"}); err != nil {
		t.Fatal(err)
	}
	if _, err := StartRun(ctx, conn, "s", 2, "h", "Started (test)"); err != nil {
		t.Fatal(err)
	}
	_, trips, err = start()
	if !errors.As(err, new(*BusyError)) || trips != 1 {
		t.Errorf("StartRun of a busy sync = %v in %d round trips, want a BusyError in 1", err, trips)
	}
	if err := EndRunLock(ctx, conn, "s"); err != nil {
		t.Fatal(err)
	}

	// Paused.
	if err := Pause(ctx, conn, "s", "for the test"); err != nil {
		t.Fatal(err)
	}
	_, trips, err = start()
	if !errors.As(err, new(*PausedError)) || trips != 1 {
		t.Errorf("StartRun of a paused sync = %v in %d round trips, want a PausedError in 1", err, trips)
	}
}

// TestStartRunWaitsForPause: a StartRun that comes while a Pause is in
// progress waits for it and, once the Pause has committed, starts no run.
// A StartRun that read the pause state before its wait for the sync's row
// ended (one snapshot for the lock and the check) would start the run.
func TestStartRunWaitsForPause(t *testing.T) {
	c, conn := installed(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, runSetup); err != nil {
		t.Fatal(err)
	}
	var dbname string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&dbname); err != nil {
		t.Fatal(err)
	}
	ctl := c.Connect(t, dbname)
	// Warm: the statements are prepared, as on a controller's kept session.
	id, err := StartRun(ctx, ctl, "s", 1, "h", "Started (test)")
	if err != nil {
		t.Fatal(err)
	}
	if err := FinishRun(ctx, ctl, "s", id, RunEnd{State: RunGood, Status: "Complete"}); err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := Pause(ctx, tx, "s", "in progress"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := StartRun(ctx, ctl, "s", 1, "h", "Started (test)")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("StartRun returned %v while a Pause was in progress", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var pe *PausedError
		if !errors.As(err, &pe) || pe.Reason != "in progress" {
			t.Errorf("StartRun after the Pause committed = %v, want a PausedError", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("StartRun did not return once the Pause had committed")
	}
	var running int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM gobucardo.syncrun WHERE state = 'running'").Scan(&running); err != nil || running != 0 {
		t.Errorf("%d runs running after the pause (%v), want none", running, err)
	}
}

// TestStartRunUnknownSync: a run of a sync not in the catalog is refused by
// the record's foreign key, and leaves no run lock on the session (the lock
// is taken in the statement that fails).
func TestStartRunUnknownSync(t *testing.T) {
	_, conn := installed(t)
	ctx := context.Background()
	if _, err := StartRun(ctx, conn, "nosuch", 1, "h", "Started (test)"); err == nil ||
		!strings.HasPrefix(err.Error(), "record run of sync nosuch: ") {
		t.Errorf("StartRun of an unknown sync = %v", err)
	}
	var locks int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()").Scan(&locks); err != nil || locks != 0 {
		t.Errorf("%d advisory locks held after the failed StartRun (%v), want none", locks, err)
	}
	var runs int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM gobucardo.syncrun").Scan(&runs); err != nil || runs != 0 {
		t.Errorf("%d runs recorded (%v), want none", runs, err)
	}
}

func TestStartedRunOutcome(t *testing.T) {
	id := int64(42)
	for _, tc := range []struct {
		name string
		s    startedRun
		want string // the error, "" for the run's id
	}{
		{"started", startedRun{locked: true, id: &id}, ""},
		{"paused", startedRun{paused: true, reason: "why"}, "sync s is paused (why): mcp resume s first"},
		{"paused without a reason", startedRun{paused: true}, "sync s is paused: mcp resume s first"},
		{"busy", startedRun{}, "sync s has a run in progress elsewhere (its controller or an mcp sync run): try again once it has ended (mcp status s)"},
		{"locked, not recorded", startedRun{locked: true}, "record run of sync s: no run was recorded"},
	} {
		got, err := tc.s.outcome("s")
		switch {
		case tc.want == "" && (err != nil || got != id):
			t.Errorf("%s: outcome = %d, %v, want %d", tc.name, got, err, id)
		case tc.want != "" && (err == nil || err.Error() != tc.want || got != 0):
			t.Errorf("%s: outcome = %d, %v, want %q", tc.name, got, err, tc.want)
		}
	}
}
