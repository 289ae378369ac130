package catalog

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// installed returns a connection to a fresh main database with the catalog.
func installed(t *testing.T) (*pgtest.Cluster, *pgx.Conn) {
	t.Helper()
	c := pgtest.Shared(t)
	conn := c.Connect(t, c.NewDB(t))
	if _, err := Install(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	return c, conn
}

func TestInstallIdempotentAndVersioned(t *testing.T) {
	c := pgtest.Shared(t)
	conn := c.Connect(t, c.NewDB(t))
	ctx := context.Background()
	if err := CheckVersion(ctx, conn); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("CheckVersion before install = %v, want ErrNotInstalled", err)
	}
	res, err := Install(ctx, conn)
	if err != nil || res.From != 0 || res.To < 1 {
		t.Fatalf("Install = %+v, %v", res, err)
	}
	res2, err := Install(ctx, conn)
	if err != nil || res2.From != res.To || res2.To != res.To {
		t.Fatalf("second Install = %+v, %v", res2, err)
	}
	if err := CheckVersion(ctx, conn); err != nil {
		t.Fatalf("CheckVersion = %v", err)
	}
	// A catalog newer than this build is refused, and nothing is changed.
	if _, err := conn.Exec(ctx, "INSERT INTO gobucardo.schema_migration (version, name) VALUES (999, 'future')"); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(ctx, conn); err == nil || !strings.Contains(err.Error(), "use a newer mcp") {
		t.Errorf("Install over a newer catalog = %v", err)
	}
	if err := CheckVersion(ctx, conn); err == nil || !strings.Contains(err.Error(), "newer mcp") {
		t.Errorf("CheckVersion over a newer catalog = %v", err)
	}
}

// TestConstraints: the catalog refuses bad data written by hand.
func TestConstraints(t *testing.T) {
	_, conn := installed(t)
	ctx := context.Background()
	setup := `
		INSERT INTO gobucardo.db (name, dbname) VALUES ('A', 'a'), ('B', 'b');
		INSERT INTO gobucardo.dbgroup (name) VALUES ('g');
		INSERT INTO gobucardo.dbgroup_member (dbgroup, db, role, position) VALUES ('g', 'A', 'source', 0), ('g', 'B', 'target', 1);
		INSERT INTO gobucardo.relation (db, schema_name, rel_name, kind, key_columns, key_types, key_kind, key_index)
			VALUES ('A', 'public', 't', 'table', '{id}', '{integer}', 'primary key', 't_pkey');
		INSERT INTO gobucardo.relation (db, schema_name, rel_name, kind) VALUES ('A', 'public', 'nokey', 'table');
		INSERT INTO gobucardo.relation (db, schema_name, rel_name, kind, key_columns, key_types, key_kind, key_index)
			VALUES ('B', 'public', 'u', 'table', '{id}', '{integer}', 'primary key', 'u_pkey');
		INSERT INTO gobucardo.relgroup (name, db) VALUES ('r', 'A'), ('rn', 'A');
		INSERT INTO gobucardo.relgroup_member (relgroup, relation_id, db, position)
			SELECT 'r', id, 'A', 0 FROM gobucardo.relation WHERE rel_name = 't';
		INSERT INTO gobucardo.relgroup_member (relgroup, relation_id, db, position)
			SELECT 'rn', id, 'A', 0 FROM gobucardo.relation WHERE rel_name = 'nokey';
		INSERT INTO gobucardo.sync (name, relgroup, dbgroup) VALUES ('s', 'r', 'g');`
	if _, err := conn.Exec(ctx, setup); err != nil {
		t.Fatalf("setup: %v", err)
	}
	cases := []struct {
		name, sql, want string
	}{
		{"bad db name", "INSERT INTO gobucardo.db (name, dbname) VALUES ('9x', 'x')", "object_name_valid"},
		{"name all", "INSERT INTO gobucardo.db (name, dbname) VALUES ('ALL', 'x')", "object_name_valid"},
		{"db without dbname", "INSERT INTO gobucardo.db (name) VALUES ('C')", "db_dsn_or_parts"},
		{"dsn and parts", "INSERT INTO gobucardo.db (name, dsn, host) VALUES ('C', 'dbname=x', 'h')", "db_dsn_or_parts"},
		{"bad port", "INSERT INTO gobucardo.db (name, dbname, port) VALUES ('C', 'x', 70000)", "db_port_check"},
		{"bad status", "UPDATE gobucardo.db SET status = 'sleepy'", "db_status_check"},
		{"bad role", "UPDATE gobucardo.dbgroup_member SET role = 'boss'", "dbgroup_member_role_check"},
		{"member of unknown db", "INSERT INTO gobucardo.dbgroup_member VALUES ('g', 'Z', 'target', 5)", "dbgroup_member_db_fkey"},
		{"sequence with key", "INSERT INTO gobucardo.relation (db, schema_name, rel_name, kind, key_columns, key_types, key_kind, key_index) VALUES ('A', 'public', 's', 'sequence', '{id}', '{int}', 'primary key', 'x')", "relation_sequence_plain"},
		{"half a key", "INSERT INTO gobucardo.relation (db, schema_name, rel_name, kind, key_columns) VALUES ('A', 'public', 'h', 'table', '{id}')", "relation_key_complete"},
		{"key shape", "INSERT INTO gobucardo.relation (db, schema_name, rel_name, kind, key_columns, key_types, key_kind, key_index) VALUES ('A', 'public', 'h', 'table', '{id,x}', '{int}', 'primary key', 'x')", "relation_key_shape"},
		{"relgroup of two dbs", "INSERT INTO gobucardo.relgroup_member (relgroup, relation_id, db, position) SELECT 'r', id, 'B', 1 FROM gobucardo.relation WHERE rel_name = 'u'", "relgroup_member_relgroup_db_fkey"},
		{"relgroup member lies about db", "INSERT INTO gobucardo.relgroup_member (relgroup, relation_id, db, position) SELECT 'r', id, 'A', 1 FROM gobucardo.relation WHERE rel_name = 'u'", "relgroup_member_relation_id_db_fkey"},
		{"bad strategy", "UPDATE gobucardo.sync SET conflict_strategy = 'bucardo_whatever'", "sync_conflict_strategy_check"},
		{"bad onetimecopy", "UPDATE gobucardo.sync SET onetimecopy = 3", "sync_onetimecopy_check"},
		{"bad isolation", "UPDATE gobucardo.sync SET isolation_level = 'read committed'", "sync_isolation_level_check"},
		{"negative checktime", "UPDATE gobucardo.sync SET checktime = '-1 second'", "sync_checktime_check"},
		{"negative overdue", "UPDATE gobucardo.sync SET overdue = '-1 second'", "sync_overdue_check"},
		{"expired below overdue", "UPDATE gobucardo.sync SET overdue = '15 minutes', expired = '10 minutes'", "sync_expired_not_below_overdue"},
		{"reserved sync name", "INSERT INTO gobucardo.sync (name, relgroup, dbgroup) VALUES ('swap', 'r', 'g')", "sync_name_reserved"},
		{"no source", "UPDATE gobucardo.dbgroup_member SET role = 'target' WHERE db = 'A'", "sync s has no source database"},
		{"last source removed", "DELETE FROM gobucardo.dbgroup_member WHERE db = 'A'", "sync s has no source database"},
		{"list names a target", "UPDATE gobucardo.sync SET conflict_strategy = 'B A'", "names B, which is not a source db"},
		{"list names a stranger", "UPDATE gobucardo.sync SET conflict_strategy = 'A Q'", "names Q, which is not a source db"},
		{"keyless table in delta sync", "UPDATE gobucardo.sync SET relgroup = 'rn'", "public.nokey has no primary key"},
		{"key dropped", "UPDATE gobucardo.relation SET key_columns = NULL, key_types = NULL, key_kind = NULL, key_index = NULL WHERE rel_name = 't'", "public.t has no primary key"},
		{"customcode bad hook", "INSERT INTO gobucardo.customcode (name, plugin, sha256, whenrun) VALUES ('c', '/bin/true', repeat('a', 64), 'before_lunch')", "customcode_whenrun_check"},
		{"customcode relative path", "INSERT INTO gobucardo.customcode (name, plugin, sha256, whenrun) VALUES ('c', 'bin/true', repeat('a', 64), 'conflict')", "customcode_plugin_check"},
		{"customcode bad checksum", "INSERT INTO gobucardo.customcode (name, plugin, sha256, whenrun) VALUES ('c', '/bin/true', 'abc', 'conflict')", "customcode_sha256_check"},
		{"attachment to nothing", "INSERT INTO gobucardo.customcode (name, plugin, sha256, whenrun) VALUES ('c', '/bin/true', repeat('a', 64), 'conflict'); INSERT INTO gobucardo.customcode_map (code) VALUES ('c')", "customcode_map_one_target"},
		{"syncrun ended while running", "INSERT INTO gobucardo.syncrun (sync, sync_name, ended) VALUES ('s', 's', now())", "syncrun_ended"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, tc.sql)
				return err
			})
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				t.Fatalf("%s: accepted (err %v)", tc.sql, err)
			}
			if pgErr.ConstraintName != tc.want && !strings.Contains(pgErr.Message, tc.want) {
				t.Errorf("%s: %s (constraint %q), want %q", tc.sql, pgErr.Message, pgErr.ConstraintName, tc.want)
			}
		})
	}
	// A sync can be made valid inside a transaction: the checks are deferred to commit.
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE gobucardo.dbgroup_member SET role = 'target' WHERE db = 'A';
			UPDATE gobucardo.dbgroup_member SET role = 'source' WHERE db = 'B'`)
		return err
	})
	if err != nil {
		t.Errorf("swapping roles in one transaction: %v", err)
	}
}

func TestConflictStrategies(t *testing.T) {
	good := map[string]string{
		"latest": StrategyLatest, "default": StrategyLatest, "bucardo_latest": StrategyLatest,
		"latest_all": StrategyLatestAllTables, "source": StrategySource, "bucardo_skip": StrategySkip,
		"random": StrategyRandom, "abort": StrategyAbort, "custom": StrategyCustom,
		"B A C": "B A C", "B,A,C": "B A C", " B , A ": "B A",
	}
	for in, want := range good {
		got, err := ParseConflictStrategy(in)
		if err != nil || got != want {
			t.Errorf("ParseConflictStrategy(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "bucardo_whatever", "A bucardo_latest", "A A", "1A", "A;B"} {
		if got, err := ParseConflictStrategy(in); err == nil {
			t.Errorf("ParseConflictStrategy(%q) = %q, want an error", in, got)
		}
	}
}

func TestNamePatterns(t *testing.T) {
	cases := []struct {
		pattern, schema, name string
		want                  bool
	}{
		{"public.t", "public", "t", true},
		{"public.t", "other", "t", false},
		{"t", "any", "t", true},
		{"T", "public", "t", false}, // case-sensitive
		{"public.*", "public", "x", true},
		{"public.%", "public", "x", true},
		{"*.acc%", "s", "accounts", true},
		{"acc*", "s", "xaccounts", false},
		{"a_b", "s", "axb", false}, // _ is literal
		{`"My Table"`, "s", "My Table", true},
		{`public."a.b"`, "public", "a.b", true},
		{`"we""ird"`, "s", `we"ird`, true},
		{`"*"`, "s", "x", false}, // quoted wildcard is literal
		{`"*"`, "s", "*", true},
		{"ünïcode.täble", "ünïcode", "täble", true},
	}
	for _, tc := range cases {
		np, err := ParseNamePattern(tc.pattern)
		if err != nil {
			t.Errorf("ParseNamePattern(%q): %v", tc.pattern, err)
			continue
		}
		if got := np.Match(tc.schema, tc.name); got != tc.want {
			t.Errorf("%q matches %s.%s = %v, want %v", tc.pattern, tc.schema, tc.name, got, tc.want)
		}
	}
	for _, bad := range []string{"a.b.c", `"open`, "a..b", ".a"} {
		if _, err := ParseNamePattern(bad); err == nil {
			t.Errorf("ParseNamePattern(%q) accepted", bad)
		}
	}
	if got := DisplayName("public", "My Table"); got != `public."My Table"` {
		t.Errorf("DisplayName = %s", got)
	}
}

// TestFindRelations: keys are the primary key, else the best unique index
// on NOT NULL columns, for every kind of name.
func TestFindRelations(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	c.Exec(t, db, `
		CREATE SCHEMA "Sales Dept";
		CREATE SCHEMA other;
		CREATE TYPE mood AS ENUM ('sad', 'happy');
		CREATE TABLE public.pk (id bigint PRIMARY KEY, u int UNIQUE NOT NULL);
		CREATE TABLE public.composite (b text, a int, payload text, PRIMARY KEY (b, a));
		CREATE TABLE public.uniq (x int NOT NULL, y int NOT NULL, z int NOT NULL, w int,
			UNIQUE (x, y), UNIQUE (z), UNIQUE (w));
		CREATE TABLE public.nullable_unique (w int UNIQUE, v text);
		CREATE TABLE public.partial (x int NOT NULL);
		CREATE UNIQUE INDEX partial_x ON public.partial (x) WHERE x > 0;
		CREATE TABLE public.expr (x text NOT NULL);
		CREATE UNIQUE INDEX expr_x ON public.expr (lower(x));
		CREATE TABLE public.incl (x int NOT NULL, y int);
		CREATE UNIQUE INDEX incl_x ON public.incl (x) INCLUDE (y);
		CREATE TABLE "Sales Dept"."Ünïcode Tåble" ("Key Col" uuid PRIMARY KEY, m mood);
		CREATE TABLE other.pk (id int PRIMARY KEY);
		CREATE TABLE public.parted (id int PRIMARY KEY) PARTITION BY RANGE (id);
		CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM (0) TO (100);
		CREATE SEQUENCE public.seq1;
		CREATE TABLE gobucardo_not_system (id int);
		CREATE SCHEMA gobucardo; CREATE TABLE gobucardo.delta_x (id int);`)
	conn := c.Connect(t, db)
	ctx := context.Background()
	find := func(patterns ...string) map[string]Found {
		t.Helper()
		fs, err := FindRelations(ctx, conn, "A", KindTable, patterns)
		if err != nil {
			t.Fatalf("FindRelations(%v): %v", patterns, err)
		}
		m := map[string]Found{}
		for _, f := range fs {
			m[DisplayName(f.Schema, f.Name)] = f
		}
		return m
	}
	all := find("*.*")
	keys := map[string]string{
		"public.pk":                    "id bigint primary key",
		"public.composite":             "b,a text,integer primary key",
		"public.uniq":                  "z integer unique index",
		"public.nullable_unique":       "",
		"public.partial":               "",
		"public.expr":                  "",
		"public.incl":                  "x integer unique index",
		`"Sales Dept"."Ünïcode Tåble"`: `Key Col uuid primary key`,
		"other.pk":                     "id integer primary key",
		"public.parted":                "id integer primary key",
		"public.gobucardo_not_system":  "",
	}
	for name, want := range keys {
		f, ok := all[name]
		if !ok {
			t.Errorf("%s not found; found %v", name, all)
			continue
		}
		got := ""
		if f.KeyKind != "" {
			got = strings.Join(f.KeyColumns, ",") + " " + strings.Join(f.KeyTypes, ",") + " " + f.KeyKind
		}
		if got != want {
			t.Errorf("key of %s = %q, want %q", name, got, want)
		}
	}
	if len(all) != len(keys) {
		t.Errorf("found %d tables, want %d (no partitions, no gobucardo schema): %v", len(all), len(keys), all)
	}
	if got := find(`"Sales Dept".*`); len(got) != 1 {
		t.Errorf("quoted schema pattern found %v", got)
	}
	// A partition named on its own is refused, naming its root.
	if _, err := FindRelations(ctx, conn, "A", KindTable, []string{"public.parted_1"}); err == nil ||
		!strings.Contains(err.Error(), `table public.parted_1 of db "A" is a partition of public.parted: add public.parted instead`) {
		t.Errorf("a partition named on its own: %v", err)
	}
	// An exact name in two schemas is ambiguous; a missing one says so.
	if _, err := FindRelations(ctx, conn, "A", KindTable, []string{"pk"}); err == nil ||
		!strings.Contains(err.Error(), "several schemas") || !strings.Contains(err.Error(), "other.pk") {
		t.Errorf("ambiguous name: %v", err)
	}
	if _, err := FindRelations(ctx, conn, "A", KindTable, []string{"public.nope"}); err == nil ||
		!strings.Contains(err.Error(), `"public.nope" does not exist on db "A"`) {
		t.Errorf("missing name: %v", err)
	}
	seqs, err := FindRelations(ctx, conn, "A", KindSequence, []string{"*"})
	if err != nil || len(seqs) != 1 || seqs[0].Name != "seq1" {
		t.Errorf("sequences = %v, %v", seqs, err)
	}
	// Filters of add all tables.
	filtered, err := FindAll(ctx, conn, KindTable, Filter{Schemas: []string{"public"}, ExcludeTables: []string{"p*", "public.uniq"}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range filtered {
		names = append(names, f.Name)
	}
	if got := strings.Join(names, ","); got != "composite,expr,gobucardo_not_system,incl,nullable_unique" {
		t.Errorf("FindAll -n public -T p* -T public.uniq = %s", got)
	}
	filtered, err = FindAll(ctx, conn, KindTable, Filter{ExcludeSchemas: []string{"public", "other"}, Tables: []string{"*Tåble"}})
	if err != nil || len(filtered) != 1 || filtered[0].Schema != "Sales Dept" {
		t.Errorf("FindAll -N public -N other -t *Tåble = %v, %v", filtered, err)
	}
}

// TestFindPartitionedWithoutKey: a partitioned table whose key is its
// partitions' only, or whose unique index one partition lacks, is refused
// with what to do; one without any key is a keyless table like another.
func TestFindPartitionedWithoutKey(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	c.Exec(t, db, `
		CREATE TABLE leafkeys (id int NOT NULL, m int NOT NULL) PARTITION BY LIST (m);
		CREATE TABLE leafkeys_1 PARTITION OF leafkeys (PRIMARY KEY (id)) FOR VALUES IN (1);
		CREATE TABLE leafkeys_2 PARTITION OF leafkeys (UNIQUE (id, m)) FOR VALUES IN (2);
		CREATE TABLE halfindex (id int NOT NULL, m int NOT NULL) PARTITION BY LIST (m);
		CREATE TABLE halfindex_1 PARTITION OF halfindex FOR VALUES IN (1);
		CREATE TABLE halfindex_2 PARTITION OF halfindex FOR VALUES IN (2);
		CREATE UNIQUE INDEX halfindex_key ON ONLY halfindex (id, m);
		CREATE UNIQUE INDEX halfindex_1_key ON halfindex_1 (id, m);
		ALTER INDEX halfindex_key ATTACH PARTITION halfindex_1_key;
		CREATE TABLE nokeys (id int, m int) PARTITION BY LIST (m);
		CREATE TABLE nokeys_1 PARTITION OF nokeys FOR VALUES IN (1);`)
	conn := c.Connect(t, db)
	ctx := context.Background()
	for name, want := range map[string]string{
		"public.leafkeys":  "partitioned table public.leafkeys has no primary key or unique index of its own, though its partition leafkeys_1 has one (leafkeys_1_pkey)",
		"public.halfindex": "its unique index halfindex_key is not valid because partition halfindex_2 has no index attached to it",
	} {
		_, err := FindRelations(ctx, conn, "A", KindTable, []string{name})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("FindRelations(%s) = %v, want %q", name, err, want)
		}
		if _, err := FindAll(ctx, conn, KindTable, Filter{Tables: []string{name}}); err == nil {
			t.Errorf("FindAll -t %s accepted it", name)
		}
	}
	fs, err := FindRelations(ctx, conn, "A", KindTable, []string{"public.nokeys"})
	if err != nil || len(fs) != 1 || len(fs[0].KeyColumns) != 0 {
		t.Errorf("a partitioned table without any key = %v, %v", fs, err)
	}
}

// TestRunLock: a paused sync starts no run, a second run of a sync is
// refused while the first holds the run lock, and WaitForRuns waits for
// the run in progress to record its end, or for its session to die.
func TestRunLock(t *testing.T) {
	c, conn := installed(t)
	ctx := context.Background()
	var dbname string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&dbname); err != nil {
		t.Fatal(err)
	}
	setup := `
		INSERT INTO gobucardo.db (name, dbname) VALUES ('A', 'a'), ('B', 'b');
		INSERT INTO gobucardo.dbgroup (name) VALUES ('g');
		INSERT INTO gobucardo.dbgroup_member (dbgroup, db, role, position) VALUES ('g', 'A', 'source', 0), ('g', 'B', 'target', 1);
		INSERT INTO gobucardo.relgroup (name, db) VALUES ('r', 'A');
		INSERT INTO gobucardo.sync (name, relgroup, dbgroup) VALUES ('s', 'r', 'g'), ('other', 'r', 'g');`
	if _, err := conn.Exec(ctx, setup); err != nil {
		t.Fatalf("setup: %v", err)
	}
	runs := func() (n int) {
		t.Helper()
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM gobucardo.syncrun WHERE sync = 's'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	ctl := c.Connect(t, dbname) // the controller's session
	admin := c.Connect(t, dbname)
	id, err := StartRun(ctx, ctl, "s", 1, "h", "Started (test)")
	if err != nil {
		t.Fatal(err)
	}
	// A second run of s is refused and not recorded; another sync runs.
	if _, err := StartRun(ctx, admin, "s", 2, "h", "Started (test)"); !errors.As(err, new(*BusyError)) ||
		!strings.Contains(err.Error(), "mcp status s") {
		t.Errorf("second StartRun = %v, want a BusyError", err)
	}
	if n := runs(); n != 1 {
		t.Errorf("%d runs recorded, want 1", n)
	}
	if _, err := StartRun(ctx, admin, "other", 2, "h", "Started (test)"); err != nil {
		t.Errorf("StartRun of another sync = %v", err)
	}
	if err := EndRunLock(ctx, admin, "other"); err != nil {
		t.Fatal(err)
	}

	if err := pgx.BeginFunc(ctx, admin, func(tx pgx.Tx) error { return Pause(ctx, tx, "s", "for the test") }); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = WaitForRuns(short, admin, "s")
	cancel()
	if err == nil {
		t.Fatal("WaitForRuns returned while the run held its lock")
	}
	admin = c.Connect(t, dbname) // a cancelled wait may leave its session unusable
	done := make(chan error, 1)
	go func() { done <- WaitForRuns(ctx, admin, "s") }()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("WaitForRuns returned %v before the run ended", err)
	default:
	}
	if err := EndRun(ctx, ctl, id, RunGood, "Complete", RunCounts{}); err != nil {
		t.Fatal(err)
	}
	if err := EndRunLock(ctx, ctl, "s"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitForRuns = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitForRuns did not return once the run had ended")
	}

	// Paused: no run starts, nothing is recorded.
	var pe *PausedError
	if _, err := StartRun(ctx, ctl, "s", 1, "h", "Started (test)"); !errors.As(err, &pe) || pe.Reason != "for the test" ||
		err.Error() != "sync s is paused (for the test): mcp resume s first" {
		t.Errorf("StartRun of a paused sync = %v", err)
	}
	if n := runs(); n != 1 {
		t.Errorf("%d runs recorded, want 1", n)
	}
	if err := Resume(ctx, admin, "s"); err != nil {
		t.Fatal(err)
	}
	if _, err := StartRun(ctx, ctl, "s", 1, "h", "Started (test)"); err != nil {
		t.Fatalf("StartRun after resume = %v", err)
	}
	// A controller that dies leaves no lock behind.
	if err := ctl.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := WaitForRuns(wctx, admin, "s"); err != nil {
		t.Errorf("WaitForRuns after the run's session closed = %v", err)
	}
	// The next run records the dead one as interrupted.
	next, err := StartRun(ctx, admin, "s", 7, "h2", "Started (test)")
	if err != nil {
		t.Fatal(err)
	}
	var state, status string
	if err := admin.QueryRow(ctx, "SELECT state, status FROM gobucardo.syncrun WHERE sync = 's' AND id <> $1 ORDER BY id DESC LIMIT 1", next).
		Scan(&state, &status); err != nil {
		t.Fatal(err)
	}
	if state != RunBad || status != "Interrupted: its process (pid 1 on h) ended during the run; the next run carries its changes. It had said: Started (test)" {
		t.Errorf("the dead run is %s: %q", state, status)
	}
	var running int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM gobucardo.syncrun WHERE sync = 's' AND state = 'running'").Scan(&running); err != nil || running != 1 {
		t.Errorf("%d runs running, want only the new one (%v)", running, err)
	}
}
