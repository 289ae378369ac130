package admin

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/catalog"
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
	if r.code != 1 || !strings.Contains(r.out, `problem: db B: column filler of public.accounts is missing (it is text on A), so runs fail: `+
		`run ALTER TABLE "public"."accounts" ADD COLUMN "filler" text on B, or mcp update sync s strict_checking=false to leave it out of the copy`) ||
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

// TestThreeMastersThroughMCP: three sources and a target configured and run
// with mcp only; designed conflicts go as the strategy says and show in mcp
// conflicts.
func TestThreeMastersThroughMCP(t *testing.T) {
	f := newFixture(t, true)
	f.addDBs()
	d := f.c.NewDB(t)
	f.c.Exec(t, d, replicaSchema)
	f.ok("add", "db", "D", "dsn="+f.c.DSN(d))
	f.ok("add", "table", "public.accounts", "db=A", "relgroup=r")
	f.ok("add", "sync", "m", "relgroup=r", "dbs=A:source,B:source,C:source,D:target", "conflict_strategy=C B A")
	for _, db := range []string{f.db["A"], f.db["B"], f.db["C"], d} {
		f.c.Exec(t, db, "SET session_replication_role = replica; INSERT INTO accounts VALUES (1, 1, 0, 'start'), (2, 2, 0, 'start')")
	}
	f.c.Exec(t, f.db["A"], "UPDATE accounts SET filler = 'A' WHERE aid = 1; INSERT INTO accounts VALUES (10, 1, 1, 'new on A')")
	f.c.Exec(t, f.db["B"], "UPDATE accounts SET filler = 'B' WHERE aid = 1; DELETE FROM accounts WHERE aid = 2")
	f.c.Exec(t, f.db["C"], "UPDATE accounts SET abalance = 5 WHERE aid = 2")
	out := f.ok("sync", "run", "m")
	if !strings.Contains(out, "2 conflicts") {
		t.Errorf("run said %q", out)
	}
	want := f.query(f.db["A"], contentsSQL)
	for _, db := range []string{f.db["B"], f.db["C"], d} {
		if got := f.query(db, contentsSQL); got != want {
			t.Errorf("dbs differ: %q vs %q", got, want)
		}
	}
	// "C B A": key 1 changed on A and B goes to B; key 2 (deleted on B, updated on C) to C.
	if want != "(1,1,0,B);(2,2,5,start);(10,1,1,\"new on A\")" {
		t.Errorf("contents = %s", want)
	}
	human := f.ok("conflicts", "m")
	for _, w := range []string{"WINNER", `{"aid": 1}`, "B@", `A@`, `"filler": "A"`, `{"aid": 2}`, "B@", "deleted"} {
		if !strings.Contains(human, w) {
			t.Errorf("mcp conflicts lacks %q:\n%s", w, human)
		}
	}
	var doc struct {
		Conflicts []struct {
			Winner string
			Losers []struct{ DB string }
		}
	}
	if err := json.Unmarshal([]byte(f.ok("conflicts", "--json", "--since", "1h")), &doc); err != nil || len(doc.Conflicts) != 2 {
		t.Fatalf("conflicts --json: %v %+v", err, doc)
	}
	// bucardo_abort: nothing changes and the sync is paused.
	f.ok("update", "sync", "m", "conflict_strategy=bucardo_abort")
	f.c.Exec(t, f.db["A"], "UPDATE accounts SET filler = 'A again' WHERE aid = 10")
	f.c.Exec(t, f.db["C"], "UPDATE accounts SET filler = 'C again' WHERE aid = 10")
	r := f.run("sync", "run", "m", "--quiet")
	if r.code != 1 || !strings.Contains(r.err, "paused the sync") {
		t.Errorf("abort: exit %d %q", r.code, r.err)
	}
	if got := f.query(d, "SELECT filler FROM accounts WHERE aid = 10"); got != "new on A" {
		t.Errorf("abort changed D: %q", got)
	}
	if got := f.query(f.main, "SELECT paused::text || ' ' || reason FROM gobucardo.sync_state WHERE sync = 'm'"); !strings.HasPrefix(got, "true Failed: ") {
		t.Errorf("sync_state = %q", got)
	}
	// A paused sync does not run in the foreground either.
	runs := f.query(f.main, "SELECT count(*) FROM gobucardo.syncrun")
	f.fail(1, []string{"sync m is paused (Failed: ", "mcp resume m first"}, "sync", "run", "m", "--quiet")
	if got := f.query(f.main, "SELECT count(*) FROM gobucardo.syncrun"); got != runs {
		t.Errorf("a refused run was recorded: %s runs, were %s", got, runs)
	}

	// mcp pause waits for the run in progress (here one that holds m's run
	// lock on another session) to end.
	f.ok("resume", "m")
	ctx := context.Background()
	ctl := f.c.Connect(t, f.main)
	if _, err := catalog.StartRun(ctx, ctl, "m", 1, "elsewhere", "Started (test)"); err != nil {
		t.Fatal(err)
	}
	r = f.run("pause", "m", "--timeout", "300ms")
	if r.code != 1 || !strings.Contains(r.err, "Paused sync m, but its run in progress has not ended after 300ms") {
		t.Errorf("pause during a run: exit %d %q %q", r.code, r.out, r.err)
	}
	f.ok("resume", "m")
	done := make(chan result, 1)
	go func() { done <- f.run("pause", "m") }()
	time.Sleep(200 * time.Millisecond)
	if err := ctl.Close(ctx); err != nil { // the run's session ends
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.code != 0 || r.out != "Paused sync m\n" {
			t.Errorf("pause: exit %d %q %q", r.code, r.out, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("mcp pause did not return after the run ended")
	}
}
