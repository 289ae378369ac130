package replicate

import (
	"context"
	"slices"
	"testing"
	"time"
)

// keptPIDs are the backend pids of the sessions e.opts.Sessions keeps, by
// db name (a source's reading session first).
func (e *env) keptPIDs() map[string][]uint32 {
	e.t.Helper()
	s := e.opts.Sessions
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]uint32{}
	for k, c := range s.idle {
		if k.writer {
			out[k.db] = append(out[k.db], c.conn.PgConn().PID())
		} else {
			out[k.db] = append([]uint32{c.conn.PgConn().PID()}, out[k.db]...)
		}
	}
	return out
}

// killKept terminates the backends of the kept sessions (all of them, or
// one), as a server restart or an administrator would, and waits until
// they are gone.
func (e *env) killKept(all bool) {
	e.t.Helper()
	var pids []uint32
	for _, ps := range e.keptPIDs() {
		pids = append(pids, ps...)
	}
	if !all && len(pids) > 1 {
		pids = pids[:1]
	}
	ctx := context.Background()
	// A kept session killed before, that no run has used since, is gone.
	var asked, done int
	err := e.conn(e.source()).QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))
		FROM pg_stat_activity WHERE pid = ANY($1)`, pids).Scan(&asked, &done)
	if err != nil || asked != done {
		e.t.Fatalf("terminate backends %v: %d of %d (%v)", pids, done, asked, err)
	}
}

// TestKeptSessions: runs with Options.Sessions use the same backends run
// after run; kept sessions that died between runs (terminated backends)
// cost no run and lose no row; a session whose DSN changed is closed.
func TestKeptSessions(t *testing.T) {
	e := newEnv(t, basicSchema, []string{"A:source", "B:target", "C:target"}, []Relation{accounts, seq1})
	ctx := context.Background()
	e.opts.Sessions = NewSessions()
	defer e.opts.Sessions.Close(ctx)
	e.exec("A", "INSERT INTO accounts SELECT g, 1, 0, 'x' FROM generate_series(1, 100) g")
	e.run()
	first := e.keptPIDs()
	if len(first) != 3 || e.opts.Sessions.Len() != 3 {
		t.Fatalf("kept sessions after a run: %v, want one on each of A, B, C", first)
	}
	// A kept session holds nothing between runs.
	var temps, locks int
	for k, c := range e.opts.Sessions.idle {
		if tx := c.conn.PgConn().TxStatus(); tx != 'I' {
			t.Errorf("kept session on %s is in transaction state %c", k.db, tx)
		}
	}
	if err := e.conn("A").QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE pid = ANY($1)`, []int64{int64(first["A"][0])}).Scan(&locks); err != nil || locks != 0 {
		t.Errorf("the kept source session holds %d locks (%v)", locks, err)
	}
	e.exec("A", "UPDATE accounts SET abalance = abalance + 1 WHERE aid <= 10")
	e.run()
	e.assertSame()
	if again := e.keptPIDs(); !mapsEqual(again, first) {
		t.Errorf("a second run used other backends: %v, then %v", first, again)
	}
	// Its temporary tables are the kept ones of keysTable, empty.
	for k, c := range e.opts.Sessions.idle {
		err := c.conn.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema() AND relkind = 'r'").Scan(&temps)
		if err != nil || temps != len(c.temps) || temps == 0 {
			t.Errorf("kept session on %s has %d temporary tables, %d kept (%v)", k.db, temps, len(c.temps), err)
		}
		for name := range c.temps {
			var rows int
			if err := c.conn.QueryRow(ctx, "SELECT count(*) FROM pg_temp."+name).Scan(&rows); err != nil || rows != 0 {
				t.Errorf("kept session on %s: %s holds %d rows (%v)", k.db, name, rows, err)
			}
		}
	}

	// Every kept backend dies; the next run (a single try) reconnects and
	// applies every change.
	e.killKept(true)
	e.exec("A", "UPDATE accounts SET abalance = abalance + 1 WHERE aid > 50; DELETE FROM accounts WHERE aid <= 5")
	if _, err := Run(ctx, e.sync, e.opts); err != nil {
		t.Fatalf("the run after its kept sessions died failed: %v", err)
	}
	e.assertSame()
	after := e.keptPIDs()
	for db, ps := range after {
		for _, p := range ps {
			if slices.Contains(first[db], p) {
				t.Errorf("db %s: the run kept a terminated backend %d", db, p)
			}
		}
	}

	// C's DSN changes: its old session is closed, a new one kept.
	old := after["C"][0]
	for i, d := range e.sync.DBs {
		if d.Name == "C" {
			e.sync.DBs[i].ConnString += " application_name=changed"
		}
	}
	e.exec("A", "UPDATE accounts SET abalance = abalance + 1 WHERE aid = 60")
	e.run()
	e.assertSame()
	if e.opts.Sessions.Len() != 3 || e.keptPIDs()["C"][0] == old {
		t.Errorf("after C's DSN changed: %v kept, C's backend %d", e.keptPIDs(), old)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var alive bool
		if err := e.conn("A").QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)", int64(old)).Scan(&alive); err != nil {
			t.Fatal(err)
		}
		if !alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("C's session of the old DSN (backend %d) is still open", old)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mapsEqual(a, b map[string][]uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
