package replicate

import (
	"context"
	"math/rand"
	"slices"
	"strings"
	"testing"
)

// TestStrictCheckingSourceOnlyColumn: a column added on one source (and
// one of two targets) only. Strict (the default), the run fails with one
// sentence naming table, column, db and the fix, and changes nothing.
// With strict_checking=false the column is left out of the copies into
// (and from) the dbs that lack it, noted once per run, while two sources
// written at random and two targets converge on the common columns; the
// source keeps its own values of the column, and the target that has it
// receives them.
func TestStrictCheckingSourceOnlyColumn(t *testing.T) {
	e := newEnv(t, kvSchema, []string{"A:source", "B:source", "T:target", "U:target"}, []Relation{kv, other})
	e.exec("A", "INSERT INTO kv SELECT g, 'a' || g, 'A' FROM generate_series(1, 20) g")
	e.run()
	e.exec("U", "ALTER TABLE kv ADD COLUMN extra text DEFAULT 'only on A'")
	e.exec("A", "ALTER TABLE kv ADD COLUMN extra text DEFAULT 'only on A'")
	e.exec("A", "UPDATE kv SET v = 'changed', extra = 'mine' WHERE k <= 5; INSERT INTO kv VALUES (500, 'a500', 'A', 'mine')")

	_, err := Run(context.Background(), e.sync, Options{})
	want := `column extra of public.kv is missing on db T (it is text on A): run ALTER TABLE "public"."kv" ADD COLUMN "extra" text on T, ` +
		`or mcp update sync ` + e.sync.Name + ` strict_checking=false to leave it out of the copy (mcp validate lists every difference)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("strict run: %v\nwant %s", err, want)
	}
	if got := e.value("B", 1); got != "a1" {
		t.Errorf("the failed run changed B: k=1 is %q", got)
	}

	e.sync.Relations[0].Lenient = true
	common := []string{"k", "v", "src"}
	seed := rand.Int63()
	t.Logf("seed %d", seed)
	stop := startWriters(t, e, []string{"A", "B"}, seed, 60, true)
	note := "column extra of public.kv (not on T, B)"
	for i := 0; i < 10; i++ {
		res, err := Run(context.Background(), e.sync, Options{})
		if err != nil {
			t.Fatalf("run %d during writes: %v", i, err)
		}
		if !slices.Equal(res.OmittedColumns, []string{note}) {
			t.Errorf("run %d: omitted %q, want once %q", i, res.OmittedColumns, note)
		}
		if !strings.Contains(res.Summary(), "; left out of the copy (strict_checking=false): "+note) {
			t.Errorf("run %d: summary %q", i, res.Summary())
		}
	}
	stop()
	e.run()
	for _, c := range []struct {
		rel  Relation
		cols []string
	}{{kv, common}, {other, e.sourceColumns(other)}} {
		want := e.contents("A", c.rel, c.cols)
		for _, db := range []string{"B", "T", "U"} {
			if got := e.contents(db, c.rel, c.cols); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s on %s differs from A on %v:\n%s", c.rel.Display(), db, c.cols, diff(want, got))
			}
		}
	}
	for _, db := range []string{"A", "U"} {
		var extra string
		if err := e.conn(db).QueryRow(context.Background(), "SELECT extra FROM kv WHERE k = 500").Scan(&extra); err != nil || extra != "mine" {
			t.Errorf("the column left out for B and T, on %s: %q (%v), want A's value", db, extra, err)
		}
	}
	if got := e.value("B", 500); got != "a500" {
		t.Errorf("k=500 on B = %q", got)
	}
	if res := e.run(); res.Inserts+res.Deletes != 0 {
		t.Errorf("a quiet run changed rows: %+v", res)
	}
	// Once every db has the column, it is copied again.
	e.exec("B", "ALTER TABLE kv ADD COLUMN extra text DEFAULT 'only on A'")
	e.exec("T", "ALTER TABLE kv ADD COLUMN extra text DEFAULT 'only on A'")
	e.exec("A", "UPDATE kv SET extra = 'everywhere'")
	if res := e.run(); len(res.OmittedColumns) != 0 {
		t.Errorf("omitted %q once every db has the column", res.OmittedColumns)
	}
	e.assertSame()
}

// TestTargetOnlyColumn: a column only the target has, nullable or with a
// default, is fine under strict_checking: rows arrive with its default,
// nothing is noted as left out.
func TestTargetOnlyColumn(t *testing.T) {
	e := newEnv(t, kvSchema, []string{"A:source", "B:target"}, []Relation{kv})
	e.exec("B", "ALTER TABLE kv ADD COLUMN n text, ADD COLUMN d int NOT NULL DEFAULT 7")
	e.exec("A", "INSERT INTO kv SELECT g, 'a' || g, 'A' FROM generate_series(1, 10) g")
	if res := e.run(); res.Inserts != 10 || len(res.OmittedColumns) != 0 {
		t.Fatalf("run: %+v", res)
	}
	want := e.contents("A", kv, []string{"k", "v", "src"})
	if got := e.contents("B", kv, []string{"k", "v", "src"}); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("B differs:\n%s", diff(want, got))
	}
	if n := e.count("B", "kv WHERE n IS NULL AND d = 7"); n != 10 {
		t.Errorf("%d rows of B with the target's defaults, want 10", n)
	}
}

// TestStrictCheckingCustomConflict: under strict_checking=false, with a
// column both sources have and the delta target lacks, a custom handler
// sees the target's previous row without it and the sources' rows with
// it, and its merged row is written with the column to the sources and
// without it to the target.
func TestStrictCheckingCustomConflict(t *testing.T) {
	e := newEnv(t, kvSchema, []string{"A:source", "B:source", "C:target"}, []Relation{kv})
	e.sync.Relations[0].Lenient = true
	for _, d := range e.sync.DBs {
		e.exec(d.Name, "SET session_replication_role = replica; INSERT INTO kv SELECT g, 'original', 'all' FROM generate_series(1, 3) g")
	}
	e.exec("A", "ALTER TABLE kv ADD COLUMN extra text")
	e.exec("B", "ALTER TABLE kv ADD COLUMN extra text")
	e.exec("A", "UPDATE kv SET v = 'A', extra = 'xa' WHERE k = 2")
	e.exec("B", "UPDATE kv SET v = 'B', extra = 'xb' WHERE k = 2")
	var prev, fromA Row
	h := conflictHandler("merger", func(_ context.Context, c ConflictRow) (Resolution, error) {
		prev, fromA = c.Previous, sourceOf(c, "A").Row
		v := textCol(sourceOf(c, "A").Row, "v") + "+" + textCol(sourceOf(c, "B").Row, "v")
		return Resolution{Action: ResolveMerge, Row: with(sourceOf(c, "B").Row, "v", &v)}, nil
	})
	res, _, _, err := customRun(e, h, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Conflicts != 1 || !slices.Equal(res.OmittedColumns, []string{"column extra of public.kv (not on C)"}) {
		t.Errorf("run: %+v", res)
	}
	if textCol(fromA, "extra") != "xa" || len(prev) != 3 || textCol(prev, "v") != "original" {
		t.Errorf("the handler saw A's row %v and the previous row %v", fromA, prev)
	}
	for _, db := range []string{"A", "B", "C"} {
		if got := e.value(db, 2); got != "A+B" {
			t.Errorf("%s k=2: %q, want the merged row", db, got)
		}
	}
	for _, db := range []string{"A", "B"} {
		var extra *string
		if err := e.conn(db).QueryRow(context.Background(), "SELECT extra FROM kv WHERE k = 2").Scan(&extra); err != nil || extra == nil || *extra != "xb" {
			t.Errorf("%s k=2 extra: %v (%v), want the merged row's xb", db, extra, err)
		}
	}
}
