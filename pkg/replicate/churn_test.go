package replicate

import (
	"context"
	"testing"
	"time"
)

// catalogChurn is how many rows of the catalogs that temporary tables
// write (pg_class, pg_attribute, pg_type, pg_depend, pg_statistic) were
// inserted, updated or deleted on db so far, by the statistics collector.
func (e *env) catalogChurn(db string) (class, all int64) {
	e.t.Helper()
	ctx := context.Background()
	c := e.conn(db)
	if _, err := c.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
		e.t.Fatal(err)
	}
	err := c.QueryRow(ctx, `SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del) FILTER (WHERE relname = 'pg_class'), 0)::bigint,
			coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint
		FROM pg_stat_sys_tables WHERE schemaname = 'pg_catalog'
		  AND relname IN ('pg_class', 'pg_attribute', 'pg_type', 'pg_depend', 'pg_statistic')`).Scan(&class, &all)
	if err != nil {
		e.t.Fatal(err)
	}
	return class, all
}

// closeKept closes the kept sessions and waits until their backends are
// gone (a backend reports its statistics as it exits).
func (e *env) closeKept() {
	e.t.Helper()
	var pids []int64
	for _, ps := range e.keptPIDs() {
		for _, p := range ps {
			pids = append(pids, int64(p))
		}
	}
	ctx := context.Background()
	e.opts.Sessions.Close(ctx)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n int
		if err := e.conn(e.source()).QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)", pids).Scan(&n); err != nil {
			e.t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("kept sessions still open: %v", pids)
		}
	}
}

// TestNoCatalogChurnPerRun: runs of single-row changes, as a kid makes them
// (kept sessions), leave the catalogs alone: temporary tables created per
// run would leave dead rows in pg_class and pg_attribute on the source and
// the targets at every run, which bloat them over months. The catalog rows
// written over 30 runs are those written over 10 (the sessions' tables,
// created once and dropped as the sessions close), not three times as
// many. Before the kept tables: 16 rows of pg_class per run on the source,
// 3.75 on each target.
func TestNoCatalogChurnPerRun(t *testing.T) {
	e := newEnv(t, randomSchema, []string{"A:source", "B:target", "C:target"}, randomRels)
	ctx := context.Background()
	e.opts.Sessions = NewSessions()
	defer e.opts.Sessions.Close(ctx)
	dbs := []string{"A", "B", "C"}
	measure := func() map[string][2]int64 {
		e.closeKept()
		out := map[string][2]int64{}
		for _, db := range dbs {
			c, a := e.catalogChurn(db)
			out[db] = [2]int64{c, a}
		}
		return out
	}
	e.exec("A", "INSERT INTO t_int (id, v) SELECT g, g FROM generate_series(1, 100) g")
	e.run()
	runs := func(n int) map[string][2]int64 {
		before := measure()
		for i := 0; i < n; i++ {
			e.exec("A", "UPDATE t_int SET v = v + 1 WHERE id = $1", 1+i%100)
			if i%4 == 0 {
				e.exec("A", `INSERT INTO t_comp VALUES ($1, 1, 1, '{}') ON CONFLICT (a, b) DO UPDATE SET v = t_comp.v + 1`, "k")
			}
			e.run()
		}
		e.assertSame()
		after := measure()
		out := map[string][2]int64{}
		for _, db := range dbs {
			out[db] = [2]int64{after[db][0] - before[db][0], after[db][1] - before[db][1]}
			t.Logf("db %s: over %d runs, %d rows of pg_class written, %d of pg_class, pg_attribute, pg_type, pg_depend and pg_statistic",
				db, n, out[db][0], out[db][1])
		}
		return out
	}
	runs(3) // the env's own sessions report what they wrote meanwhile
	few, many := runs(10), runs(30)
	for _, db := range dbs {
		// A little slack: a session may have a table or two the other did not.
		if many[db][0] > few[db][0]+4 || many[db][1] > few[db][1]+40 {
			t.Errorf("db %s: catalog rows written grow with the runs: %v over 10 runs, %v over 30", db, few[db], many[db])
		}
	}
}
