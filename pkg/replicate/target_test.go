package replicate

import (
	"context"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/gobucardo/gobucardo/pkg/capture"
)

// down makes db unreachable for the env's runs (a port nothing listens
// on) and returns what brings it back.
func (e *env) down(db string) (up func()) {
	e.t.Helper()
	for i := range e.sync.DBs {
		if d := &e.sync.DBs[i]; d.Name == db {
			was := d.ConnString
			d.ConnString = "host=127.0.0.1 port=1 dbname=gone user=nobody connect_timeout=2"
			return func() { d.ConnString = was }
		}
	}
	e.t.Fatalf("no db %s", db)
	return nil
}

// setInactive sets the status of db for the env's runs.
func (e *env) setInactive(db string, inactive bool) {
	for i := range e.sync.DBs {
		if e.sync.DBs[i].Name == db {
			e.sync.DBs[i].Inactive = inactive
		}
	}
}

func skippedNames(res Result) string {
	var out []string
	for _, s := range res.Skipped {
		out = append(out, s.DB+": "+s.Reason)
	}
	return strings.Join(out, "; ")
}

// TestTargetFailsAlone: a target that is down, or inactive, is left out of
// the runs while the others keep replicating; it keeps its place, and is
// caught up from there when back, with no command, nothing lost or
// duplicated; the purge keeps what it still needs; a truncate while it is
// away gives it the whole table.
func TestTargetFailsAlone(t *testing.T) {
	e := newEnv(t, basicSchema, []string{"A:source", "B:target", "C:target", "D:target"}, []Relation{accounts, seq1})
	e.exec("A", "INSERT INTO accounts SELECT g, 1, 0, 'x' FROM generate_series(1, 500) g")
	e.run()
	e.assertSame()

	up := e.down("C")
	e.exec("A", "UPDATE accounts SET abalance = 1 WHERE aid <= 100; DELETE FROM accounts WHERE aid > 450; SELECT nextval('seq1')")
	res := e.run()
	if got := skippedNames(res); !strings.HasPrefix(got, "C: unreachable: ") {
		t.Fatalf("run with C down: skipped %q", got)
	}
	e.assertSameBut("C")
	e.exec("A", "UPDATE accounts SET aid = aid + 1000 WHERE aid BETWEEN 200 AND 210; INSERT INTO accounts VALUES (5000, 2, 2, 'new')")
	e.run()
	e.assertSameBut("C")
	// The purge keeps what C still needs, though B and D consumed it.
	if _, err := capture.Purge(context.Background(), e.conn("A")); err != nil {
		t.Fatal(err)
	}
	if n := e.count("A", `gobucardo."`+capture.DeltaName("public", "accounts")+`"`); n == 0 {
		t.Error("the purge deleted the deltas that C, behind, still needs")
	}
	up()
	res = e.run()
	if len(res.Skipped) != 0 || !slices.Equal(res.CaughtUp, []string{"C"}) {
		t.Errorf("run with C back: skipped %q, caught up %v", skippedNames(res), res.CaughtUp)
	}
	e.assertSame()
	if res := e.run(); len(res.CaughtUp) != 0 || res.Deletes+res.Inserts != 0 {
		t.Errorf("a quiet run after the catch-up: %+v", res)
	}

	// Inactive, with a truncate while it is away: it gets the whole table.
	e.setInactive("D", true)
	e.exec("A", "UPDATE accounts SET abalance = 7 WHERE aid % 5 = 0")
	if got := skippedNames(e.run()); got != "D: inactive" {
		t.Errorf("run with D inactive: skipped %q", got)
	}
	e.exec("A", "TRUNCATE accounts; INSERT INTO accounts SELECT g, 3, 3, 'after' FROM generate_series(1, 50) g")
	e.run()
	e.exec("A", "UPDATE accounts SET abalance = 9 WHERE aid = 7")
	e.run()
	e.assertSameBut("D")
	e.setInactive("D", false)
	res = e.run()
	if !slices.Equal(res.CaughtUp, []string{"D"}) {
		t.Errorf("run with D active again: caught up %v", res.CaughtUp)
	}
	e.assertSame()

	// A target taken out of the sync while behind leaves no place that
	// would hold back the purge for ever.
	e.down("D")
	e.exec("A", "UPDATE accounts SET abalance = 11 WHERE aid = 8")
	e.run()
	if n := e.count("A", "gobucardo.target_watermark"); n != 1 {
		t.Fatalf("%d places kept with D down, want 1", n)
	}
	e.sync.DBs = slices.DeleteFunc(e.sync.DBs, func(d DB) bool { return d.Name == "D" })
	e.run()
	if n := e.count("A", "gobucardo.target_watermark"); n != 0 {
		t.Errorf("%d places kept after D left the sync", n)
	}
}

// count is the number of rows of table on db.
func (e *env) count(db, table string) int {
	e.t.Helper()
	var n int
	if err := e.conn(db).QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestTargetAwayRandomized: two sources write random changes to
// overlapping keys while runs go on; a target is taken away in the middle
// and the other target and the sources stay in step without it; then it
// comes back during the writes and every db converges.
func TestTargetAwayRandomized(t *testing.T) {
	e := newEnv(t, kvSchema, []string{"A:source", "B:source", "T:target", "U:target"}, []Relation{kv, other})
	seed := rand.Int63()
	t.Logf("seed %d", seed)
	stop := startWriters(t, e, []string{"A", "B"}, seed, 60, true)
	for i := 0; i < 4; i++ {
		if _, err := RunRetrying(context.Background(), e.sync, Options{}, 3); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	up := e.down("U")
	for i := 0; i < 6; i++ {
		res, err := RunRetrying(context.Background(), e.sync, Options{}, 3)
		if err != nil {
			t.Fatalf("run %d with U away: %v", i, err)
		}
		if len(res.Skipped) != 1 || res.Skipped[0].DB != "U" {
			t.Fatalf("run %d with U away: skipped %q", i, skippedNames(res))
		}
		if i == 3 {
			if _, err := capture.Purge(context.Background(), e.conn("A")); err != nil {
				t.Fatal(err)
			}
			// The writers pause: the others are in step without U.
			stop()
			e.run()
			e.assertSameBut("U")
			stop = startWriters(t, e, []string{"A", "B"}, seed+100, 60, true)
		}
	}
	up()
	for i := 0; i < 4; i++ {
		if _, err := RunRetrying(context.Background(), e.sync, Options{}, 3); err != nil {
			t.Fatalf("run %d with U back: %v", i, err)
		}
	}
	stop()
	e.run()
	e.assertSame()
	if res := e.run(); res.Inserts+res.Deletes != 0 {
		t.Errorf("a quiet run changed rows: %+v", res)
	}
}

// TestTargetCatchUpInPieces: a target that missed many changes is caught
// up a piece per run (the others keep replicating in those runs), each
// run moving its place on, until it is in step; writes made meanwhile are
// not lost.
func TestTargetCatchUpInPieces(t *testing.T) {
	e := newEnv(t, basicSchema, []string{"A:source", "B:target", "C:target"}, []Relation{accounts})
	e.exec("A", "INSERT INTO accounts SELECT g, 1, 0, 'x' FROM generate_series(1, 100) g")
	e.run()
	up := e.down("C")
	// Many transactions, so that the pieces can end between them.
	for i := 0; i < 40; i++ {
		e.exec("A", "UPDATE accounts SET abalance = abalance + 1 WHERE aid % 40 = $1", i)
		e.exec("A", "INSERT INTO accounts VALUES ($1, 2, 0, 'while C is away')", 1000+i)
	}
	e.run()
	up()
	opts := Options{CatchUpPiece: 10}
	runs := 0
	for ; runs < 30; runs++ {
		e.exec("A", "UPDATE accounts SET filler = 'meanwhile' WHERE aid = $1", 1+runs)
		res, err := Run(context.Background(), e.sync, opts)
		if err != nil {
			t.Fatal(err)
		}
		e.assertSameBut("C")
		if len(res.CaughtUp) > 0 {
			break
		}
		if n := e.count("A", "gobucardo.target_watermark"); n != 1 {
			t.Fatalf("run %d: %d places, want C's", runs, n)
		}
	}
	t.Logf("caught up in %d runs", runs+1)
	if runs < 3 || runs >= 30 {
		t.Errorf("caught up in %d runs of pieces of 10", runs+1)
	}
	e.assertSame()
	if n := e.count("A", "gobucardo.target_watermark"); n != 0 {
		t.Errorf("%d places left once C is in step", n)
	}
}
