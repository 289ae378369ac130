package replicate

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

const kvSchema = `CREATE TABLE public.kv (k int PRIMARY KEY, v text, src text);
CREATE TABLE public.other (id int PRIMARY KEY, v text);
CREATE SEQUENCE public.s1;`

var (
	kv    = Relation{Schema: "public", Name: "kv", KeyColumns: []string{"k"}}
	other = Relation{Schema: "public", Name: "other", KeyColumns: []string{"id"}}
)

func (e *env) value(db string, k int) string {
	e.t.Helper()
	var v *string
	err := e.conn(db).QueryRow(context.Background(), "SELECT v FROM kv WHERE k = $1", k).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "<absent>"
	}
	if err != nil {
		e.t.Fatal(err)
	}
	if v == nil {
		return "<null>"
	}
	return *v
}

func TestTwoSourcesNoEcho(t *testing.T) {
	e := newEnv(t, kvSchema, []string{"A:source", "B:source", "C:target"}, []Relation{kv, seq1For(kvSchema)})
	e.exec("A", "INSERT INTO kv SELECT g, 'from A', 'A' FROM generate_series(1, 50) g; SELECT setval('s1', 10)")
	e.exec("B", "INSERT INTO kv SELECT g, 'from B', 'B' FROM generate_series(101, 130) g; SELECT setval('s1', 20)")
	res := e.run()
	if res.Conflicts != 0 || res.Inserts != 50*2+30*2 {
		t.Errorf("first run: %+v", res)
	}
	e.assertSame()
	if got := e.seq("A", seq1For(kvSchema)); got != "20 true" {
		t.Errorf("sequence on A = %s, want the highest source value", got)
	}
	// Nothing the run wrote comes back.
	if res := e.run(); res.Inserts+res.Deletes != 0 {
		t.Errorf("second run echoed: %+v", res)
	}
	e.exec("B", "UPDATE kv SET v = 'B changed it' WHERE k = 1; DELETE FROM kv WHERE k = 2")
	e.run()
	e.assertSame()
	if e.value("A", 1) != "B changed it" || e.value("C", 2) != "<absent>" {
		t.Errorf("B's changes: A k=1 %q, C k=2 %q", e.value("A", 1), e.value("C", 2))
	}
}

func seq1For(string) Relation { return Relation{Schema: "public", Name: "s1", Sequence: true} }

// conflictRun sets up k=1 on all dbs, then changes it on A, then on B
// (later), optionally on C (a third source), and runs with strategy.
func conflictRun(t *testing.T, strategy string, roles []string, change func(e *env)) (*env, Result, []Conflict, error) {
	t.Helper()
	e := newEnv(t, kvSchema, roles, []Relation{kv, other})
	for _, d := range e.sync.DBs {
		// Not captured: the starting point, the same everywhere.
		e.exec(d.Name, "SET session_replication_role = replica; INSERT INTO kv VALUES (1, 'original', 'all'), (2, 'untouched', 'all')")
	}
	e.sync.ConflictStrategy = strategy
	change(e)
	var got []Conflict
	res, err := Run(context.Background(), e.sync, Options{Conflicts: func(cs []Conflict) error {
		got = append(got, cs...)
		return nil
	}})
	return e, res, got, err
}

func TestConflictStrategies(t *testing.T) {
	updateAB := func(e *env) {
		e.exec("A", "UPDATE kv SET v = 'A wrote' WHERE k = 1")
		e.exec("B", "UPDATE kv SET v = 'B wrote' WHERE k = 1")
	}
	roles := []string{"A:source", "B:source", "C:target"}
	cases := []struct {
		strategy, winner, want string
	}{
		{catalog.StrategyLatest, "B", "B wrote"},
		{catalog.StrategySource, "A", "A wrote"},
		{"B A", "B", "B wrote"},
		{"A B", "A", "A wrote"},
		{"B", "B", "B wrote"},
	}
	for _, tc := range cases {
		t.Run(tc.strategy, func(t *testing.T) {
			e, res, cs, err := conflictRun(t, tc.strategy, roles, updateAB)
			if err != nil {
				t.Fatal(err)
			}
			if res.Conflicts != 1 || len(cs) != 1 || cs[0].Winner != tc.winner || string(cs[0].Key) != `{"k": 1}` {
				t.Fatalf("conflicts = %d %+v", res.Conflicts, cs)
			}
			if len(cs[0].Losers) != 1 || cs[0].Losers[0].DB == tc.winner || !strings.Contains(string(cs[0].Losers[0].Row), "wrote") {
				t.Errorf("losers = %+v", cs[0].Losers)
			}
			for _, db := range []string{"A", "B", "C"} {
				if got := e.value(db, 1); got != tc.want {
					t.Errorf("%s: k=1 is %q, want %q", db, got, tc.want)
				}
			}
			e.assertSame()
		})
	}
	t.Run("bucardo_skip", func(t *testing.T) {
		e, res, cs, err := conflictRun(t, catalog.StrategySkip, roles, func(e *env) {
			updateAB(e)
			e.exec("A", "UPDATE kv SET v = 'A alone' WHERE k = 2")
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Conflicts != 1 || len(cs) != 1 || cs[0].Winner != "" || len(cs[0].Losers) != 2 {
			t.Fatalf("skip: %+v %+v", res, cs)
		}
		if e.value("A", 1) != "A wrote" || e.value("B", 1) != "B wrote" || e.value("C", 1) != "original" {
			t.Errorf("skip changed the conflicting row: %s %s %s", e.value("A", 1), e.value("B", 1), e.value("C", 1))
		}
		if e.value("B", 2) != "A alone" || e.value("C", 2) != "A alone" {
			t.Error("skip held back a row without conflict")
		}
	})
	t.Run("bucardo_abort", func(t *testing.T) {
		e, _, _, err := conflictRun(t, catalog.StrategyAbort, roles, func(e *env) {
			updateAB(e)
			e.exec("A", "UPDATE kv SET v = 'A alone' WHERE k = 2")
		})
		if !errors.Is(err, ErrConflictAbort) {
			t.Fatalf("abort: %v", err)
		}
		if e.value("B", 2) != "untouched" || e.value("C", 1) != "original" || e.value("A", 1) != "A wrote" {
			t.Error("an aborted run changed something")
		}
	})
	t.Run("bucardo_random", func(t *testing.T) {
		e, res, cs, err := conflictRun(t, catalog.StrategyRandom, roles, updateAB)
		if err != nil || res.Conflicts != 1 || (cs[0].Winner != "A" && cs[0].Winner != "B") {
			t.Fatalf("random: %v %+v", err, cs)
		}
		e.assertSame()
	})
	t.Run("bucardo_latest_all_tables", func(t *testing.T) {
		e, _, cs, err := conflictRun(t, catalog.StrategyLatestAllTables, roles, func(e *env) {
			updateAB(e)
			e.exec("A", "INSERT INTO other VALUES (1, 'A is latest over all tables')")
		})
		if err != nil || len(cs) != 1 || cs[0].Winner != "A" || e.value("C", 1) != "A wrote" {
			t.Fatalf("latest_all: %v %+v C=%s", err, cs, e.value("C", 1))
		}
		e.assertSame()
	})
	t.Run("delete races update", func(t *testing.T) {
		e, _, cs, err := conflictRun(t, catalog.StrategyLatest, roles, func(e *env) {
			e.exec("A", "DELETE FROM kv WHERE k = 1")
			e.exec("B", "UPDATE kv SET v = 'B updated after A deleted' WHERE k = 1")
		})
		if err != nil || len(cs) != 1 || cs[0].Winner != "B" || string(cs[0].Losers[0].Row) != "" {
			t.Fatalf("%v %+v", err, cs)
		}
		if e.value("A", 1) != "B updated after A deleted" {
			t.Errorf("A k=1 = %q", e.value("A", 1))
		}
		e.assertSame()
		e2, _, _, err := conflictRun(t, catalog.StrategyLatest, roles, func(e *env) {
			e.exec("B", "UPDATE kv SET v = 'B updated' WHERE k = 1")
			e.exec("A", "DELETE FROM kv WHERE k = 1")
		})
		if err != nil || e2.value("B", 1) != "<absent>" {
			t.Errorf("a later delete must win: %v, B k=1 = %q", err, e2.value("B", 1))
		}
		e2.assertSame()
	})
	t.Run("three sources and a key change", func(t *testing.T) {
		e, _, cs, err := conflictRun(t, "C B A", []string{"A:source", "B:source", "C:source", "D:target"}, func(e *env) {
			e.exec("A", "UPDATE kv SET v = 'A' WHERE k = 1")
			e.exec("B", "UPDATE kv SET k = 10 WHERE k = 1") // B moved the key: 1 gone, 10 new
			e.exec("C", "UPDATE kv SET v = 'C' WHERE k = 2")
		})
		if err != nil || len(cs) != 1 || cs[0].Winner != "B" {
			t.Fatalf("%v %+v", err, cs)
		}
		e.assertSame()
		if e.value("D", 1) != "<absent>" || e.value("D", 10) != "original" || e.value("A", 2) != "C" {
			t.Errorf("D k=1 %q k=10 %q; A k=2 %q", e.value("D", 1), e.value("D", 10), e.value("A", 2))
		}
	})
}

// TestMultiSourceRandomized: two and three sources with concurrent writers
// on overlapping keys and runs interleaved; after quiescence every db's
// ordered contents are identical.
func TestMultiSourceRandomized(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprint(n, " sources"), func(t *testing.T) {
			roles := []string{"A:source", "B:source", "C:source"}[:n]
			roles = append(roles, "T:target")
			e := newEnv(t, kvSchema, roles, []Relation{kv, other})
			var dbs []string
			for _, r := range roles[:n] {
				dbs = append(dbs, strings.Split(r, ":")[0])
			}
			seed := rand.Int63()
			t.Logf("seed %d", seed)
			stop := startWriters(t, e, dbs, seed, 60, true)
			for i := 0; i < 12; i++ {
				if _, err := Run(context.Background(), e.sync, Options{}); err != nil {
					t.Fatalf("run %d during writes: %v", i, err)
				}
			}
			stop()
			e.run()
			e.assertSame()
			if res := e.run(); res.Inserts+res.Deletes != 0 {
				t.Errorf("a quiet run changed rows: %+v", res)
			}
		})
	}
}

// TestMakeDelta: A⇄B with makedelta on B, then B→C carries A's changes on;
// a table with makedelta off does not cascade.
func TestMakeDelta(t *testing.T) {
	e := newEnv(t, kvSchema, []string{"A:source", "B:source"}, []Relation{kv, other})
	off := false
	e.sync.Relations[1].MakeDelta = &off
	e.sync.DBs[1].MakeDelta = true
	// The second sync reads B and writes C.
	down := &env{t: t, c: e.c, dbs: map[string]string{"B": e.dbs["B"], "C": e.c.NewDB(t)}, conns: map[string]*pgx.Conn{}}
	down.exec("C", kvSchema)
	down.sync = Sync{Name: "downstream", Relations: []Relation{kv, other},
		DBs: []DB{{Name: "B", Role: RoleSource, ConnString: e.c.DSN(e.dbs["B"])}, {Name: "C", Role: RoleTarget, ConnString: e.c.DSN(down.dbs["C"])}}}
	down.install()
	e.exec("A", "INSERT INTO kv VALUES (1, 'from A', 'A'); INSERT INTO other VALUES (1, 'from A')")
	e.run()
	if res := e.run(); res.Inserts != 0 {
		t.Errorf("makedelta rows echoed back to A: %+v", res)
	}
	down.run()
	if got := down.value("C", 1); got != "from A" {
		t.Errorf("C k=1 = %q: the change did not cascade", got)
	}
	var n int
	if err := down.conn("C").QueryRow(context.Background(), "SELECT count(*) FROM other").Scan(&n); err != nil || n != 0 {
		t.Errorf("table with makedelta off cascaded: %d rows on C (%v)", n, err)
	}
	e.exec("A", "DELETE FROM kv WHERE k = 1")
	e.run()
	down.run()
	if got := down.value("C", 1); got != "<absent>" {
		t.Errorf("delete did not cascade: %q", got)
	}
}

// TestStar: a hub with makedelta and four leaves, one two-source sync per
// leaf; writes anywhere reach every db.
func TestStar(t *testing.T) {
	c := envCluster(t)
	hub := c.NewDB(t)
	c.Exec(t, hub, kvSchema)
	var leaves []*env
	for i := 0; i < 4; i++ {
		leaf := c.NewDB(t)
		c.Exec(t, leaf, kvSchema)
		e := &env{t: t, c: c, dbs: map[string]string{"H": hub, "L": leaf}, conns: map[string]*pgx.Conn{}}
		e.sync = Sync{Name: fmt.Sprintf("leaf%d", i), Relations: []Relation{kv}, DBs: []DB{
			{Name: "H", Role: RoleSource, ConnString: c.DSN(hub), MakeDelta: true},
			{Name: "L", Role: RoleSource, ConnString: c.DSN(leaf)}}}
		e.install()
		leaves = append(leaves, e)
	}
	for i, e := range leaves {
		e.exec("L", fmt.Sprintf("INSERT INTO kv VALUES (%d, 'leaf %d', 'L')", i, i))
	}
	leaves[0].exec("H", "INSERT INTO kv VALUES (100, 'hub', 'H')")
	leaves[2].exec("L", "UPDATE kv SET v = 'leaf 2 again' WHERE k = 2")
	for round := 0; round < 3; round++ {
		for _, e := range leaves {
			e.run()
		}
	}
	for _, e := range leaves {
		e.assertSame()
	}
	if got := leaves[3].value("L", 2); got != "leaf 2 again" {
		t.Errorf("leaf 3 has k=2 %q", got)
	}
	// Quiet now: nothing circulates.
	for _, e := range leaves {
		if res := e.run(); res.Inserts+res.Deletes != 0 {
			t.Errorf("%s still moves rows: %+v", e.sync.Name, res)
		}
	}
}

func envCluster(t *testing.T) *pgtest.Cluster { return pgtest.Shared(t) }

// TestMultiSourceCrashBetweenCommits: every db committed, then the
// sources' connections die before their watermarks advance; the next run
// re-applies and converges.
func TestMultiSourceCrashBetweenCommits(t *testing.T) {
	e := newEnv(t, kvSchema, []string{"A:source", "B:source", "T:target"}, []Relation{kv})
	e.exec("A", "INSERT INTO kv SELECT g, 'A', 'A' FROM generate_series(1, 500) g")
	e.exec("B", "INSERT INTO kv SELECT g, 'B', 'B' FROM generate_series(400, 900) g") // 400..500 conflict
	_, err := Run(context.Background(), e.sync, Options{Hook: func(p string) {
		if p == "targets-committed" {
			for _, db := range []string{"A", "B"} {
				e.c.Exec(t, "postgres", `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
					WHERE datname = $1 AND application_name = 'gobucardo' AND state = 'idle in transaction'`, e.dbs[db])
			}
		}
	}})
	if err == nil {
		t.Fatal("the run survived its sources' connections dying")
	}
	e.rerun()
	e.assertSame()
	if res := e.run(); res.Inserts+res.Deletes != 0 {
		t.Errorf("not converged: %+v", res)
	}
}

// TestManyConflictsInBatches: more conflicts than one batch; every one is
// reported once, with its losing row.
func TestManyConflictsInBatches(t *testing.T) {
	n := 2*conflictBatch + 123
	e := newEnv(t, kvSchema, []string{"A:source", "B:source"}, []Relation{kv})
	for _, db := range []string{"A", "B"} {
		e.exec(db, fmt.Sprintf("SET session_replication_role = replica; INSERT INTO kv SELECT g, 'start', 'all' FROM generate_series(1, %d) g", n))
	}
	e.exec("A", "UPDATE kv SET v = 'A'")
	e.exec("B", "UPDATE kv SET v = 'B'")
	seen := map[string]bool{}
	batches := 0
	res, err := Run(context.Background(), e.sync, Options{Conflicts: func(cs []Conflict) error {
		batches++
		for _, c := range cs {
			if seen[string(c.Key)] || c.Winner != "B" || len(c.Losers) != 1 || !strings.Contains(string(c.Losers[0].Row), `"v": "A"`) {
				t.Errorf("conflict %s reported twice or wrong: %+v", c.Key, c)
			}
			seen[string(c.Key)] = true
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n || res.Conflicts != int64(n) || batches != 3 {
		t.Errorf("%d conflicts reported in %d batches, result %d; want %d in 3", len(seen), batches, res.Conflicts, n)
	}
	e.assertSame()
}

func pgErrCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// startWriters starts, on each of dbs, a connection writing random rows of
// kv (keys 0..keys-1): inserts, updates, deletes and key changes, and with
// other, upserts into other too, until the returned stop is called.
// Statements that collide with the rows a run writes into a source (a
// unique key, a deadlock) fail for the application, as against any
// writer, and are skipped.
func startWriters(t *testing.T, e *env, dbs []string, seed int64, keys int, withOther bool) (stop func()) {
	t.Helper()
	ops := 5
	if withOther {
		ops = 6
	}
	return startWriterLoops(t, e, dbs, seed, func(db string, rnd *rand.Rand, j int) string {
		k := rnd.Intn(keys)
		switch rnd.Intn(ops) {
		case 0, 1:
			return fmt.Sprintf("INSERT INTO kv VALUES (%d, '%s%d', '%s') ON CONFLICT (k) DO UPDATE SET v = excluded.v, src = excluded.src", k, db, j, db)
		case 2:
			return fmt.Sprintf("UPDATE kv SET v = v || '+%s' WHERE k = %d", db, k)
		case 3:
			return fmt.Sprintf("DELETE FROM kv WHERE k = %d", k)
		case 4:
			return fmt.Sprintf("UPDATE kv SET k = %d WHERE k = %d AND NOT EXISTS (SELECT 1 FROM kv WHERE k = %d)", 100+k, k, 100+k)
		default:
			return fmt.Sprintf("INSERT INTO other VALUES (%d, '%s') ON CONFLICT (id) DO UPDATE SET v = excluded.v", k, db)
		}
	})
}

// startWriterLoops starts, on each of dbs, a connection running the
// statements next makes (the j-th of that db, from its own random source)
// until the returned stop is called. Statements that collide with the rows
// a run writes into a source (a unique key, a deadlock) fail for the
// application, as against any writer, and are skipped.
func startWriterLoops(t *testing.T, e *env, dbs []string, seed int64, next func(db string, rnd *rand.Rand, j int) string) (stop func()) {
	t.Helper()
	var wg sync.WaitGroup
	done := make(chan struct{})
	for i, db := range dbs {
		conn := e.c.Connect(t, e.dbs[db])
		rnd := rand.New(rand.NewSource(seed + int64(i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-done:
					return
				default:
				}
				sql := next(db, rnd, j)
				if _, err := conn.Exec(context.Background(), sql); err != nil {
					if c := pgErrCode(err); c == "23505" || c == "40P01" {
						continue
					}
					t.Errorf("writer on %s: %s: %v", db, sql, err)
					return
				}
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}

// TestAppWriteDuringApply: an application UPDATE on a source that waits
// for the row the run is writing there applies on top of the replicated
// row once the run commits, and the next run carries it on. (It used to
// find the row deleted and update nothing: the write was lost.) Swapping
// the values of a second unique column between two rows still applies.
func TestAppWriteDuringApply(t *testing.T) {
	schema := `CREATE TABLE public.acct (id int PRIMARY KEY, bal int NOT NULL, email text UNIQUE);`
	acct := Relation{Schema: "public", Name: "acct", KeyColumns: []string{"id"}}
	e := newEnv(t, schema, []string{"A:source", "B:source", "C:target"}, []Relation{acct})
	for _, d := range e.sync.DBs {
		e.exec(d.Name, "SET session_replication_role = replica; INSERT INTO acct VALUES (1, 0, 'one'), (2, 0, 'two'), (3, 0, 'three')")
	}
	e.exec("A", "UPDATE acct SET bal = bal + 10 WHERE id = 1")
	ctx := context.Background()
	app := e.c.Connect(t, e.dbs["B"])
	updated := make(chan error, 1)
	var tag pgconn.CommandTag
	_, err := Run(ctx, e.sync, Options{Hook: func(p string) {
		if p != "before-commit" {
			return
		}
		go func() {
			var err error
			tag, err = app.Exec(ctx, "UPDATE acct SET bal = bal + 5 WHERE id = 1")
			updated <- err
		}()
		// Wait until the application's UPDATE waits for the run's row lock.
		for i := 0; ; i++ {
			w := queryStrings(t, e.conn("B"), `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database()
				AND wait_event_type = 'Lock' AND query LIKE 'UPDATE acct SET bal = bal + 5%')::text`)
			if w[0] == "true" {
				return
			}
			if i > 200 {
				t.Error("the application's UPDATE never waited for the run")
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-updated; err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != 1 {
		t.Errorf("the application's UPDATE on B updated %d rows while the run wrote the row, want 1", tag.RowsAffected())
	}
	e.run()
	e.assertSame()
	for _, db := range []string{"A", "B", "C"} {
		if got := queryStrings(t, e.conn(db), "SELECT bal::text FROM acct WHERE id = 1")[0]; got != "15" {
			t.Errorf("%s: bal %s, want 15 (+10 on A, then +5 on B on top of it)", db, got)
		}
	}
	// The winner swaps two rows' emails: an in-place update on B would
	// collide with the unique index half way, so it must still apply.
	e.exec("A", "UPDATE acct SET email = 'tmp' WHERE id = 2; UPDATE acct SET email = 'two' WHERE id = 3; UPDATE acct SET email = 'three' WHERE id = 2")
	core, logs := observer.New(zap.DebugLevel)
	if _, err := Run(ctx, e.sync, Options{Log: zap.New(core)}); err != nil {
		t.Fatalf("run of the swap: %v", err)
	}
	if logs.FilterMessageSnippet("in-place update collided").Len() == 0 {
		t.Error("the swap did not take the delete and insert path")
	}
	e.assertSame()
	if got := queryStrings(t, e.conn("B"), "SELECT string_agg(email, ',' ORDER BY id) FROM acct")[0]; got != "one,three,two" {
		t.Errorf("B after the swap: %s", got)
	}
}
