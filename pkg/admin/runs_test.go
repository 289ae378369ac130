package admin

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gobucardo/gobucardo/pkg/capture"
)

var deltaTable = capture.DeltaName

func (f *fixture) query(db, sql string) string {
	f.t.Helper()
	var s string
	if err := f.c.Connect(f.t, db).QueryRow(context.Background(), sql).Scan(&s); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return s
}

const contentsSQL = `SELECT coalesce(string_agg(a::text, ';' ORDER BY aid), '') FROM
	(SELECT aid, bid, abalance, filler FROM public.accounts) a`

// TestSyncRunThroughMCP drives a sync with mcp only: add, run, delta,
// purge, truncate, sequences, fullcopy, onetimecopy, a target missing a
// column, uninstall.
func TestSyncRunThroughMCP(t *testing.T) {
	f := newFixture(t, true)
	f.addDBs()
	f.c.Exec(t, f.db["A"], "INSERT INTO accounts SELECT g, g % 3, 0, 'before the sync' FROM generate_series(1, 100) g")
	f.ok("add", "all", "tables", "db=A", "relgroup=r", "-T", "nokey")
	f.ok("add", "sequence", "public.order_seq", "db=A", "relgroup=r")
	out := f.ok("add", "sync", "s", "relgroup=r", "dbs=A:source,B:target,C:fullcopy", "onetimecopy=1")
	if !strings.Contains(out, `Installed capture of sync "s" on db "A" (2 tables)`) {
		t.Errorf("add sync did not install the capture: %q", out)
	}
	f.c.Exec(t, f.db["A"], "SELECT nextval('order_seq') FROM generate_series(1, 3)")
	out = f.ok("sync", "run", "s", "--quiet")
	if !strings.Contains(out, `Run of sync "s": 0 deleted, 200 inserted`) {
		t.Errorf("onetimecopy run said %q", out)
	}
	want := f.query(f.db["A"], contentsSQL)
	for _, db := range []string{"B", "C"} {
		if got := f.query(f.db[db], contentsSQL); got != want {
			t.Errorf("db %s after onetimecopy differs", db)
		}
		if got := f.query(f.db[db], "SELECT last_value::text FROM order_seq"); got != "3" {
			t.Errorf("sequence on %s = %s", db, got)
		}
	}
	if got := f.query(f.main, "SELECT onetimecopy::text FROM gobucardo.sync WHERE name = 's'"); got != "0" {
		t.Errorf("onetimecopy after the run = %s, want 0", got)
	}
	// Changes, then a look at the backlog, a run, and purge.
	f.c.Exec(t, f.db["A"], "UPDATE accounts SET abalance = 7 WHERE aid <= 10; DELETE FROM accounts WHERE aid > 95")
	var deltas struct {
		Deltas []deltaRow `json:"deltas"`
	}
	if err := json.Unmarshal([]byte(f.ok("delta", "--json")), &deltas); err != nil {
		t.Fatal(err)
	}
	pending := map[string]int64{}
	for _, d := range deltas.Deltas {
		pending[d.Table] += d.Pending
	}
	if pending["public.accounts"] != 15 {
		t.Errorf("pending deltas = %+v", deltas.Deltas)
	}
	out = f.ok("sync", "run", "s")
	if !strings.Contains(out, "public.accounts: delta+fullcopy, 15 keys, 115 deleted, 105 inserted") {
		t.Errorf("delta run said %q", out)
	}
	want = f.query(f.db["A"], contentsSQL)
	for _, db := range []string{"B", "C"} {
		if got := f.query(f.db[db], contentsSQL); got != want {
			t.Errorf("db %s after the delta run differs", db)
		}
	}
	if out := f.ok("purge"); !strings.Contains(out, `Purged`) {
		t.Errorf("purge said %q", out)
	}
	if n := f.query(f.db["A"], "SELECT count(*)::text FROM gobucardo."+quote(deltaTable("public", "accounts"))); n != "0" {
		t.Errorf("%s deltas left after purge", n)
	}
	// TRUNCATE on the source reaches the target.
	f.c.Exec(t, f.db["A"], "TRUNCATE accounts; INSERT INTO accounts VALUES (1, 1, 1, 'after truncate')")
	out = f.ok("sync", "run", "s", "--json")
	var run struct {
		State     string
		Truncates int64
	}
	if err := json.Unmarshal([]byte(out), &run); err != nil || run.State != "good" || run.Truncates != 1 {
		t.Errorf("truncate run: %q (%v)", out, err)
	}
	if got := f.query(f.db["B"], contentsSQL); got != f.query(f.db["A"], contentsSQL) {
		t.Errorf("after truncate B = %q", got)
	}
	if n := f.query(f.main, "SELECT count(*)::text FROM gobucardo.syncrun WHERE sync = 's' AND state = 'good'"); n != "3" {
		t.Errorf("%s good runs recorded, want 3", n)
	}
	// A target missing a column: validate names it and changes nothing; the run fails clearly.
	f.c.Exec(t, f.db["B"], "ALTER TABLE accounts DROP COLUMN filler")
	before := f.snapshot()
	r := f.run("validate", "s")
	if r.code != 1 || !strings.Contains(r.out, `db B: column filler of public.accounts is missing: ALTER TABLE "public"."accounts" ADD COLUMN "filler" text`) ||
		!strings.Contains(r.err, "validate found 1 problem") {
		t.Errorf("validate: exit %d\n%s\n%s", r.code, r.out, r.err)
	}
	if f.snapshot() != before {
		t.Error("validate changed the catalog")
	}
	f.c.Exec(t, f.db["A"], "UPDATE accounts SET abalance = 2")
	r = f.run("sync", "run", "s", "--quiet")
	if r.code != 1 || !strings.Contains(r.err, "column filler of public.accounts is missing on db B") {
		t.Errorf("run over a broken target: exit %d %q", r.code, r.err)
	}
	if got := f.query(f.main, "SELECT status FROM gobucardo.syncrun WHERE sync = 's' ORDER BY id DESC LIMIT 1"); !strings.Contains(got, "Failed: ") {
		t.Errorf("last run's status = %q", got)
	}
	f.c.Exec(t, f.db["B"], "ALTER TABLE accounts ADD COLUMN filler text")
	f.ok("validate", "all")
	f.ok("sync", "run", "s", "--quiet")
	if got := f.query(f.db["B"], contentsSQL); got != f.query(f.db["A"], contentsSQL) {
		t.Errorf("after repair B = %q", got)
	}
	// validate repairs a dropped capture trigger.
	f.c.Exec(t, f.db["A"], "DROP TRIGGER gobucardo_capture_upd ON accounts")
	if out := f.ok("validate", "s"); !strings.Contains(out, "repaired on db A: trigger gobucardo_capture_upd on public.accounts is missing") {
		t.Errorf("validate did not repair: %q", out)
	}
	// uninstall is refused while the sync reads the db, and removes everything with --force.
	f.fail(1, []string{`db "A" is used by syncs s`}, "uninstall", "db", "A")
	f.ok("uninstall", "db", "A", "--force")
	if n := f.query(f.db["A"], "SELECT count(*)::text FROM pg_trigger WHERE tgname::text LIKE 'gobucardo%'"); n != "0" {
		t.Errorf("%s triggers left after uninstall", n)
	}
	f.fail(1, []string{"capture is not installed", "mcp validate s"}, "sync", "run", "s")
	f.ok("remove", "sync", "s")
}
