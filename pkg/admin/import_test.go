package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
	"github.com/gobucardo/gobucardo/pkg/pgtest/bucardotest"
	"github.com/gobucardo/gobucardo/pkg/testbin"
)

// importFixture is a real Bucardo 5 with the scenarios of bucardotest, a
// Perl customcode and a MySQL db in its catalog, and a gobucardo main
// database on the same cluster, driven by the real mcp binary.
func importFixture(t *testing.T, extras bool) (*fixture, *bucardotest.Bucardo, bucardotest.Scenario) {
	t.Helper()
	c := pgtest.New(t)
	b := bucardotest.Install(t, c)
	sc := bucardotest.Scenarios(t, b)
	if !extras {
		return newImportFixture(t, c, sc), b, sc
	}
	perl := filepath.Join(t.TempDir(), "fixup.pl")
	if err := os.WriteFile(perl, []byte("my ($info) = @_;\n$info->{retry} = 1;\nreturn;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.Run(t, "add", "customcode", "fixup", "whenrun=exception", "src_code="+perl, "sync="+bucardotest.SyncMulti)
	// Bucardo's CLI cannot add a MySQL db without DBD::mysql: into its catalog, as the CLI would.
	c.Exec(t, b.DB, `INSERT INTO bucardo.db (name, dbtype, dbname, dbhost, dbport, dbuser, dbpass)
		VALUES ('M', 'mysql', 'shop', '127.0.0.1', '3306', 'shop', 'mysql-pw');
		INSERT INTO bucardo.dbmap (db, dbgroup, role) VALUES ('M', 'fanout_g', 'target')`)
	return newImportFixture(t, c, sc), b, sc
}

// newImportFixture is a gobucardo main database on c, driven by the mcp binary.
func newImportFixture(t *testing.T, c *pgtest.Cluster, sc bucardotest.Scenario) *fixture {
	t.Helper()
	bin := filepath.Join(testbin.Build(t, "github.com/gobucardo/gobucardo/cmd/..."), "mcp") // mcp run needs controller and kid beside it
	f := &fixture{t: t, c: c, main: c.NewDB(t), db: sc.DBs, bin: bin}
	f.dsn = c.DSN(f.main)
	f.ok("install")
	return f
}

// listed renders mcp list all --json object by object, one line each.
func (f *fixture) listed() string {
	f.t.Helper()
	type rel struct {
		DB, Schema, Name string
		KeyColumns       []string `json:"key_columns"`
		KeyKind          string   `json:"key_kind"`
		ConflictStrategy string   `json:"conflict_strategy"`
		MakeDelta        *bool    `json:"makedelta"`
		RelGroups        []string `json:"relgroups"`
	}
	var doc struct {
		DBs []struct {
			Name, Connection, Status string
			MakeDelta                bool `json:"makedelta"`
		}
		DBGroups []struct {
			Name    string
			Members []struct{ DB, Role string }
		}
		Tables, Sequences []rel
		RelGroups         []struct {
			Name, DB  string
			Relations []rel
		}
		Syncs []struct {
			Name, RelGroup, DBGroup, Status, DeleteMethod string
			ConflictStrategy                              string `json:"conflict_strategy"`
			IsolationLevel                                string `json:"isolation_level"`
			Autokick, Stayalive, Kidsalive                bool
			Checktime, Lifetime                           time.Duration
			OneTimeCopy, MaxKicks                         int
		}
		CustomCode []json.RawMessage
	}
	if err := json.Unmarshal([]byte(f.ok("list", "all", "--json")), &doc); err != nil {
		f.t.Fatal(err)
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	for _, d := range doc.DBs {
		p("db %s %s %s makedelta=%v", d.Name, d.Connection, d.Status, d.MakeDelta)
	}
	for _, g := range doc.DBGroups {
		var ms []string
		for _, m := range g.Members {
			ms = append(ms, m.DB+":"+m.Role)
		}
		p("dbgroup %s %s", g.Name, strings.Join(ms, " "))
	}
	for _, r := range append(doc.Tables, doc.Sequences...) {
		md := "inherit"
		if r.MakeDelta != nil {
			md = fmt.Sprint(*r.MakeDelta)
		}
		p("relation %s %s.%s key=%s (%s) conflict=%s makedelta=%s relgroups=%s", r.DB, r.Schema, r.Name,
			strings.Join(r.KeyColumns, ","), r.KeyKind, r.ConflictStrategy, md, strings.Join(r.RelGroups, ","))
	}
	for _, g := range doc.RelGroups {
		var rs []string
		for _, r := range g.Relations {
			rs = append(rs, r.Schema+"."+r.Name)
		}
		p("relgroup %s of %s: %s", g.Name, g.DB, strings.Join(rs, " "))
	}
	for _, s := range doc.Syncs {
		p("sync %s %s/%s %s autokick=%v checktime=%s conflict=%s onetimecopy=%d stayalive=%v kidsalive=%v isolation=%s lifetime=%s maxkicks=%d deletemethod=%s",
			s.Name, s.RelGroup, s.DBGroup, s.Status, s.Autokick, s.Checktime, s.ConflictStrategy, s.OneTimeCopy,
			s.Stayalive, s.Kidsalive, s.IsolationLevel, s.Lifetime, s.MaxKicks, s.DeleteMethod)
	}
	p("customcode %d", len(doc.CustomCode))
	return b.String()
}

// TestImportBucardo imports the catalog of a real Bucardo (set up with its
// own CLI) with the mcp binary: the dry run changes nothing, the import
// creates every object as Bucardo has it (checked object by object), the
// Perl customcode and the MySQL db are reported, not imported, no capture
// is installed, importing again is a no-op, and a changed object is
// refused unless --replace.
func TestImportBucardo(t *testing.T) {
	f, b, sc := importFixture(t, true)
	from := b.DSN()
	empty := f.snapshot()

	dry := f.ok("import", "bucardo", "--from", from, "--dry-run")
	if after := f.snapshot(); after != empty {
		t.Fatalf("--dry-run changed the catalog:\n%s", after)
	}
	for _, w := range []string{
		"dry run, nothing is changed): 18 to add, 0 unchanged",
		`Would add sync "multi": relgroup multi_rg over dbgroup multi_g, inactive (Bucardo: active)`,
		"db M: dbtype=mysql: gobucardo replicates PostgreSQL only",
		"dbgroup fanout_g: member M: db M is not carried",
		"customcode fixup: whenrun=exception on sync multi: Perl customcode cannot run in gobucardo",
		"closest example: plugins/parkunique",
		"sync full: rebuild_index=1: gobucardo does not drop and rebuild indexes",
		"Syncs are created inactive and without gobucardo's capture",
	} {
		if !strings.Contains(dry, w) {
			t.Errorf("the dry run does not say %q:\n%s", w, dry)
		}
	}

	var plan struct {
		Version string `json:"bucardo_version"`
		DryRun  bool   `json:"dry_run"`
		Actions []struct{ Action, Kind, Name string }
		Notes   []struct{ Object, Setting, Why string } `json:"not_carried"`
	}
	js := f.ok("import", "bucardo", "--from", from, "--dry-run", "--json")
	if err := json.Unmarshal([]byte(js), &plan); err != nil {
		t.Fatalf("--json: %v\n%s", err, js)
	}
	if plan.Version != "5.6.0" || !plan.DryRun || len(plan.Actions) != 18 || plan.Actions[0] != (struct{ Action, Kind, Name string }{"create", "db", "A"}) ||
		len(plan.Notes) != 4 || plan.Notes[0].Object != "db M" {
		t.Errorf("--json plan: %+v", plan)
	}

	out := f.ok("import", "bucardo", "--from", from)
	for _, secret := range []string{sc.Password, "mysql-pw"} {
		if strings.Contains(dry+js+out, secret) {
			t.Errorf("mcp import printed a password:\n%s", dry+out)
		}
	}
	if strings.ReplaceAll(out, "Added", "Would add") != strings.Replace(dry, "dry run, nothing is changed", "importing", 1) {
		t.Errorf("the import did not do what the dry run said:\n%s\nvs\n%s", out, dry)
	}
	conn := func(db string) string {
		return fmt.Sprintf("dbname=%s host=%s port=%d user=postgres", sc.DBs[db], f.c.Host(), f.c.Port())
	}
	want := strings.Join([]string{
		"db A " + strings.Replace(conn("A"), "port=", "password=*** port=", 1) + " active makedelta=false",
		"db B " + conn("B") + " active makedelta=false",
		"db C " + conn("C") + " active makedelta=false",
		"db D " + conn("D") + " inactive makedelta=false",
		"dbgroup fanout_g A:source B:target C:target",
		"dbgroup full_g A:source D:fullcopy",
		"dbgroup multi_g A:source B:source C:target",
		"relation A public.audit key= () conflict= makedelta=inherit relgroups=full_rg",
		"relation A public.countries key=iso (primary key) conflict=bucardo_latest_all_tables makedelta=inherit relgroups=multi_rg",
		"relation A public.items key=id (primary key) conflict= makedelta=inherit relgroups=fanout_rg",
		"relation A public.orders key=region,code (primary key) conflict= makedelta=true relgroups=multi_rg",
		"relation A public.item_seq key= () conflict= makedelta=inherit relgroups=fanout_rg",
		"relgroup fanout_rg of A: public.items public.item_seq",
		"relgroup full_rg of A: public.audit",
		"relgroup multi_rg of A: public.orders public.countries",
		"sync fanout fanout_rg/fanout_g inactive autokick=true checktime=45s conflict=bucardo_latest onetimecopy=2 stayalive=true kidsalive=true isolation=repeatable read lifetime=0s maxkicks=0 deletemethod=delete",
		"sync full full_rg/full_g inactive autokick=false checktime=10m0s conflict=bucardo_latest onetimecopy=0 stayalive=false kidsalive=false isolation=repeatable read lifetime=0s maxkicks=0 deletemethod=delete",
		"sync multi multi_rg/multi_g inactive autokick=true checktime=0s conflict=bucardo_source onetimecopy=0 stayalive=false kidsalive=false isolation=serializable lifetime=1h0m0s maxkicks=50 deletemethod=delete",
		"customcode 0",
	}, "\n") + "\n"
	if got := f.listed(); got != want {
		t.Errorf("the catalog after the import:\n%s\nwant:\n%s", got, want)
	}
	// The password is carried, and the replicated dbs are untouched: no
	// capture of gobucardo's is installed while Bucardo replicates.
	if got := f.query(f.main, "SELECT dbpass FROM gobucardo.db WHERE name = 'A'"); got != sc.Password {
		t.Errorf("db A's password in the catalog: %q", got)
	}
	for n, db := range sc.DBs {
		if got := f.query(db, "SELECT (to_regnamespace('gobucardo') IS NULL)::text"); got != "true" {
			t.Errorf("db %s has gobucardo's schema after the import", n)
		}
	}

	imported := f.snapshot()
	again := f.ok("import", "bucardo", "--from", from)
	if !strings.Contains(again, "0 to add, 18 unchanged, 0 to replace") || strings.Contains(again, "Added") {
		t.Errorf("the second import said:\n%s", again)
	}
	if f.snapshot() != imported {
		t.Error("the second import changed the catalog")
	}

	// A sync changed in gobucardo (maxkicks) and a db (its password) are
	// refused, nothing changed; --replace brings Bucardo's back and keeps
	// the sync's status.
	f.c.Exec(t, f.main, `UPDATE gobucardo.sync SET maxkicks = 7, status = 'active' WHERE name = 'multi';
		UPDATE gobucardo.db SET dbpass = 'changed-pw' WHERE name = 'A'`)
	changed := f.snapshot()
	msg := f.fail(1, []string{`db "A" (connection)`, `sync "multi" (maxkicks)`, "--replace"}, "import", "bucardo", "--from", from)
	if strings.Contains(msg, "changed-pw") || strings.Contains(msg, sc.Password) {
		t.Errorf("the refusal shows a password: %s", msg)
	}
	if f.snapshot() != changed {
		t.Error("a refused import changed the catalog")
	}
	out = f.ok("import", "bucardo", "--from", from, "--replace")
	if !strings.Contains(out, `Replaced sync "multi"`) || !strings.Contains(out, `Replaced db "A"`) || !strings.Contains(out, "0 to add, 16 unchanged, 2 to replace") {
		t.Errorf("--replace said:\n%s", out)
	}
	if got := f.query(f.main, "SELECT maxkicks || ' ' || sync.status || ' ' || dbpass FROM gobucardo.sync, gobucardo.db WHERE sync.name = 'multi' AND db.name = 'A'"); got != "50 active "+sc.Password {
		t.Errorf("after --replace: %q", got)
	}
}

// TestImportBucardoBadInput: a database that is not Bucardo's, a Bucardo
// version we do not read, no --from: one sentence each, nothing changed.
func TestImportBucardoBadInput(t *testing.T) {
	f, b, _ := importFixture(t, true)
	f.fail(1, []string{"is not a Bucardo main database", "dbname=bucardo"}, "import", "bucardo", "--from", f.dsn)
	f.fail(2, []string{"--from"}, "import", "bucardo")
	f.fail(1, []string{"cannot connect to Bucardo's main database", "check --from"}, "import", "bucardo", "--from", f.c.DSN("no_such_db"))
	f.c.Exec(t, b.DB, "UPDATE bucardo.bucardo_config SET setting = '4.99.10' WHERE name = 'bucardo_version'")
	f.fail(1, []string{"Bucardo version 4.99.10", "is not supported", "Bucardo 5.x"}, "import", "bucardo", "--from", b.DSN())
	if got := f.query(f.main, "SELECT count(*)::text FROM gobucardo.db"); got != "0" {
		t.Errorf("refused imports left %s dbs in the catalog", got)
	}
}

// TestImportBucardoTakeover runs the takeover against a running Bucardo
// whose fan-out runs only when kicked: rows written before, which only
// Bucardo captured, are on every target when mcp returns (the drain),
// gobucardo's capture records from then on, and its sync is active. A
// transaction open since before the capture (it holds a lock on the
// table) makes it wait, then fail after --timeout in one sentence, with
// nothing installed. A sync active in both is refused.
func TestImportBucardoTakeover(t *testing.T) {
	f, b, sc := importFixture(t, false)
	from := b.DSN()
	f.ok("import", "bucardo", "--from", from)
	b.Run(t, "update", "sync", bucardotest.SyncFanout, "autokick=0", "checktime=0")
	b.Start(t)
	f.c.Exec(t, sc.DBs["A"], "INSERT INTO public.items SELECT g, 'before', g FROM generate_series(1, 200) g")
	if got := f.query(sc.DBs["B"], "SELECT count(*)::text FROM public.items"); got != "0" {
		t.Fatalf("Bucardo delivered %s rows to B before any kick: the drain below would prove nothing", got)
	}

	// A transaction open since before the capture: the takeover waits for it.
	ctx := context.Background()
	tx, err := f.c.Connect(t, sc.DBs["A"]).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO public.items VALUES (1000, 'open', 0)"); err != nil {
		t.Fatal(err)
	}
	f.fail(1, []string{"gobucardo's capture of sync fanout could not be installed within --timeout 2s", "Bucardo still replicates"},
		"import", "bucardo", "--from", from, "--takeover", bucardotest.SyncFanout, "--timeout", "2s")
	if got := f.query(sc.DBs["A"], "SELECT (to_regnamespace('gobucardo') IS NULL)::text"); got != "true" {
		t.Error("a takeover that timed out left gobucardo's capture on A")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	out := f.ok("import", "bucardo", "--from", from, "--takeover", bucardotest.SyncFanout, "--timeout", "45s")
	for _, w := range []string{`Installed capture of sync "fanout" on db "A"`, `Drained Bucardo's sync "fanout"`, `Stopped Bucardo's sync "fanout"`,
		`Dropped Bucardo's triggers of sync "fanout" on db "A"`, `Activated sync "fanout" in gobucardo`} {
		if !strings.Contains(out, w) {
			t.Errorf("--takeover does not say %q:\n%s", w, out)
		}
	}
	// Drained: everything written before is on the targets now, no waiting.
	want := f.query(sc.DBs["A"], "SELECT count(*) || ' ' || sum(qty) FROM public.items")
	for _, n := range []string{"B", "C"} {
		if got := f.query(sc.DBs[n], "SELECT count(*) || ' ' || coalesce(sum(qty), 0) FROM public.items"); got != want {
			t.Errorf("db %s after the drain: %s rows/sum, want %s (A)", n, got, want)
		}
	}
	// gobucardo records from now on; its sync is active (no daemon runs here).
	if got := f.query(sc.DBs["A"], "SELECT count(*)::text FROM gobucardo.watermark WHERE sync = 'fanout'"); got != "1" {
		t.Errorf("no gobucardo watermark for fanout on A: %s", got)
	}
	if got := f.query(f.main, "SELECT status FROM gobucardo.sync WHERE name = 'fanout'"); got != "active" {
		t.Errorf("sync fanout is %s after --takeover", got)
	}
	f.c.Exec(t, sc.DBs["A"], "UPDATE public.items SET qty = qty + 1 WHERE id <= 10")
	d := f.ok("delta", "A")
	if !strings.Contains(d, "\n"+strings.Join([]string{"A", "public.items", "fanout", "10"}, " ")) {
		recorded := false
		for _, line := range strings.Split(d, "\n") {
			fs := strings.Fields(line)
			recorded = recorded || len(fs) >= 4 && fs[0] == "A" && fs[1] == "public.items" && fs[2] == "fanout" && fs[3] == "10"
		}
		if !recorded {
			t.Errorf("gobucardo did not record the 10 rows updated after the takeover:\n%s", d)
		}
	}
	// multi is active in both now: refused, nothing changed.
	f.c.Exec(t, f.main, "UPDATE gobucardo.sync SET status = 'active' WHERE name = 'multi'")
	f.fail(1, []string{"sync multi is active in gobucardo and in Bucardo"}, "import", "bucardo", "--from", from, "--takeover", "all")
}
