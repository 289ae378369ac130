package bucardoimport

import (
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// bucardoCatalog is a small Bucardo catalog: dbs A, B (and a MySQL db M),
// a two-source dbgroup, two tables and a sequence in one herd, a sync and
// a Perl conflict customcode on it.
func bucardoCatalog() Catalog {
	return Catalog{
		Version: "5.6.0",
		DBs: []DB{
			{Name: "A", Type: "postgres", Host: "h1", Port: "5432", DBName: "shop", User: "repl", Pass: "pw", Status: "active"},
			{Name: "B", Type: "postgres", Host: "h2", Port: "5433", DBName: "shop", User: "repl", Status: "active", MakeDelta: true},
			{Name: "M", Type: "mysql", Host: "h3", Port: "3306", DBName: "shop", Status: "active"},
		},
		DBGroups: []DBGroup{{Name: "g", Members: []Member{{DB: "A", Role: "source"}, {DB: "B", Role: "source"}, {DB: "M", Role: "target"}}}},
		Goats: []Goat{
			{ID: 1, DB: "A", Schema: "public", Name: "orders", Kind: "table", PKey: "region|code", PKeyType: "integer|text",
				AnalyzeAfterCopy: true, VacuumAfterCopy: true, StrictChecking: true, ConflictStrategy: "bucardo_source", MakeDelta: "on"},
			{ID: 2, DB: "A", Schema: "public", Name: "countries", Kind: "table", PKey: "iso", PKeyType: "text",
				AnalyzeAfterCopy: true, VacuumAfterCopy: true, StrictChecking: true},
			{ID: 3, DB: "A", Schema: "public", Name: "seq", Kind: "sequence", AnalyzeAfterCopy: true, VacuumAfterCopy: true, StrictChecking: true},
		},
		Herds: []Herd{{Name: "rg", Goats: []int{2, 1, 3}}},
		Syncs: []Sync{{Name: "s", Herd: "rg", DBGroup: "g", Stayalive: true, Kidsalive: true, Autokick: true,
			ConflictStrategy: "bucardo_latest", DeleteMethod: "delete", Status: "active", Checktime: 30 * time.Second,
			AnalyzeAfterCopy: true, StrictChecking: true, OneTimeCopy: 2}},
		CustomCodes:    []CustomCode{{Name: "cc", WhenRun: "conflict", Status: "active", Maps: []CodeMap{{Sync: "s"}}}},
		IsolationLevel: "repeatable read",
	}
}

// existing is what gobucardo's catalog holds after importing bc (Make's
// objects, as created).
func existing(t *testing.T, bc Catalog) Existing {
	t.Helper()
	var x Existing
	for _, a := range Make(bc, Existing{}, Options{}).Actions {
		switch a.Kind {
		case catalog.KindDB:
			x.DBs = append(x.DBs, *a.DB)
		case catalog.KindDBGroup:
			x.DBGroups = append(x.DBGroups, catalog.DBGroup{Name: a.Name, Members: a.Members})
		case catalog.KindTable, catalog.KindSequence:
			x.Relations = append(x.Relations, *a.Relation)
		case catalog.KindRelGroup:
			x.RelGroups = append(x.RelGroups, catalog.RelGroup{Name: a.Name, Relations: a.RelGroup})
		case catalog.KindSync:
			x.Syncs = append(x.Syncs, *a.Sync)
		}
	}
	return x
}

// verbs renders a plan's actions as "verb kind name" lines.
func verbs(p Plan) string {
	var b strings.Builder
	for _, a := range p.Actions {
		b.WriteString(string(a.Verb) + " " + a.Kind + " " + a.Name)
		if a.Differs != "" {
			b.WriteString(" (" + a.Differs + ")")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func notes(p Plan) string {
	var b strings.Builder
	for _, n := range p.Notes {
		b.WriteString(n.Object + " | " + n.Setting + " | " + n.Why + "\n")
	}
	return b.String()
}

func TestMake(t *testing.T) {
	bc := bucardoCatalog()
	allCreate := "create db A\ncreate db B\ncreate dbgroup g\ncreate table public.orders\ncreate table public.countries\n" +
		"create sequence public.seq\ncreate relgroup rg\ncreate sync s\n"
	cases := []struct {
		name    string
		have    func(x *Existing)
		replace bool
		want    string // the actions
	}{
		{name: "empty catalog: everything created", have: func(x *Existing) { *x = Existing{} }, want: allCreate},
		{name: "imported already: nothing to do", have: func(*Existing) {},
			want: strings.ReplaceAll(allCreate, "create ", "unchanged ")},
		{name: "an activated sync is still the same", have: func(x *Existing) { x.Syncs[0].Status = catalog.StatusActive },
			want: strings.ReplaceAll(allCreate, "create ", "unchanged ")},
		{name: "a db with another password is refused", have: func(x *Existing) { x.DBs[0].Password = "old" },
			want: strings.Replace(strings.ReplaceAll(allCreate, "create ", "unchanged "), "unchanged db A", "refuse db A (connection)", 1)},
		{name: "with --replace it is replaced", have: func(x *Existing) { x.DBs[0].Password = "old" }, replace: true,
			want: strings.Replace(strings.ReplaceAll(allCreate, "create ", "unchanged "), "unchanged db A", "replace db A (connection)", 1)},
		{name: "other members, relations, options and table settings", have: func(x *Existing) {
			x.DBGroups[0].Members = x.DBGroups[0].Members[:1]
			x.RelGroups[0].Relations = x.RelGroups[0].Relations[1:]
			x.Syncs[0].Checktime = time.Minute
			x.Syncs[0].ConflictStrategy = catalog.StrategySkip
			x.Relations[0].MakeDelta = nil
		}, want: "unchanged db A\nunchanged db B\nrefuse dbgroup g (members (A:source in gobucardo))\n" +
			"refuse table public.orders (makedelta)\nunchanged table public.countries\nunchanged sequence public.seq\n" +
			"refuse relgroup rg (relations (of db A: public.orders, public.seq in gobucardo))\n" +
			"refuse sync s (checktime, conflict_strategy)\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := existing(t, bc)
			tc.have(&x)
			p := Make(bc, x, Options{Replace: tc.replace})
			if got := verbs(p); got != tc.want {
				t.Errorf("actions:\n%s\nwant:\n%s", got, tc.want)
			}
			if refused := len(p.Refused()) > 0; refused != strings.Contains(tc.want, "refuse ") {
				t.Errorf("Refused() = %v for actions:\n%s", p.Refused(), tc.want)
			}
		})
	}
}

// TestMakeObjects checks what the created objects are: Bucardo's order,
// roles, per-table settings, sync options, inactive.
func TestMakeObjects(t *testing.T) {
	p := Make(bucardoCatalog(), Existing{}, Options{})
	by := map[string]Action{}
	for _, a := range p.Actions {
		by[a.Kind+" "+a.Name] = a
	}
	if d := by["db A"].DB; d.ConnString() != "dbname=shop host=h1 password=pw port=5432 user=repl" || d.Status != catalog.StatusActive {
		t.Errorf("db A: %q %s", d.ConnString(), d.Status)
	}
	if strings.Contains(by["db A"].Detail, "pw ") || !strings.Contains(by["db A"].Detail, "password=***") {
		t.Errorf("db A's detail shows the password or not ***: %s", by["db A"].Detail)
	}
	if !by["db B"].DB.MakeDelta {
		t.Error("db B: makedelta not carried")
	}
	if got := catalog.DescribeMembers(by["dbgroup g"].Members); got != "A:source B:source" {
		t.Errorf("dbgroup g: %s", got)
	}
	if got := by["relgroup rg"].Detail; got != "of db A: public.countries, public.orders, public.seq" {
		t.Errorf("relgroup order: %s", got)
	}
	r := by["table public.orders"].Relation
	if r.ConflictStrategy != catalog.StrategySource || r.MakeDelta == nil || !*r.MakeDelta {
		t.Errorf("table orders settings: %+v", r)
	}
	s := by["sync s"].Sync
	if s.Status != catalog.StatusInactive || s.Checktime != 30*time.Second || s.OneTimeCopy != 2 ||
		s.IsolationLevel != "repeatable read" || s.RelGroup != "rg" || s.DBGroup != "g" {
		t.Errorf("sync s: %+v", s)
	}
	wantNotes := "db M | dbtype=mysql | gobucardo replicates PostgreSQL only: the db is left out, with its tables and its place in dbgroups\n" +
		"dbgroup g | member M | db M is not carried (see above): the dbgroup is imported without it\n" +
		"customcode cc | whenrun=conflict on sync s | Perl customcode cannot run in gobucardo: rewrite it as a plugin binary with pkg/sdk and register it with mcp add customcode; closest example: plugins/highest (whenrun=conflict; plugins/counters merges counter columns)\n"
	if got := notes(p); got != wantNotes {
		t.Errorf("notes:\n%s\nwant:\n%s", got, wantNotes)
	}
}

// TestMakeStrictChecking: Bucardo's strict_checking=false, on a sync or a
// table, is carried as gobucardo's, and a later change of it is a
// difference the import refuses without --replace.
func TestMakeStrictChecking(t *testing.T) {
	bc := bucardoCatalog()
	bc.Syncs[0].StrictChecking = false
	bc.Goats[1].StrictChecking = false
	p := Make(bc, Existing{}, Options{})
	if n := notes(p); strings.Contains(n, "strict_checking") {
		t.Errorf("strict_checking noted as not carried:\n%s", n)
	}
	var syncs, lenient int
	for _, a := range p.Actions {
		if a.Sync != nil {
			syncs++
			if a.Sync.StrictChecking {
				t.Errorf("sync %s: strict_checking true, want false", a.Name)
			}
		}
		if a.Relation != nil && a.Relation.StrictChecking != nil && !*a.Relation.StrictChecking {
			lenient++
			if !strings.Contains(a.Detail, "strict_checking false") {
				t.Errorf("%s: detail %q does not show strict_checking", a.Name, a.Detail)
			}
		}
	}
	if syncs != 1 || lenient != 1 {
		t.Errorf("%d syncs, %d tables with strict_checking=false; want 1, 1", syncs, lenient)
	}
	if d := relationDiff(catalog.Relation{}, *lenientRelation()); d != "strict_checking" {
		t.Errorf("relationDiff: %q, want strict_checking", d)
	}
}

func lenientRelation() *catalog.Relation {
	f := false
	return &catalog.Relation{StrictChecking: &f}
}

func TestMakeNotCarried(t *testing.T) {
	cases := []struct {
		name   string
		change func(c *Catalog)
		want   []string // substrings of the notes
		gone   string   // an action left out
	}{
		{name: "sync options gobucardo lacks", change: func(c *Catalog) {
			s := &c.Syncs[0]
			s.RebuildIndex, s.Priority, s.VacuumAfterCopy, s.TrackRates, s.CopyExtra = 1, 3, true, true, "WITH OIDS"
		}, want: []string{"sync s | rebuild_index=1", "sync s | priority=3", "sync s | vacuum_after_copy=true",
			"sync s | track_rates=true", "sync s | copyextra=WITH OIDS"}},
		{name: "a conflict strategy gobucardo lacks keeps the default", change: func(c *Catalog) {
			c.Syncs[0].ConflictStrategy = "bucardo_target"
		}, want: []string{"sync s | conflict_strategy=bucardo_target | sync s: conflict_strategy \"bucardo_target\" is not valid", "gobucardo's default is kept"}},
		{name: "per-table settings gobucardo lacks", change: func(c *Catalog) {
			on, one := true, 1
			g := &c.Goats[1]
			g.Autokick, g.RebuildIndex, g.Ghost, g.DeltaBypass, g.MakeDelta = &on, &one, true, true, "B C"
		}, want: []string{"table public.countries of db A | autokick=true", "| rebuild_index=1", "| ghost=true",
			"| delta_bypass=true", "| makedelta=B C"}},
		{name: "a hook gobucardo lacks, on a table", change: func(c *Catalog) {
			c.CustomCodes[0].WhenRun = "before_trigger_disable"
			c.CustomCodes[0].Maps = []CodeMap{{Goat: 2}}
		}, want: []string{"customcode cc | whenrun=before_trigger_disable on table public.countries of db A", "gobucardo has no before_trigger_disable hook"}},
		{name: "a name gobucardo refuses leaves the sync out", change: func(c *Catalog) {
			c.Herds[0].Name = "rg with spaces"
			c.Syncs[0].Herd = "rg with spaces"
		}, want: []string{"relgroup rg with spaces | name", "sync s | relgroup=rg with spaces | its relgroup is not carried"}, gone: "sync s"},
		{name: "a herd of a MySQL db", change: func(c *Catalog) {
			for i := range c.Goats {
				c.Goats[i].DB = "M"
			}
		}, want: []string{"relgroup rg | relations | its relations are of a db that is not carried", "sync s | relgroup=rg"}, gone: "relgroup rg"},
		{name: "a stalled db with a DBI DSN and dbconn", change: func(c *Catalog) {
			c.DBs[0].Status = "stalled"
			c.DBs[0].DSN = "dbi:Pg:dbname=other;host=h9;port=6000"
			c.DBs[0].Conn = "sslmode=require;application_name=x"
		}, want: []string{"db A | status=stalled", "db A | dbconn application_name"}},
		{name: "per-sync bucardo_config rows", change: func(c *Catalog) {
			c.Config = []ConfigItem{{Name: "kid_sleep", Setting: "1", Type: "sync", Item: "s"}}
		}, want: []string{"sync s | bucardo_config kid_sleep=1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bc := bucardoCatalog()
			tc.change(&bc)
			p := Make(bc, Existing{}, Options{})
			got := notes(p)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("notes lack %q:\n%s", w, got)
				}
			}
			if tc.gone != "" && strings.Contains(verbs(p), tc.gone+"\n") {
				t.Errorf("%s is still planned:\n%s", tc.gone, verbs(p))
			}
		})
	}
}

func TestDBFrom(t *testing.T) {
	cases := []struct {
		name string
		db   DB
		want string // ConnString, or the error
	}{
		{"parts", DB{Name: "A", Host: "h", Port: "5432", DBName: "d", User: "u", Pass: "p"}, "dbname=d host=h password=p port=5432 user=u"},
		{"DBI DSN replaces the parts", DB{Name: "A", DSN: "dbi:Pg:dbname=x;host=y;port=7", Host: "h", DBName: "d", User: "u"}, "dbname=x host=y port=7 user=u"},
		{"dbconn adds sslmode", DB{Name: "A", Host: "h", DBName: "d", Conn: "sslmode=verify-full"}, "dbname=d host=h sslmode=verify-full"},
		{"service", DB{Name: "A", Service: "svc"}, "service=svc"},
		{"user and password in the DSN", DB{Name: "A", DSN: "dbi:Pg:dbname=x;user=u2;password=p2", User: "u"}, "dbname=x password=p2 user=u2"},
		{"bad port", DB{Name: "A", Host: "h", Port: "x", DBName: "d"}, `dbport "x" is not a port number`},
		{"not DBD::Pg", DB{Name: "A", DSN: "dbi:mysql:database=x"}, "dbdsn is not a DBI DSN for DBD::Pg"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, _, err := DBFrom(tc.db)
			got := d.ConnString()
			if err != nil {
				got = err.Error()
			}
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCheckVersion(t *testing.T) {
	for v, ok := range map[string]bool{"5.6.0": true, "5.4.1": true, "5.10": true, "4.99.10": false, "6.0.0": false, "": false, "x": false} {
		err := CheckVersion(v, "database \"bucardo\"")
		if (err == nil) != ok {
			t.Errorf("CheckVersion(%q) = %v", v, err)
		}
		if err != nil && !strings.Contains(err.Error(), "Bucardo 5.x") {
			t.Errorf("CheckVersion(%q) does not say which versions: %v", v, err)
		}
	}
}
