package admin

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gobucardo/gobucardo/pkg/replicate"
)

// TestAddSyncRefusesIncompatibleTypes: a table whose column is text on the
// source and integer on the target is refused by add sync and by update
// sync ... add table, in one sentence naming table, column, both types and
// the statement, with nothing changed; a compatible difference is accepted.
func TestAddSyncRefusesIncompatibleTypes(t *testing.T) {
	f := newFixture(t, true)
	f.addDBs()
	f.c.Exec(t, f.db["A"], "CREATE TABLE public.items (id integer PRIMARY KEY, qty text)")
	f.c.Exec(t, f.db["B"], "CREATE TABLE public.items (id integer PRIMARY KEY, qty integer)")
	sentence := `db B: column qty of public.items is integer there but text on A, whose values it cannot hold, so runs fail: ` +
		`run ALTER TABLE "public"."items" ALTER COLUMN "qty" TYPE text USING "qty"::text on B`
	err := f.fail(1, []string{sentence}, "add", "sync", "s", "tables=public.items", "dbs=A:source,B:target")
	if err != "mcp: "+sentence+"\n" {
		t.Errorf("add sync said %q, want exactly the sentence", err)
	}
	// The same through update sync ... add table.
	f.ok("add", "sync", "s", "tables=public.accounts", "dbs=A:source,B:target")
	f.ok("add", "table", "public.items", "db=A")
	f.fail(1, []string{sentence}, "update", "sync", "s", "add", "table", "public.items")
	// A column the target lacks is refused under strict_checking, with the
	// fix naming the sync; accepted once the table tolerates it.
	f.c.Exec(t, f.db["B"], "ALTER TABLE public.items ALTER COLUMN qty TYPE text; ALTER TABLE public.items ADD COLUMN extra bigint")
	f.c.Exec(t, f.db["A"], "ALTER TABLE public.items ADD COLUMN note text")
	f.fail(1, []string{`db B: column note of public.items is missing (it is text on A), so runs fail: ` +
		`run ALTER TABLE "public"."items" ADD COLUMN "note" text on B, or mcp update sync s strict_checking=false to leave it out of the copy`},
		"update", "sync", "s", "add", "table", "public.items")
	f.ok("update", "table", "public.items", "db=A", "strict_checking=false")
	f.ok("update", "sync", "s", "add", "table", "public.items")
	// A db that cannot be reached: refused unless --force, as before (the
	// connection error is pgconn's, one line per address tried).
	f.ok("add", "db", "D", "host=127.0.0.1", "port=1", "dbname=nowhere", "--force")
	before := f.snapshot()
	r := f.run("add", "sync", "s2", "tables=public.accounts", "dbs=A:source,D:target")
	if r.code != 1 || !strings.Contains(r.err, "cannot connect to db D") || !strings.Contains(r.err, "start it, or add the sync anyway with --force") ||
		f.snapshot() != before {
		t.Errorf("add sync over an unreachable db: exit %d %q", r.code, r.err)
	}
}

// TestValidateDifferences: validate lists every difference between the dbs
// of a sync with its repair, human and JSON, and exits 1 only for those
// that fail runs.
func TestValidateDifferences(t *testing.T) {
	f := newFixture(t, true)
	f.addDBs()
	f.ok("add", "table", "public.accounts", "public.branches", "db=A", "relgroup=r")
	f.ok("add", "sync", "s", "relgroup=r", "dbs=A:source,B:target,C:target")
	if out := f.ok("validate", "s"); !strings.Contains(out, "  OK\n") {
		t.Fatalf("validate of equal dbs = %q", out)
	}
	// Differences runs live with: a wider type, an extra nullable column,
	// no key on a target.
	f.c.Exec(t, f.db["B"], "ALTER TABLE accounts ALTER COLUMN abalance TYPE bigint; ALTER TABLE accounts ADD COLUMN extra text")
	f.c.Exec(t, f.db["C"], "ALTER TABLE branches DROP CONSTRAINT branches_pkey")
	r := f.run("validate", "s")
	for _, w := range []string{
		`difference: db B: column abalance of public.accounts is bigint there but integer on A, which loads into it: runs go on: ` +
			`run ALTER TABLE "public"."accounts" ALTER COLUMN "abalance" TYPE integer on B`,
		`difference: db B: column extra of public.accounts is not on A: rows copied there take its default, runs go on ` +
			`(to replicate it, add it to A): run ALTER TABLE "public"."accounts" ADD COLUMN "extra" text on A`,
		`difference: db C: table public.branches has no primary key or unique index on exactly the replicated key (bid): ` +
			`runs go on, but nothing there stops duplicate keys written by others: run ALTER TABLE "public"."branches" ADD PRIMARY KEY ("bid") on C`,
	} {
		if !strings.Contains(r.out, w) {
			t.Errorf("validate does not say\n%s\nin\n%s", w, r.out)
		}
	}
	if r.code != 0 || strings.Contains(r.out, "problem:") {
		t.Errorf("validate with tolerated differences: exit %d\n%s%s", r.code, r.out, r.err)
	}
	// Differences that fail runs: a missing column, an incompatible type, a
	// missing table.
	f.c.Exec(t, f.db["C"], "ALTER TABLE accounts DROP COLUMN filler; ALTER TABLE accounts ALTER COLUMN bid TYPE text")
	f.c.Exec(t, f.db["B"], "DROP TABLE branches")
	before := f.snapshot()
	r = f.run("validate", "s")
	for _, w := range []string{
		`problem: db C: column filler of public.accounts is missing (it is text on A), so runs fail: run ALTER TABLE "public"."accounts" ADD COLUMN "filler" text on C, ` +
			`or mcp update sync s strict_checking=false to leave it out of the copy`,
		`problem: db C: column bid of public.accounts is text there but integer on A, whose values it cannot hold, so runs fail: ` +
			`run ALTER TABLE "public"."accounts" ALTER COLUMN "bid" TYPE integer USING "bid"::integer on C`,
		`problem: db B: table public.branches is missing (it is on A), and a run writes it there: ` +
			`run CREATE TABLE "public"."branches" ("bid" integer NOT NULL, "bbalance" integer NOT NULL, PRIMARY KEY ("bid")) on B`,
	} {
		if !strings.Contains(r.out, w) {
			t.Errorf("validate does not say\n%s\nin\n%s", w, r.out)
		}
	}
	if r.code != 1 || !strings.Contains(r.err, "validate found 3 problems") {
		t.Errorf("validate: exit %d\n%s", r.code, r.err)
	}
	if f.snapshot() != before {
		t.Error("validate changed the catalog")
	}
	// The same as JSON: one document on stdout, progress on stderr.
	r = f.run("--json", "validate", "s")
	var doc struct {
		Syncs []struct {
			Sync        string                 `json:"sync"`
			Problems    []string               `json:"problems"`
			Differences []replicate.Difference `json:"differences"`
			Failing     int                    `json:"failing"`
		} `json:"syncs"`
		Failing int `json:"failing"`
	}
	if err := json.Unmarshal([]byte(r.out), &doc); err != nil {
		t.Fatalf("validate --json: %v\n%s", err, r.out)
	}
	if r.code != 1 || doc.Failing != 3 || len(doc.Syncs) != 1 || doc.Syncs[0].Sync != "s" || len(doc.Syncs[0].Problems) != 0 ||
		!strings.Contains(r.err, "[1/1] sync s") {
		t.Fatalf("validate --json: exit %d %+v\n%s", r.code, doc, r.err)
	}
	kinds := map[string]bool{}
	for _, d := range doc.Syncs[0].Differences {
		kinds[d.DB+" "+d.Kind+" "+d.Column] = d.Breaks
		if d.Repair == "" || d.RepairOn == "" {
			t.Errorf("difference without its repair: %+v", d)
		}
	}
	want := map[string]bool{"B type abalance": false, "B extra_column extra": false, "C key ": false,
		"C missing_column filler": true, "C type bid": true, "B missing_table ": true}
	if len(kinds) != len(want) {
		t.Errorf("differences %v, want %v", kinds, want)
	}
	for k, v := range want {
		if b, ok := kinds[k]; !ok || b != v {
			t.Errorf("difference %q: breaks %v (found %v), want %v", k, b, ok, v)
		}
	}
}

// TestStrictCheckingThroughMCP: a column added on the source only fails
// the run in one sentence naming the fix; after mcp update sync S
// strict_checking=false the run copies the other columns and mcp status
// shows what it left out.
func TestStrictCheckingThroughMCP(t *testing.T) {
	f := newFixture(t, true)
	f.addDBs()
	f.ok("add", "sync", "s", "tables=public.accounts", "dbs=A:source,B:target")
	f.c.Exec(t, f.db["A"], "ALTER TABLE accounts ADD COLUMN note text; INSERT INTO accounts VALUES (1, 1, 10, 'x', 'n')")
	r := f.run("sync", "run", "s", "--quiet")
	want := `column note of public.accounts is missing on db B (it is text on A): run ALTER TABLE "public"."accounts" ADD COLUMN "note" text on B, ` +
		`or mcp update sync s strict_checking=false to leave it out of the copy`
	if r.code != 1 || !strings.Contains(r.err, want) {
		t.Fatalf("strict run: exit %d %q", r.code, r.err)
	}
	f.ok("update", "sync", "s", "strict_checking=false")
	f.ok("sync", "run", "s", "--quiet")
	if got := f.query(f.db["B"], "SELECT abalance::text FROM accounts WHERE aid = 1"); got != "10" {
		t.Errorf("B after the lenient run: %q", got)
	}
	out := f.ok("status", "s")
	for _, w := range []string{"strict_checking=false", "left out of the copy (strict_checking=false): column note of public.accounts (not on B)"} {
		if !strings.Contains(out, w) {
			t.Errorf("status s does not say %q:\n%s", w, out)
		}
	}
	// The table's own setting wins over the sync's.
	f.ok("update", "table", "public.accounts", "db=A", "strict_checking=true")
	f.c.Exec(t, f.db["A"], "UPDATE accounts SET abalance = 11")
	if r := f.run("sync", "run", "s", "--quiet"); r.code != 1 || !strings.Contains(r.err, want) {
		t.Errorf("run with the table strict: exit %d %q", r.code, r.err)
	}
}
