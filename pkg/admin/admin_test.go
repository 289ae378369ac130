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

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/testbin"
	"github.com/gobucardo/gobucardo/schema"
)

func TestInstall(t *testing.T) {
	f := newFixture(t, false)
	// A main database that does not exist: refused without --create-db.
	missing := f.main + "_new"
	f.dsn = f.c.DSN(missing)
	f.fail(1, []string{`database "` + missing + `" does not exist`, "--create-db"}, "install")
	out := f.ok("install", "--create-db")
	if !strings.Contains(out, "Created database") || !strings.Contains(out, fmt.Sprintf("Installed the gobucardo catalog (version %d)", schema.Latest())) {
		t.Errorf("install --create-db said %q", out)
	}
	t.Cleanup(func() {
		f.c.Exec(t, "postgres", "DROP DATABASE IF EXISTS "+quote(missing)+" WITH (FORCE)")
	})
	again := f.ok("install", "--create-db")
	if !strings.Contains(again, "nothing to do") || strings.Contains(again, "Created") {
		t.Errorf("second install said %q", again)
	}
	// Commands refuse a database without the catalog, and say what to run.
	f.dsn = f.c.DSN(f.main)
	f.fail(1, []string{"not installed", "mcp install"}, "list", "dbs")
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// TestCLIScript builds the two-source, one-target configuration of
// CLI.md and checks what the catalog holds.
func TestCLIScript(t *testing.T) {
	f := newFixture(t, true)
	f.addDBs()
	f.ok("add", "dbgroup", "g1", "A:source", "B:master", "C:replica")
	f.ok("add", "table", "public.accounts", "db=A", "relgroup=r1")
	f.ok("add", "table", "branches", "db=A", "relgroup=r1", "conflict_strategy=B A")
	f.ok("add", "sequence", "public.order_seq", "db=A", "relgroup=r1")
	out := f.ok("add", "sync", "s1", "relgroup=r1", "dbgroup=g1", "checktime=30s", "onetimecopy=2",
		"isolation_level=serializable", "commit_every=5000", "autokick=false", "conflict_strategy=bucardo_source",
		"overdue=5m", "expired=15m")
	if !strings.Contains(out, `Added sync "s1"`) {
		t.Errorf("add sync said %q", out)
	}
	// Bucardo's one-liner: dbs= makes a dbgroup named after the sync (or reuses an identical one).
	out = f.ok("add", "sync", "s2", "tables=public.accounts", "dbs=A:source,B:source,C:fullcopy")
	if !strings.Contains(out, "relgroup \"s2\"") {
		t.Errorf("add sync tables= said %q", out)
	}
	out = f.ok("add", "sync", "s3", "relgroup=r1", "dbs=A:source,B:source,C:fullcopy", "status=inactive")
	if strings.Contains(out, `Added dbgroup`) || !strings.Contains(out, `dbgroup "s2"`) {
		t.Errorf("identical dbgroup not reused: %q", out)
	}

	var doc struct {
		DBs []struct {
			Name, Connection, Status string
		} `json:"dbs"`
		DBGroups []struct {
			Name    string
			Members []struct{ DB, Role string }
		} `json:"dbgroups"`
		Tables []struct {
			Name, DB, Schema string
			KeyColumns       []string `json:"key_columns"`
			KeyTypes         []string `json:"key_types"`
			KeyKind          string   `json:"key_kind"`
			ConflictStrategy string   `json:"conflict_strategy"`
			RelGroups        []string `json:"relgroups"`
		} `json:"tables"`
		Syncs []struct {
			Name, RelGroup, DBGroup, Status string
			Checktime                       int64  `json:"checktime"`
			OneTimeCopy                     int    `json:"onetimecopy"`
			IsolationLevel                  string `json:"isolation_level"`
			CommitEvery                     int    `json:"commit_every"`
			Autokick                        bool
			ConflictStrategy                string `json:"conflict_strategy"`
			Overdue, Expired                time.Duration
		} `json:"syncs"`
	}
	if err := json.Unmarshal([]byte(f.ok("list", "all", "--json")), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.DBs) != 3 || doc.DBs[0].Name != "A" || !strings.Contains(doc.DBs[0].Connection, "dbname="+f.db["A"]) {
		t.Errorf("dbs = %+v", doc.DBs)
	}
	if len(doc.DBGroups) != 2 || doc.DBGroups[0].Name != "g1" || len(doc.DBGroups[0].Members) != 3 ||
		doc.DBGroups[0].Members[1].Role != "source" || doc.DBGroups[0].Members[2].Role != "target" {
		t.Errorf("dbgroups = %+v", doc.DBGroups)
	}
	if len(doc.Tables) != 2 {
		t.Fatalf("tables = %+v", doc.Tables)
	}
	acc := doc.Tables[0]
	if acc.Name != "accounts" || acc.KeyKind != "primary key" || strings.Join(acc.KeyColumns, ",") != "aid" ||
		strings.Join(acc.KeyTypes, ",") != "integer" || strings.Join(acc.RelGroups, ",") != "r1,s2" {
		t.Errorf("accounts = %+v", acc)
	}
	if doc.Tables[1].ConflictStrategy != "B A" {
		t.Errorf("branches conflict_strategy = %q", doc.Tables[1].ConflictStrategy)
	}
	if len(doc.Syncs) != 3 {
		t.Fatalf("syncs = %+v", doc.Syncs)
	}
	s1 := doc.Syncs[0]
	if s1.Name != "s1" || s1.Checktime != 30e9 || s1.OneTimeCopy != 2 || s1.IsolationLevel != "serializable" ||
		s1.CommitEvery != 5000 || s1.Autokick || s1.ConflictStrategy != "bucardo_source" || s1.Status != "active" ||
		s1.Overdue != 5*time.Minute || s1.Expired != 15*time.Minute {
		t.Errorf("s1 = %+v", s1)
	}
	if doc.Syncs[1].DBGroup != "s2" || doc.Syncs[1].RelGroup != "s2" || doc.Syncs[2].Status != "inactive" {
		t.Errorf("s2, s3 = %+v", doc.Syncs[1:])
	}

	// Human output has the headers and rows.
	human := f.ok("list", "syncs")
	for _, w := range []string{"NAME", "CHECKTIME", "OVERDUE", "EXPIRED", "s1", "30s", "bucardo_source", "5m0s", "15m0s"} {
		if !strings.Contains(human, w) {
			t.Errorf("list syncs lacks %q:\n%s", w, human)
		}
	}
	if got := f.ok("list", "tables", "acc*"); !strings.Contains(got, "public.accounts") || strings.Contains(got, "branches") {
		t.Errorf("list tables acc* =\n%s", got)
	}

	// Updates.
	f.fail(1, []string{"sync s1: expired=15m0s is below overdue=20m0s: raise expired, lower overdue, or set one to 0 (off)"},
		"update", "sync", "s1", "overdue=20m")
	f.ok("update", "sync", "s1", "checktime=0", "onetimecopy=0", "maxkicks=10", "lifetime=1h", "overdue=0")
	f.ok("update", "sync", "s2", "add", "table", "public.branches")
	f.ok("update", "relgroup", "r1", "remove", "public.order_seq")
	f.ok("update", "dbgroup", "g1", "C:fullcopy")
	f.ok("add", "dbgroup", "g9", "A:source", "C:target")
	if out := f.ok("update", "dbgroup", "g9", "remove", "C", "name=g10"); !strings.Contains(out, `Changed dbgroup "g10": A:source`) {
		t.Errorf("update dbgroup remove+rename said %q", out)
	}
	f.ok("remove", "dbgroup", "g10")
	f.ok("update", "table", "public.accounts", "db=A", "makedelta=on")
	f.ok("update", "db", "C", "status=inactive")
	if err := json.Unmarshal([]byte(f.ok("list", "all", "--json")), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Syncs[0].Checktime != 0 || doc.Syncs[0].OneTimeCopy != 0 || doc.Syncs[0].Overdue != 0 || doc.Syncs[0].Expired != 15*time.Minute {
		t.Errorf("s1 after update = %+v", doc.Syncs[0])
	}
	if doc.DBGroups[0].Members[2].Role != "fullcopy" || doc.DBs[2].Status != "inactive" {
		t.Errorf("after update: %+v %+v", doc.DBGroups[0], doc.DBs[2])
	}
	if got := f.ok("list", "relgroups"); !strings.Contains(got, "public.accounts, public.branches") {
		t.Errorf("relgroups after update:\n%s", got)
	}

	// Removal with and without --force.
	f.fail(1, []string{`db "C" is used by sync "s1"`, "--force"}, "remove", "db", "C")
	out = f.ok("remove", "db", "C", "--force")
	for _, w := range []string{`Removed db "C"`, `sync "s1"`, `sync "s2"`, `sync "s3"`} {
		if !strings.Contains(out, w) {
			t.Errorf("remove db --force said %q, want %q", out, w)
		}
	}
	if got := f.ok("list", "syncs"); !strings.Contains(got, "(no syncs)") {
		t.Errorf("syncs left after remove --force:\n%s", got)
	}
	f.ok("remove", "relgroup", "r1", "s2")
	f.ok("remove", "table", "public.*")
	f.ok("remove", "sequence", "public.order_seq")
	f.ok("remove", "dbgroup", "g1", "s2")
	f.ok("remove", "db", "A", "B")
	for _, tbl := range []string{"db", "dbgroup", "relation", "relgroup", "sync"} {
		if n := f.count("gobucardo." + tbl); n != 0 {
			t.Errorf("%d rows left in %s", n, tbl)
		}
	}
}

func (f *fixture) count(table string) int {
	f.t.Helper()
	var n int
	if err := f.c.Connect(f.t, f.main).QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// TestBadInput: every bad input is refused with a clear message and exit
// status, and changes nothing in the catalog.
func TestBadInput(t *testing.T) {
	f := newFixture(t, true)
	f.addDBs()
	f.c.Exec(t, f.db["A"], "CREATE TABLE public.only_on_a (id int PRIMARY KEY)")
	f.ok("add", "table", "public.accounts", "public.only_on_a", "public.nokey", "db=A")
	f.ok("add", "relgroup", "r1", "public.accounts")
	f.ok("add", "relgroup", "ronly", "public.only_on_a")
	f.ok("add", "relgroup", "rnokey", "public.nokey")
	f.ok("add", "dbgroup", "g1", "A:source", "B:target")
	f.ok("add", "sync", "s1", "relgroup=r1", "dbgroup=g1")
	// Names that urfave/cli would take for its help command are names.
	f.c.Exec(t, f.db["A"], "CREATE TABLE public.h (id int PRIMARY KEY); CREATE TABLE public.help (id int PRIMARY KEY)")
	f.ok("add", "table", "h", "help", "db=A")
	if out := f.ok("list", "tables", "h*"); !strings.Contains(out, "public.h ") || !strings.Contains(out, "public.help") {
		t.Errorf("tables h and help: %s", out)
	}
	f.ok("remove", "table", "h", "help")

	cases := []struct {
		name string
		code int
		want []string
		args []string
	}{
		{"unknown db in dbgroup", 1, []string{`unknown db "Z"`, "mcp list dbs"}, []string{"add", "dbgroup", "g2", "A:source", "Z:target"}},
		{"unknown db in dbs", 1, []string{`unknown db "Z"`}, []string{"add", "sync", "s2", "relgroup=r1", "dbs=A:source,Z:target"}},
		{"unknown relgroup", 1, []string{`unknown relgroup "nope"`, "mcp list relgroups"}, []string{"add", "sync", "s2", "relgroup=nope", "dbgroup=g1"}},
		{"unknown dbgroup", 1, []string{`unknown dbgroup "nope"`}, []string{"add", "sync", "s2", "relgroup=r1", "dbgroup=nope"}},
		{"unknown sync update", 1, []string{`unknown sync "nope"`, "mcp list syncs"}, []string{"update", "sync", "nope", "checktime=10s"}},
		{"unknown sync remove", 1, []string{`unknown sync "nope"`}, []string{"remove", "sync", "nope"}},
		{"unknown db update", 1, []string{`unknown db "nope"`}, []string{"update", "db", "nope", "port=5"}},
		{"unknown table update", 1, []string{`unknown table "public.nope"`}, []string{"update", "table", "public.nope", "makedelta=on"}},
		{"duplicate db", 1, []string{`db "A" already exists`}, []string{"add", "db", "A", "dbname=x", "--force"}},
		{"duplicate dbgroup", 1, []string{`dbgroup "g1" already exists`}, []string{"add", "dbgroup", "g1", "A:source"}},
		{"duplicate relgroup", 1, []string{`relgroup "r1" already exists`}, []string{"add", "relgroup", "r1"}},
		{"duplicate sync", 1, []string{`sync "s1" already exists`}, []string{"add", "sync", "s1", "relgroup=r1", "dbgroup=g1"}},
		{"duplicate table", 1, []string{"public.accounts", "already in the catalog"}, []string{"add", "table", "public.accounts", "db=A"}},
		{"unreachable db", 1, []string{`cannot connect to db X`, "--force"}, []string{"add", "db", "X", "host=/nonexistent/socket/dir", "port=5999", "dbname=x"}},
		{"wrong role", 1, []string{`role "boss" is not valid`, "source, target or fullcopy"}, []string{"add", "dbgroup", "g2", "A:boss"}},
		{"wrong strategy", 1, []string{`conflict_strategy "bucardo_whatever" is not valid`}, []string{"add", "sync", "s2", "relgroup=r1", "dbgroup=g1", "conflict_strategy=bucardo_whatever"}},
		{"strategy names non-source", 1, []string{"names B, which is not a source db"}, []string{"add", "sync", "s2", "relgroup=r1", "dbgroup=g1", "conflict_strategy=B A"}},
		{"wrong onetimecopy", 1, []string{"onetimecopy=\"7\" is not valid"}, []string{"add", "sync", "s2", "relgroup=r1", "dbgroup=g1", "onetimecopy=7"}},
		{"wrong checktime", 1, []string{"checktime=\"soon\" is not valid", "30s"}, []string{"add", "sync", "s2", "relgroup=r1", "dbgroup=g1", "checktime=soon"}},
		{"sync with no source", 1, []string{"sync s2 has no source database"}, []string{"add", "sync", "s2", "relgroup=r1", "dbs=A:target,B:target"}},
		{"table missing on db", 1, []string{`table "public.nosuch" does not exist on db "A"`}, []string{"add", "table", "public.nosuch", "db=A"}},
		{"pattern matching nothing", 1, []string{`no table on db "A" matches "zz*"`}, []string{"add", "table", "zz*", "db=A"}},
		{"table missing on target", 1, []string{`table public.only_on_a is missing on db "B" (target)`}, []string{"add", "sync", "s2", "relgroup=ronly", "dbgroup=g1"}},
		{"keyless table in delta sync", 1, []string{"public.nokey has no primary key", "fullcopy"}, []string{"add", "sync", "s2", "relgroup=rnokey", "dbs=A:source,C:target"}},
		{"remove db used by sync", 1, []string{`db "B" is used by sync "s1"`, "--force"}, []string{"remove", "db", "B"}},
		{"remove dbgroup used by sync", 1, []string{`dbgroup "g1" is used by sync "s1"`}, []string{"remove", "dbgroup", "g1"}},
		{"remove relgroup used by sync", 1, []string{`relgroup "r1" is used by sync "s1"`}, []string{"remove", "relgroup", "r1"}},
		{"remove table used by sync", 1, []string{`public.accounts" is used by sync "s1"`}, []string{"remove", "table", "public.accounts"}},
		{"invalid dsn", 1, []string{"db X: the connection settings are not valid"}, []string{"add", "db", "X", "dsn=postgres://u:hunter2@h:notaport/x"}},
		{"dsn and parts", 1, []string{"either dsn= or the parts"}, []string{"add", "db", "X", "dsn=host=/tmp dbname=x", "port=5"}},
		{"no dbname", 1, []string{"say how to reach it"}, []string{"add", "db", "X", "host=/tmp"}},
		{"bad port", 1, []string{`port="abc" is not a port number`}, []string{"add", "db", "X", "dbname=x", "port=abc"}},
		{"bad name", 1, []string{`db name "1x" is not valid`}, []string{"add", "db", "1x", "dbname=x", "--force"}},
		{"reserved sync name", 1, []string{`sync name "swap" is reserved`}, []string{"add", "sync", "swap", "relgroup=r1", "dbgroup=g1"}},
		{"demote last source", 1, []string{"sync s1 has no source database"}, []string{"update", "dbgroup", "g1", "A:target"}},
		{"unknown sync option", 2, []string{`unknown setting "colour"`}, []string{"add", "sync", "s2", "relgroup=r1", "dbgroup=g1", "colour=blue"}},
		{"sync without relgroup", 2, []string{"give relgroup=R or tables="}, []string{"add", "sync", "s2", "dbgroup=g1"}},
		{"unknown command", 2, []string{`unknown command "frobnicate"`}, []string{"frobnicate"}},
		{"unknown noun", 2, []string{"add what?"}, []string{"add", "gizmo"}},
		{"unknown flag", 2, []string{"flag provided but not defined"}, []string{"list", "dbs", "--colour"}},
		{"relgroup of two dbs", 1, []string{`holds relations of db "A"`, "one db"}, []string{"update", "relgroup", "r1", "add", "public.branches", "db=B"}},
		{"customcode missing plugin", 1, []string{"cannot be read"}, []string{"add", "customcode", "cc", "plugin=/nonexistent/plugin", "whenrun=conflict", "sync=s1"}},
		{"customcode bad hook", 1, []string{`whenrun="before_lunch" is not a hook`}, []string{"add", "customcode", "cc", "plugin=/bin/true", "whenrun=before_lunch", "sync=s1"}},
		{"customcode unknown sync", 1, []string{`unknown sync "nope"`}, []string{"add", "customcode", "cc", "plugin=/bin/true", "whenrun=conflict", "sync=nope"}},
	}
	// public.branches of B, for the two-db relgroup case.
	f.ok("add", "table", "public.branches", "db=B")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ft := *f
			ft.t = t
			stderr := ft.fail(tc.code, tc.want, tc.args...)
			if strings.Contains(stderr, "hunter2") {
				t.Errorf("the password is in the error: %s", stderr)
			}
		})
	}
}

// TestPasswordsNeverShown: list (human and JSON) and errors show *** only.
func TestPasswordsNeverShown(t *testing.T) {
	f := newFixture(t, true)
	f.ok("add", "db", "P", "dbname=x", "host=/nonexistent", "user=u", "pass=hunter2", "--force")
	f.ok("add", "db", "Q", "dsn=postgres://u:hunter2@127.0.0.1:1/x?sslmode=disable", "--force")
	f.ok("add", "db", "R", "dsn=host=127.0.0.1 port=1 password='hunter2' dbname=x", "--force")
	outputs := []string{f.ok("list", "dbs"), f.ok("list", "dbs", "--json"), f.ok("list", "all")}
	r := f.run("add", "db", "S", "dbname=x", "host=127.0.0.1", "port=1", "pass=hunter2")
	outputs = append(outputs, r.err, r.out)
	r = f.run("update", "db", "P", "host=127.0.0.1", "port=1")
	outputs = append(outputs, r.err, r.out)
	for _, o := range outputs {
		if strings.Contains(o, "hunter2") {
			t.Errorf("password shown:\n%s", o)
		}
	}
	if !strings.Contains(outputs[0], "password=***") || !strings.Contains(outputs[0], "u:***@127.0.0.1") {
		t.Errorf("list dbs does not mark the passwords:\n%s", outputs[0])
	}
}

func TestForce(t *testing.T) {
	f := newFixture(t, true)
	out := f.ok("add", "db", "X", "host=/nonexistent/socket/dir", "port=5999", "dbname=x", "--force")
	if !strings.Contains(out, `Added db "X"`) {
		t.Errorf("add db --force said %q", out)
	}
	// A sync over an unreachable db is refused, and accepted with --force.
	f.addDBs()
	f.ok("add", "table", "public.accounts", "db=A", "relgroup=r")
	f.fail(1, []string{"cannot connect to db X", "--force"}, "add", "sync", "s", "relgroup=r", "dbs=A:source,X:target")
	out = f.ok("add", "sync", "s", "relgroup=r", "dbs=A:source,X:target", "--force")
	if !strings.Contains(out, "Warning: cannot connect to db X") {
		t.Errorf("add sync --force said %q", out)
	}
}

// buildPlugin puts a copy of an example plugin of plugins/ in dir.
func buildPlugin(t *testing.T, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testbin.Build(t, "github.com/gobucardo/gobucardo/plugins/"+name), name))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestCustomCode(t *testing.T) {
	f := newFixture(t, true)
	f.addDBs()
	f.ok("add", "table", "public.accounts", "db=A", "relgroup=r")
	f.ok("add", "sync", "s", "relgroup=r", "dbs=A:source,B:source")
	dir := t.TempDir()
	highest := buildPlugin(t, dir, "highest")
	park := buildPlugin(t, dir, "parkunique")
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notExec := filepath.Join(dir, "notexec")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.fail(1, []string{"is not an executable file"}, "add", "customcode", "cc", "plugin="+notExec, "whenrun=conflict", "sync=s")
	f.fail(2, []string{"sync=S or to table=SCHEMA.T"}, "add", "customcode", "cc", "plugin="+highest, "whenrun=conflict")
	// The plugin is started and asked before anything is recorded.
	f.fail(1, []string{"customcode cc: plugin " + script + ": cannot start it"}, "add", "customcode", "cc", "plugin="+script, "whenrun=conflict", "sync=s")
	f.fail(1, []string{"has no exception handler, so it cannot run at whenrun=exception: use whenrun=conflict"},
		"add", "customcode", "cc", "plugin="+highest, "whenrun=exception", "sync=s", "column=v")
	f.fail(1, []string{"its settings were refused", "highest needs column=NAME"}, "add", "customcode", "cc", "plugin="+highest, "whenrun=conflict", "sync=s")
	f.fail(1, []string{`unknown setting "colum"`}, "add", "customcode", "cc", "plugin="+highest, "whenrun=conflict", "sync=s", "colum=v")
	f.fail(1, []string{`timeout="soon" is not a duration`}, "add", "customcode", "cc", "plugin="+highest, "whenrun=conflict", "sync=s", "column=v", "timeout=soon")
	if n := f.count("gobucardo.customcode"); n != 0 {
		t.Fatalf("refused customcode left %d rows", n)
	}
	f.ok("add", "customcode", "cc", "plugin="+highest, "whenrun=conflict", "sync=s", "priority=5", "column=balance", "timeout=5s")
	f.ok("add", "customcode", "ex", "plugin="+park, "whenrun=exception", "table=public.accounts")
	var doc struct {
		CustomCode []struct {
			Name, Plugin, SHA256, WhenRun string
			Priority                      int
			Syncs, Tables                 []string
			Settings                      map[string]string
			Timeout                       time.Duration
		} `json:"customcode"`
	}
	list := func() {
		t.Helper()
		if err := json.Unmarshal([]byte(f.ok("list", "customcode", "--json")), &doc); err != nil {
			t.Fatal(err)
		}
	}
	list()
	_, sum, err := catalog.PluginChecksum(highest)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.CustomCode) != 2 || doc.CustomCode[0].Plugin != highest || doc.CustomCode[0].SHA256 != sum ||
		doc.CustomCode[0].Priority != 5 || strings.Join(doc.CustomCode[0].Syncs, ",") != "s" ||
		doc.CustomCode[0].Settings["column"] != "balance" || doc.CustomCode[0].Timeout != 5*time.Second ||
		len(doc.CustomCode[1].Tables) != 1 || !strings.Contains(doc.CustomCode[1].Tables[0], "public.accounts") ||
		doc.CustomCode[1].Timeout != 30*time.Second || len(doc.CustomCode[1].Settings) != 0 {
		t.Errorf("customcode = %+v", doc.CustomCode)
	}
	// Settings change, and are checked by the plugin again.
	f.fail(1, []string{"highest needs column=NAME"}, "update", "customcode", "cc", "column=")
	f.ok("update", "customcode", "cc", "column=aid")
	list()
	if doc.CustomCode[0].Settings["column"] != "aid" {
		t.Errorf("settings after update: %v", doc.CustomCode[0].Settings)
	}
	// Another binary at the same path: plugin= pins its checksum.
	if err := os.Rename(park, highest); err != nil {
		t.Fatal(err)
	}
	f.fail(1, []string{"it takes no settings, got column"}, "update", "customcode", "cc", "plugin="+highest)
	f.fail(1, []string{"has no conflict handler"}, "update", "customcode", "cc", "plugin="+highest, "column=")
	f.ok("update", "customcode", "cc", "plugin="+highest, "whenrun=exception", "column=")
	list()
	if doc.CustomCode[0].SHA256 == sum || doc.CustomCode[0].WhenRun != "exception" {
		t.Error("update customcode plugin= did not pin the new checksum")
	}
	f.ok("remove", "customcode", "cc", "ex")
	if n := f.count("gobucardo.customcode_map"); n != 0 {
		t.Errorf("%d attachments left", n)
	}
}
