package admin

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// wantErr checks err against the sentence mcp prints and its kind: a
// UsageError (exit status 2) or a user error (exit status 1, shown as it is).
func wantErr(t *testing.T, err error, msg string, usage bool) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", msg)
	}
	if got := message(err); got != msg {
		t.Errorf("error\n got %q\nwant %q", got, msg)
	}
	var ue *UsageError
	if isUsage := errors.As(err, &ue); isUsage != usage {
		t.Errorf("error %q: usage error = %t, want %t", err, isUsage, usage)
	}
	if !usage && !catalog.IsUserError(err) {
		t.Errorf("error %q is not a user error: it would not be shown as it is", err)
	}
}

func TestParseKV(t *testing.T) {
	cases := []struct {
		name    string
		allowed map[string][]string
		extra   bool
		args    []string
		want    kvArgs
		err     string // a usage error
	}{
		{"positional and pairs, in order", syncKeys, false, []string{"s1", "checktime=30s", "s2", "Autokick=off"},
			kvArgs{pos: []string{"s1", "s2"}, vals: map[string]string{"checktime": "30s", "autokick": "off"}, order: []string{"checktime", "autokick"}}, ""},
		{"aliases give the canonical key", syncKeys, false, []string{"txnmode=serializable", "herd=r", "PING=no"},
			kvArgs{vals: map[string]string{"isolation_level": "serializable", "relgroup": "r", "autokick": "no"}, order: []string{"isolation_level", "relgroup", "autokick"}}, ""},
		{"the value is everything after the first =", dbKeys, false, []string{"dsn=host=/tmp dbname=x"},
			kvArgs{vals: map[string]string{"dsn": "host=/tmp dbname=x"}, order: []string{"dsn"}}, ""},
		{"an empty value", relationKeys, false, []string{"conflict_strategy="},
			kvArgs{vals: map[string]string{"conflict_strategy": ""}, order: []string{"conflict_strategy"}}, ""},
		{"no arguments", dbKey, false, nil, kvArgs{vals: map[string]string{}}, ""},
		{"a key given twice", dbKeys, false, []string{"port=1", "port=2"}, kvArgs{}, "port is given twice"},
		{"a key given twice through an alias", relationKeys, false, []string{"conflict=B A", "conflict_strategy=A B"}, kvArgs{}, "conflict_strategy is given twice"},
		{"an unknown key names the keys", relationKeys, false, []string{"colour=blue"}, kvArgs{},
			`unknown setting "colour": use conflict_strategy, db, makedelta, relgroup, strict_checking`},
		{"an unknown key as written", dbKey, false, []string{"Colour=blue"}, kvArgs{}, `unknown setting "Colour": use db`},
		{"unknown keys of a customcode are its plugin's settings", customCodeUpdateKeys, true, []string{"cc", "Column=v", "priority=1", "mode="},
			kvArgs{pos: []string{"cc"}, vals: map[string]string{"priority": "1"}, order: []string{"priority"}, extra: map[string]string{"Column": "v", "mode": ""}}, ""},
		{"a plugin setting given twice", customCodeUpdateKeys, true, []string{"column=a", "column=b"}, kvArgs{}, "column is given twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parse := parseKV
			if tc.extra {
				parse = parseKVExtra
			}
			got, err := parse(tc.args, tc.allowed)
			if tc.err != "" {
				wantErr(t, err, tc.err, true)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parse(%q)\n got %#v\nwant %#v", tc.args, got, tc.want)
			}
		})
	}
}

func TestApplyDBSettings(t *testing.T) {
	// service= is checked against libpq's service file.
	services := filepath.Join(t.TempDir(), "pg_service.conf")
	if err := os.WriteFile(services, []byte("[svc]\nhost=/tmp\ndbname=x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGSERVICEFILE", services)
	newDB := catalog.DB{Name: "X", Status: catalog.StatusActive}
	cases := []struct {
		name        string
		start       catalog.DB
		args        []string
		want        catalog.DB
		connChanged bool
		err         string
		usage       bool
	}{
		{"every part", newDB, []string{"dbname=shop", "host=db1", "port=5433", "user=repl", "pass=secret", "sslmode=REQUIRE", "service=svc"},
			catalog.DB{Name: "X", Status: "active", DBName: "shop", Host: "db1", Port: 5433, User: "repl", Password: "secret", SSLMode: "require", Service: "svc"},
			true, "", false},
		{"the parts' aliases", newDB, []string{"database=shop", "dbhost=db1", "dbport=1", "username=u", "password=p", "dbservice=svc"},
			catalog.DB{Name: "X", Status: "active", DBName: "shop", Host: "db1", Port: 1, User: "u", Password: "p", Service: "svc"}, true, "", false},
		{"a dsn", newDB, []string{"url=postgres://u@h/x"}, catalog.DB{Name: "X", Status: "active", DSN: "postgres://u@h/x"}, true, "", false},
		{"a service alone", newDB, []string{"service=svc"}, catalog.DB{Name: "X", Status: "active", Service: "svc"}, true, "", false},
		{"a dsn replaces the parts, not status or makedelta",
			catalog.DB{Name: "X", Status: "inactive", MakeDelta: true, DBName: "old", Host: "oldhost", Port: 5, Password: "pw"},
			[]string{"dsn=postgres://h/x"}, catalog.DB{Name: "X", Status: "inactive", MakeDelta: true, DSN: "postgres://h/x"}, true, "", false},
		{"a dsn with status and makedelta", newDB, []string{"dsn=postgres://h/x", "status=inactive", "makedelta=yes"},
			catalog.DB{Name: "X", Status: "inactive", MakeDelta: true, DSN: "postgres://h/x"}, true, "", false},
		{"parts replace a dsn", catalog.DB{Name: "X", Status: "active", DSN: "postgres://h/x"}, []string{"dbname=y"},
			catalog.DB{Name: "X", Status: "active", DBName: "y"}, true, "", false},
		{"a port alone keeps the dsn", catalog.DB{Name: "X", Status: "active", DSN: "postgres://h/x"}, []string{"port=5"},
			catalog.DB{Name: "X", Status: "active", DSN: "postgres://h/x", Port: 5}, true, "", false},
		{"status and makedelta leave the connection alone", catalog.DB{Name: "X", Status: "active", DBName: "x"},
			[]string{"status=INACTIVE", "makedelta=on"}, catalog.DB{Name: "X", Status: "inactive", MakeDelta: true, DBName: "x"}, false, "", false},
		{"makedelta off", catalog.DB{Name: "X", Status: "active", DBName: "x", MakeDelta: true},
			[]string{"makedelta=off"}, catalog.DB{Name: "X", Status: "active", DBName: "x"}, false, "", false},

		{"a port that is not a number", newDB, []string{"dbname=x", "port=abc"}, catalog.DB{}, false,
			`db X: port="abc" is not a port number (1-65535)`, false},
		{"port 0", newDB, []string{"dbname=x", "port=0"}, catalog.DB{}, false, `db X: port="0" is not a port number (1-65535)`, false},
		{"port 65536", newDB, []string{"dbname=x", "port=65536"}, catalog.DB{}, false, `db X: port="65536" is not a port number (1-65535)`, false},
		{"a bad status, as lowercased", newDB, []string{"dbname=x", "status=Paused"}, catalog.DB{}, false,
			`db X: status="paused" is not valid: use active or inactive`, false},
		{"a bad makedelta", newDB, []string{"dbname=x", "makedelta=maybe"}, catalog.DB{}, false,
			`db X: makedelta="maybe" is not valid: use on or off`, false},
		{"a dsn and a part", newDB, []string{"dsn=host=/tmp dbname=x", "port=5"}, catalog.DB{}, false,
			"db X: give either dsn= or the parts (dbname=, host=, ...), not both: put port into the dsn", false},
		{"no way to reach it", newDB, []string{"host=/tmp"}, catalog.DB{}, false,
			"db X: say how to reach it: dbname=D [host=H port=P user=U pass=P], service=S, or dsn=URL", false},
		{"status alone on a new db", newDB, []string{"status=active"}, catalog.DB{}, false,
			"db X: say how to reach it: dbname=D [host=H port=P user=U pass=P], service=S, or dsn=URL", false},
		{"a bad sslmode, as lowercased", newDB, []string{"dbname=x", "sslmode=Maybe"}, catalog.DB{}, false,
			`db X: sslmode="maybe" is not valid: use disable, allow, prefer, require, verify-ca or verify-full`, false},
		{"a dsn that does not parse, without its password", newDB, []string{"dsn=postgres://u:hunter2@h:notaport/x"}, catalog.DB{}, false,
			"db X: the connection settings are not valid (invalid connection string: invalid port): check the dsn's syntax", false},
		{"a service the service file lacks", newDB, []string{"service=nosuch"}, catalog.DB{}, false,
			"db X: the connection settings are not valid (invalid connection string: failed to read service): check the dsn's syntax", false},
		{"an unknown key", newDB, []string{"dbname=x", "colour=blue"}, catalog.DB{}, false,
			`unknown setting "colour": use dbname, dsn, host, makedelta, pass, port, service, sslmode, status, user`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kv, err := parseKV(tc.args, dbKeys)
			d := tc.start
			var connChanged bool
			if err == nil {
				connChanged, err = applyDBSettings(&d, kv)
			}
			if tc.err != "" {
				wantErr(t, err, tc.err, tc.usage)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d != tc.want || connChanged != tc.connChanged {
				t.Errorf("applyDBSettings(%q)\n got %+v, connChanged %t\nwant %+v, connChanged %t", tc.args, d, connChanged, tc.want, tc.connChanged)
			}
		})
	}
}

func TestParseMembers(t *testing.T) {
	m := func(db, role string) catalog.Member { return catalog.Member{DB: db, Role: role} }
	cases := []struct {
		name  string
		items []string
		want  []catalog.Member
		err   string
		usage bool
	}{
		{"the first is a source, the others targets", []string{"A", "B", "C"},
			[]catalog.Member{m("A", "source"), m("B", "target"), m("C", "target")}, "", false},
		{"roles and their aliases", []string{"A:master,B:replica", "C:fullcopy", "D:primary"},
			[]catalog.Member{m("A", "source"), m("B", "target"), m("C", "fullcopy"), m("D", "source")}, "", false},
		{"commas and spaces", []string{"A:source, B:target,,C"},
			[]catalog.Member{m("A", "source"), m("B", "target"), m("C", "target")}, "", false},
		{"a bad role", []string{"A:source", "B:boss"}, nil, `B:boss: role "boss" is not valid: use source, target or fullcopy`, false},
		{"no dbs", nil, nil, "name the dbs as DB:ROLE, e.g. A:source B:target", true},
		{"separators only", []string{", ,"}, nil, "name the dbs as DB:ROLE, e.g. A:source B:target", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMembers(tc.items)
			if tc.err != "" {
				wantErr(t, err, tc.err, tc.usage)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseMembers(%q) = %v, want %v", tc.items, got, tc.want)
			}
		})
	}
}

func TestDBGroupChanges(t *testing.T) {
	m := func(db, role string) catalog.Member { return catalog.Member{DB: db, Role: role} }
	cases := []struct {
		name    string
		args    []string
		want    []catalog.Member
		newName string
		err     string
		usage   bool
	}{
		{"nothing", nil, []catalog.Member{m("A", "source"), m("B", "target")}, "", "", false},
		{"add a db", []string{"C:fullcopy"}, []catalog.Member{m("A", "source"), m("B", "target"), m("C", "fullcopy")}, "", "", false},
		{"change a role", []string{"B:master"}, []catalog.Member{m("A", "source"), m("B", "source")}, "", "", false},
		{"remove a db", []string{"REMOVE", "A"}, []catalog.Member{m("B", "target")}, "", "", false},
		{"remove, then add again", []string{"remove", "B", "add", "C:target"}, []catalog.Member{m("A", "source"), m("C", "target")}, "", "", false},
		{"dbs are removed before roles are set", []string{"B:fullcopy", "remove", "B"}, []catalog.Member{m("A", "source"), m("B", "fullcopy")}, "", "", false},
		{"rename", []string{"Name=g2"}, []catalog.Member{m("A", "source"), m("B", "target")}, "g2", "", false},
		{"rename and change", []string{"A:target", "name=g2", "C:source"}, []catalog.Member{m("A", "target"), m("B", "target"), m("C", "source")}, "g2", "", false},
		{"remove a db that is not there", []string{"remove", "Z"}, nil, "", `db "Z" is not in dbgroup "g1" (A:source B:target)`, false},
		{"a db without a role", []string{"C"}, nil, "", `"C": give DB:ROLE (source, target or fullcopy)`, true},
		{"a bad role", []string{"C:boss"}, nil, "", `C:boss: role "boss" is not valid: use source, target or fullcopy`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			members := []catalog.Member{m("A", "source"), m("B", "target")}
			ch := parseDBGroupChanges(tc.args)
			got, err := changeMembers("g1", members, ch)
			if !reflect.DeepEqual(members, []catalog.Member{m("A", "source"), m("B", "target")}) {
				t.Errorf("changeMembers changed its argument: %v", members)
			}
			if tc.err != "" {
				wantErr(t, err, tc.err, tc.usage)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) || ch.newName != tc.newName {
				t.Errorf("%q: members %v, name %q; want %v, %q", tc.args, got, ch.newName, tc.want, tc.newName)
			}
		})
	}
}

func TestRelationSettings(t *testing.T) {
	table := catalog.Relation{Kind: catalog.KindTable, Schema: "public", Name: "accounts", ConflictStrategy: catalog.StrategySource}
	seq := catalog.Relation{Kind: catalog.KindSequence, Schema: "public", Name: "order_seq"}
	on, off := true, false
	cases := []struct {
		name      string
		start     catalog.Relation
		args      []string
		strategy  string
		makedelta *bool
		err       string
		usage     bool
	}{
		{"no settings", table, []string{"db=A", "relgroup=r"}, catalog.StrategySource, nil, "", false},
		{"a strategy's short form", table, []string{"conflict_strategy=latest"}, catalog.StrategyLatest, nil, "", false},
		{"a list of dbs through an alias", table, []string{"conflict=B,A"}, "B A", nil, "", false},
		{"inherit the sync's strategy", table, []string{"conflict_strategy=Inherit"}, "", nil, "", false},
		{"an empty strategy inherits", table, []string{"conflict_strategy="}, "", nil, "", false},
		{"makedelta on", table, []string{"makedelta=on"}, catalog.StrategySource, &on, "", false},
		{"makedelta off", table, []string{"makedelta=false"}, catalog.StrategySource, &off, "", false},
		{"makedelta from the db", table, []string{"makedelta=db"}, catalog.StrategySource, nil, "", false},
		{"makedelta inherit", table, []string{"makedelta=INHERIT"}, catalog.StrategySource, nil, "", false},
		{"a sequence without settings", seq, []string{"db=A"}, "", nil, "", false},

		{"a bad strategy", table, []string{"conflict_strategy=bucardo_whatever"}, "", nil,
			`table public.accounts: conflict_strategy "bucardo_whatever" is not valid: use bucardo_latest, bucardo_latest_all_tables, bucardo_source, bucardo_skip, bucardo_random, bucardo_abort, custom, or a list of source dbs ("B A C")`, false},
		{"a db named twice", table, []string{"conflict_strategy=A B A"}, "", nil,
			`table public.accounts: conflict_strategy "A B A" names db "A" twice: list each db once`, false},
		{"a bad makedelta", table, []string{"makedelta=maybe"}, "", nil,
			`table public.accounts: makedelta="maybe" is not valid: use on, off or inherit`, false},
		{"a strategy for a sequence", seq, []string{"conflict_strategy=latest"}, "", nil,
			"conflict_strategy applies to tables, not to sequence public.order_seq", false},
		{"makedelta for a sequence", seq, []string{"makedelta=on"}, "", nil,
			"makedelta applies to tables, not to sequence public.order_seq", false},
		{"an unknown key", table, []string{"colour=blue"}, "", nil,
			`unknown setting "colour": use conflict_strategy, db, makedelta, relgroup, strict_checking`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kv, err := parseKV(tc.args, relationKeys)
			r := tc.start
			if err == nil {
				err = relationSettings(&r, kv)
			}
			if tc.err != "" {
				wantErr(t, err, tc.err, tc.usage)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.ConflictStrategy != tc.strategy || !reflect.DeepEqual(r.MakeDelta, tc.makedelta) {
				t.Errorf("relationSettings(%q): conflict_strategy %q, makedelta %v; want %q, %v", tc.args, r.ConflictStrategy, r.MakeDelta, tc.strategy, tc.makedelta)
			}
		})
	}
}

func TestRelationStrictChecking(t *testing.T) {
	table := catalog.Relation{Kind: catalog.KindTable, Schema: "public", Name: "accounts"}
	seq := catalog.Relation{Kind: catalog.KindSequence, Schema: "public", Name: "order_seq"}
	on, off := true, false
	cases := []struct {
		name  string
		start catalog.Relation
		arg   string
		want  *bool
		err   string
	}{
		{"false", table, "strict_checking=false", &off, ""},
		{"on", table, "strict_checking=on", &on, ""},
		{"inherit", catalog.Relation{Kind: catalog.KindTable, Schema: "public", Name: "accounts", StrictChecking: &off}, "strict_checking=inherit", nil, ""},
		{"from the sync", catalog.Relation{Kind: catalog.KindTable, Schema: "public", Name: "accounts", StrictChecking: &on}, "strict_checking=sync", nil, ""},
		{"bad", table, "strict_checking=maybe", nil, `table public.accounts: strict_checking="maybe" is not valid: use true, false or inherit`},
		{"a sequence", seq, "strict_checking=false", nil, "strict_checking applies to tables, not to sequence public.order_seq"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kv, err := parseKV([]string{tc.arg}, tableUpdateKeys)
			if err != nil {
				t.Fatal(err)
			}
			r := tc.start
			err = relationSettings(&r, kv)
			if tc.err != "" {
				wantErr(t, err, tc.err, false)
				return
			}
			if err != nil || !reflect.DeepEqual(r.StrictChecking, tc.want) {
				t.Errorf("strict_checking %v (%v), want %v", r.StrictChecking, err, tc.want)
			}
		})
	}
}

func TestApplySyncOptions(t *testing.T) {
	with := func(f func(s *catalog.Sync)) catalog.Sync {
		s := catalog.NewSync("s1")
		f(&s)
		return s
	}
	cases := []struct {
		name  string
		args  []string
		want  catalog.Sync
		err   string
		usage bool
	}{
		{"every option", []string{"autokick=off", "checktime=30s", "conflict_strategy=source", "onetimecopy=2", "status=INACTIVE",
			"stayalive=no", "kidsalive=0", "isolation_level=SERIALIZABLE", "lifetime=1h", "maxkicks=10", "makedelta=on",
			"commit_every=5000", "deletemethod=Truncate_Cascade", "overdue=5m", "expired=900"},
			with(func(s *catalog.Sync) {
				s.Autokick, s.Checktime, s.ConflictStrategy, s.OneTimeCopy, s.Status = false, 30*time.Second, catalog.StrategySource, 2, "inactive"
				s.Stayalive, s.Kidsalive, s.IsolationLevel, s.Lifetime, s.MaxKicks = false, false, "serializable", time.Hour, 10
				s.MakeDelta, s.CommitEvery, s.DeleteMethod = true, 5000, "truncate_cascade"
				s.Overdue, s.Expired = 5*time.Minute, 15*time.Minute
			}), "", false},
		{"two aliases of one key", []string{"ping=false", "txnmode=repeatable_read", "commitevery=10", "conflict=B A", "standard_conflict=x"}, catalog.Sync{},
			"conflict_strategy is given twice", true},
		{"the aliases, once each", []string{"ping=false", "txnmode=repeatable_read", "commitevery=10", "standard_conflict=B A"},
			with(func(s *catalog.Sync) {
				s.Autokick, s.IsolationLevel, s.CommitEvery, s.ConflictStrategy = false, "repeatable read", 10, "B A"
			}), "", false},
		{"durations in seconds, and off", []string{"checktime=90", "lifetime=off"},
			with(func(s *catalog.Sync) { s.Checktime = 90 * time.Second }), "", false},
		{"overdue alone", []string{"overdue=90s", "expired=off"},
			with(func(s *catalog.Sync) { s.Overdue = 90 * time.Second }), "", false},
		{"expired alone, any overdue being off", []string{"expired=1h", "overdue=0"},
			with(func(s *catalog.Sync) { s.Expired = time.Hour }), "", false},
		{"expired equal to overdue", []string{"overdue=1m", "expired=60"},
			with(func(s *catalog.Sync) { s.Overdue, s.Expired = time.Minute, time.Minute }), "", false},
		{"the structural keys are not options", []string{"relgroup=r", "dbgroup=g", "tables=t1,t2", "dbs=A:source"},
			catalog.NewSync("s1"), "", false},

		{"a bad onetimecopy", []string{"onetimecopy=7"}, catalog.Sync{},
			`sync s1: onetimecopy="7" is not valid: use 0 (off), 1 (copy every table in full) or 2 (copy tables that are empty on the target)`, false},
		{"a bad checktime", []string{"checktime=soon"}, catalog.Sync{},
			`sync s1: checktime="soon" is not valid: use a duration such as 30s, 5m or 1h, or 0 for none`, false},
		{"a bad lifetime", []string{"lifetime=-1h"}, catalog.Sync{},
			`sync s1: lifetime="-1h" is not valid: use a duration such as 30s, 5m or 1h, or 0 for none`, false},
		{"a bad overdue", []string{"overdue=soon"}, catalog.Sync{},
			`sync s1: overdue="soon" is not valid: use a duration such as 30s, 5m or 1h, or 0 for none`, false},
		{"a negative expired", []string{"expired=-5m"}, catalog.Sync{},
			`sync s1: expired="-5m" is not valid: use a duration such as 30s, 5m or 1h, or 0 for none`, false},
		{"expired below overdue", []string{"expired=10m", "overdue=15m"}, catalog.Sync{},
			`sync s1: expired=10m0s is below overdue=15m0s: raise expired, lower overdue, or set one to 0 (off)`, false},
		{"a bad boolean, named by its canonical key", []string{"ping=maybe"}, catalog.Sync{},
			`sync s1: autokick="maybe" is not valid: use true or false`, false},
		{"a bad status", []string{"status=paused"}, catalog.Sync{}, `sync s1: status="paused" is not valid: use active or inactive`, false},
		{"a bad isolation level", []string{"isolation_level=read committed"}, catalog.Sync{},
			`sync s1: isolation_level="read committed" is not valid: use "repeatable read" or serializable`, false},
		{"a bad maxkicks", []string{"maxkicks=-1"}, catalog.Sync{}, `sync s1: maxkicks="-1" is not valid: use a whole number, 0 for no limit`, false},
		{"a bad commit_every", []string{"commit_every=lots"}, catalog.Sync{},
			`sync s1: commit_every="lots" is not valid: use a number of rows, 0 to commit each run once`, false},
		{"a bad deletemethod", []string{"deletemethod=drop"}, catalog.Sync{},
			`sync s1: deletemethod="drop" is not valid: use delete, truncate or truncate_cascade`, false},
		{"a bad conflict_strategy", []string{"conflict_strategy=bucardo_whatever"}, catalog.Sync{},
			`sync s1: conflict_strategy "bucardo_whatever" is not valid: use bucardo_latest, bucardo_latest_all_tables, bucardo_source, bucardo_skip, bucardo_random, bucardo_abort, custom, or a list of source dbs ("B A C")`, false},
		{"the first bad option in the order given", []string{"checktime=soon", "onetimecopy=7"}, catalog.Sync{},
			`sync s1: checktime="soon" is not valid: use a duration such as 30s, 5m or 1h, or 0 for none`, false},
		{"an unknown key names them all", []string{"colour=blue"}, catalog.Sync{},
			`unknown setting "colour": use autokick, checktime, commit_every, conflict_strategy, dbgroup, dbs, deletemethod, ` +
				`expired, isolation_level, kidsalive, lifetime, makedelta, maxkicks, onetimecopy, overdue, relgroup, status, stayalive, strict_checking, tables`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kv, err := parseKV(tc.args, syncKeys)
			s := catalog.NewSync("s1")
			if err == nil {
				err = applySyncOptions(&s, kv)
			}
			if tc.err != "" {
				wantErr(t, err, tc.err, tc.usage)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s != tc.want {
				t.Errorf("applySyncOptions(%q)\n got %+v\nwant %+v", tc.args, s, tc.want)
			}
		})
	}
	// mcp update sync checks the thresholds given against those stored.
	stored := catalog.NewSync("s1")
	stored.Overdue, stored.Expired = 5*time.Minute, 15*time.Minute
	for _, tc := range []struct {
		arg, err string
	}{
		{"overdue=20m", `sync s1: expired=15m0s is below overdue=20m0s: raise expired, lower overdue, or set one to 0 (off)`},
		{"expired=4m", `sync s1: expired=4m0s is below overdue=5m0s: raise expired, lower overdue, or set one to 0 (off)`},
		{"overdue=15m", ""},
		{"expired=0", ""},
	} {
		t.Run("update by "+tc.arg, func(t *testing.T) {
			kv, err := parseKV([]string{tc.arg}, syncKeys)
			s := stored
			if err == nil {
				err = applySyncOptions(&s, kv)
			}
			if tc.err != "" {
				wantErr(t, err, tc.err, false)
			} else if err != nil {
				t.Errorf("update of a sync with overdue=5m expired=15m by %s: %v", tc.arg, err)
			}
		})
	}
}

func TestApplyCustomCode(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "plugin")
	if err := os.WriteFile(plugin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notExec := filepath.Join(dir, "notexec")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, sum, err := catalog.PluginChecksum(plugin)
	if err != nil {
		t.Fatal(err)
	}
	start := catalog.CustomCode{Name: "cc", Status: catalog.StatusActive, Settings: map[string]string{"column": "a", "mode": "b"}}
	with := func(f func(cc *catalog.CustomCode)) catalog.CustomCode {
		cc := start
		cc.Settings = map[string]string{"column": "a", "mode": "b"}
		f(&cc)
		return cc
	}
	cases := []struct {
		name  string
		keys  map[string][]string
		args  []string
		want  catalog.CustomCode
		err   string
		usage bool
	}{
		{"every key", customCodeKeys, []string{"plugin=" + plugin, "whenrun=CONFLICT", "priority=5", "status=Inactive", "about=a b",
			"timeout=5s", "sync=s", "table=t", "db=A", "extra=1"},
			with(func(cc *catalog.CustomCode) {
				cc.Plugin, cc.SHA256, cc.WhenRun, cc.Priority, cc.Status, cc.About, cc.Timeout = plugin, sum, "conflict", 5, "inactive", "a b", 5*time.Second
				cc.Settings["extra"] = "1"
			}), "", false},
		{"the plugin's aliases", customCodeUpdateKeys, []string{"src_code=" + plugin},
			with(func(cc *catalog.CustomCode) { cc.Plugin, cc.SHA256 = plugin, sum }), "", false},
		{"a plugin's path is made absolute", customCodeUpdateKeys, []string{"path=" + dir + "/./plugin"},
			with(func(cc *catalog.CustomCode) { cc.Plugin, cc.SHA256 = plugin, sum }), "", false},
		{"settings change, and key= removes one", customCodeUpdateKeys, []string{"column=b", "mode=", "Other=x"},
			with(func(cc *catalog.CustomCode) { cc.Settings = map[string]string{"column": "b", "Other": "x"} }), "", false},
		{"removing a setting that is not there", customCodeUpdateKeys, []string{"nosuch="}, with(func(*catalog.CustomCode) {}), "", false},
		{"where it is attached is a setting for update", customCodeUpdateKeys, []string{"sync=s2"},
			with(func(cc *catalog.CustomCode) { cc.Settings["sync"] = "s2" }), "", false},
		{"a negative priority", customCodeUpdateKeys, []string{"priority=-3"}, with(func(cc *catalog.CustomCode) { cc.Priority = -3 }), "", false},

		{"a bad timeout", customCodeUpdateKeys, []string{"timeout=soon"}, catalog.CustomCode{},
			`customcode cc: timeout="soon" is not a duration such as 30s or 2m`, false},
		{"no timeout", customCodeUpdateKeys, []string{"timeout=0"}, catalog.CustomCode{},
			`customcode cc: timeout="0" is not a duration such as 30s or 2m`, false},
		{"a plugin that is not there", customCodeUpdateKeys, []string{"plugin=" + dir + "/nosuch"}, catalog.CustomCode{},
			"customcode cc: plugin " + dir + "/nosuch cannot be read (no such file or directory): give the path of the plugin binary", false},
		{"a plugin that is not executable", customCodeUpdateKeys, []string{"plugin=" + notExec}, catalog.CustomCode{},
			"customcode cc: plugin " + notExec + " is not an executable file: build it with go build and give its path", false},
		{"a bad hook", customCodeUpdateKeys, []string{"whenrun=before_lunch"}, catalog.CustomCode{},
			`customcode cc: whenrun="before_lunch" is not a hook: use one of conflict, exception, before_sync, after_sync, before_txn, after_txn`, false},
		{"a bad priority", customCodeUpdateKeys, []string{"priority=high"}, catalog.CustomCode{},
			`customcode cc: priority="high" is not a whole number`, false},
		{"a bad status", customCodeUpdateKeys, []string{"status=paused"}, catalog.CustomCode{},
			`customcode cc: status="paused" is not valid: use active or inactive`, false},
		{"the timeout is checked before the plugin", customCodeUpdateKeys, []string{"plugin=" + notExec, "timeout=soon"}, catalog.CustomCode{},
			`customcode cc: timeout="soon" is not a duration such as 30s or 2m`, false},
		{"a key given twice", customCodeUpdateKeys, []string{"priority=1", "priority=2"}, catalog.CustomCode{}, "priority is given twice", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kv, err := parseKVExtra(tc.args, tc.keys)
			cc := with(func(*catalog.CustomCode) {})
			if err == nil {
				err = applyCustomCode(&cc, kv, catalog.PluginChecksum)
			}
			if tc.err != "" {
				wantErr(t, err, tc.err, tc.usage)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cc, tc.want) {
				t.Errorf("applyCustomCode(%q)\n got %+v\nwant %+v", tc.args, cc, tc.want)
			}
		})
	}
}

// TestNewObjects: what mcp add db, add sync and add customcode check before
// they touch the catalog, in the order they check it.
func TestNewObjects(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "plugin")
	if err := os.WriteFile(plugin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	badName := func(kind, name string) string {
		return kind + ` name "` + name + `" is not valid: use a letter, then letters, digits, _ or - (at most 63 bytes; not "all")`
	}

	t.Run("db", func(t *testing.T) {
		cases := []struct {
			name, db string
			args     []string
			want     catalog.DB
			err      string
		}{
			{"a db", "A", []string{"dbname=x"}, catalog.DB{Name: "A", Status: "active", DBName: "x"}, ""},
			{"an inactive db", "A", []string{"dbname=x", "status=inactive"}, catalog.DB{Name: "A", Status: "inactive", DBName: "x"}, ""},
			{"a bad name", "1x", []string{"dbname=x"}, catalog.DB{}, badName("db", "1x")},
			{"the name before the settings", "all", []string{"port=abc"}, catalog.DB{}, badName("db", "all")},
			{"a bad setting", "A", []string{"port=abc"}, catalog.DB{}, `db A: port="abc" is not a port number (1-65535)`},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				kv, err := parseKV(tc.args, dbKeys)
				if err != nil {
					t.Fatal(err)
				}
				d, err := newDB(tc.db, kv)
				if tc.err != "" {
					wantErr(t, err, tc.err, false)
					return
				}
				if err != nil || d != tc.want {
					t.Errorf("newDB = %+v, %v; want %+v", d, err, tc.want)
				}
			})
		}
	})

	t.Run("sync", func(t *testing.T) {
		cases := []struct {
			name, sync string
			args       []string
			want       syncParts
			err        string
			usage      bool
		}{
			{"a relgroup over a dbgroup", "s1", []string{"relgroup=r", "dbgroup=g", "checktime=30s"},
				syncParts{relgroup: "r", dbgroup: "g", hasRelGroup: true, hasDBGroup: true}, "", false},
			{"tables over dbs", "s1", []string{"tables=a,b", "dbs=A:source,B:target"},
				syncParts{tables: "a,b", dbs: "A:source,B:target"}, "", false},
			{"an empty relgroup= is given", "s1", []string{"relgroup=", "dbgroup=g"},
				syncParts{dbgroup: "g", hasRelGroup: true, hasDBGroup: true}, "", false},
			{"neither relgroup nor tables", "s1", []string{"dbgroup=g"}, syncParts{}, "sync s1: give relgroup=R or tables=T1,T2 (one of them)", true},
			{"relgroup and tables", "s1", []string{"relgroup=r", "tables=t", "dbgroup=g"}, syncParts{}, "sync s1: give relgroup=R or tables=T1,T2 (one of them)", true},
			{"neither dbs nor dbgroup", "s1", []string{"relgroup=r"}, syncParts{}, "sync s1: give dbs=A:source,B:target or dbgroup=G (one of them)", true},
			{"dbs and dbgroup", "s1", []string{"relgroup=r", "dbs=A", "dbgroup=g"}, syncParts{}, "sync s1: give dbs=A:source,B:target or dbgroup=G (one of them)", true},
			{"the options before the parts", "s1", []string{"onetimecopy=7"}, syncParts{},
				`sync s1: onetimecopy="7" is not valid: use 0 (off), 1 (copy every table in full) or 2 (copy tables that are empty on the target)`, false},
			{"a bad name before the options", "1s", []string{"onetimecopy=7"}, syncParts{}, badName("sync", "1s"), false},
			{"a reserved name", "Swap", []string{"relgroup=r", "dbgroup=g"}, syncParts{}, `sync name "Swap" is reserved: choose another name`, false},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				kv, err := parseKV(tc.args, syncKeys)
				if err != nil {
					t.Fatal(err)
				}
				s, parts, err := newSync(tc.sync, kv)
				if tc.err != "" {
					wantErr(t, err, tc.err, tc.usage)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				want := catalog.NewSync(tc.sync)
				if err := applySyncOptions(&want, kv); err != nil {
					t.Fatal(err)
				}
				if s != want || parts != tc.want {
					t.Errorf("newSync = %+v, %+v; want %+v, %+v", s, parts, want, tc.want)
				}
			})
		}
	})

	t.Run("customcode", func(t *testing.T) {
		cases := []struct {
			name, cc string
			args     []string
			want     attachment
			where    string
			err      string
			usage    bool
		}{
			{"on a sync", "cc", []string{"plugin=" + plugin, "whenrun=conflict", "sync=s"}, attachment{onSync: true, sync: "s"}, "sync s", "", false},
			{"on a table of a db", "cc", []string{"plugin=" + plugin, "whenrun=exception", "table=public.t", "db=A"},
				attachment{table: "public.t", db: "A"}, "table public.t", "", false},
			{"on a table", "cc", []string{"plugin=" + plugin, "whenrun=exception", "relation=t"}, attachment{table: "t"}, "table t", "", false},
			{"no plugin", "cc", []string{"whenrun=conflict", "sync=s"}, attachment{}, "", "customcode cc: plugin=PATH and whenrun=HOOK are required", true},
			{"no hook", "cc", []string{"plugin=" + plugin, "sync=s"}, attachment{}, "", "customcode cc: plugin=PATH and whenrun=HOOK are required", true},
			{"nowhere", "cc", []string{"plugin=" + plugin, "whenrun=conflict"}, attachment{}, "",
				"customcode cc: attach it to sync=S or to table=SCHEMA.T (one of them)", true},
			{"on a sync and a table", "cc", []string{"plugin=" + plugin, "whenrun=conflict", "sync=s", "table=t"}, attachment{}, "",
				"customcode cc: attach it to sync=S or to table=SCHEMA.T (one of them)", true},
			{"the settings before what is required", "cc", []string{"timeout=soon"}, attachment{}, "",
				`customcode cc: timeout="soon" is not a duration such as 30s or 2m`, false},
			{"a bad name first", "c c", []string{"timeout=soon"}, attachment{}, "", badName("customcode", "c c"), false},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				kv, err := parseKVExtra(tc.args, customCodeKeys)
				if err != nil {
					t.Fatal(err)
				}
				cc, at, err := newCustomCode(tc.cc, kv, catalog.PluginChecksum)
				if tc.err != "" {
					wantErr(t, err, tc.err, tc.usage)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if at != tc.want || at.where() != tc.where || cc.Name != tc.cc || cc.Status != catalog.StatusActive || cc.Plugin != plugin {
					t.Errorf("newCustomCode = %+v, %+v (%s); want %+v (%s)", cc, at, at.where(), tc.want, tc.where)
				}
			})
		}
	})
}
