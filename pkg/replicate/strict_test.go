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
