package replicate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is a source and targets on the shared cluster, each with schema.
type env struct {
	t     *testing.T
	c     *pgtest.Cluster
	dbs   map[string]string // name -> database
	conns map[string]*pgx.Conn
	sync  Sync
	opts  Options // of e.run and e.rerun
}

// conn returns the env's one connection to db, for reading.
func (e *env) conn(db string) *pgx.Conn {
	e.t.Helper()
	if e.conns[db] == nil {
		e.conns[db] = e.c.Connect(e.t, e.dbs[db])
	}
	return e.conns[db]
}

// newEnv makes databases for roles ("A:source", "B:target", ...), runs
// schema on each, and a sync over rels, with capture installed.
func newEnv(t *testing.T, schema string, roles []string, rels []Relation) *env {
	t.Helper()
	e := &env{t: t, c: pgtest.Shared(t), dbs: map[string]string{}, conns: map[string]*pgx.Conn{}}
	e.sync = Sync{Name: "s_" + fmt.Sprint(len(t.Name())), Relations: rels}
	for _, r := range roles {
		name, role, _ := strings.Cut(r, ":")
		db := e.c.NewDB(t)
		e.dbs[name] = db
		e.c.Exec(t, db, schema)
		e.sync.DBs = append(e.sync.DBs, DB{Name: name, Role: role, ConnString: e.c.DSN(db)})
	}
	e.install()
	return e
}

// install installs capture of the sync's keyed tables on its sources.
func (e *env) install() {
	e.t.Helper()
	cs := capture.Sync{Name: e.sync.Name}
	for _, r := range e.sync.Relations {
		if r.Sequence || len(r.KeyColumns) == 0 {
			continue
		}
		cs.Tables = append(cs.Tables, capture.Table{Schema: r.Schema, Name: r.Name, KeyColumns: r.KeyColumns,
			KeyTypes: e.keyTypes(r)})
	}
	for _, d := range e.sync.DBs {
		if d.Role != RoleSource || len(cs.Tables) == 0 {
			continue
		}
		if err := capture.Install(context.Background(), e.conn(d.Name), cs); err != nil {
			e.t.Fatalf("install capture on %s: %v", d.Name, err)
		}
	}
}

func (e *env) source() string {
	for _, d := range e.sync.DBs {
		if d.Role == RoleSource {
			return d.Name
		}
	}
	return ""
}

func (e *env) keyTypes(r Relation) []string {
	e.t.Helper()
	var types []string
	for _, k := range r.KeyColumns {
		var typ string
		err := e.conn(e.source()).QueryRow(context.Background(),
			"SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2",
			pg.Ident(r.Schema, r.Name), k).Scan(&typ)
		if err != nil {
			e.t.Fatalf("key type of %s.%s: %v", r.Display(), k, err)
		}
		types = append(types, typ)
	}
	return types
}

func (e *env) exec(db, sql string, args ...any) {
	e.t.Helper()
	e.c.Exec(e.t, e.dbs[db], sql, args...)
}

func (e *env) run() Result {
	e.t.Helper()
	res, err := Run(context.Background(), e.sync, e.opts)
	if err != nil {
		e.t.Fatalf("run: %v", err)
	}
	return res
}

// rerun runs the sync after a run died: the servers may take a moment to
// notice that its sessions are gone and release its lock on the sync, so
// ErrBusy is retried for a while, as a controller would.
func (e *env) rerun() Result {
	e.t.Helper()
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		res, err := Run(context.Background(), e.sync, e.opts)
		if errors.Is(err, ErrBusy) && time.Since(start) < 10*time.Second {
			continue
		}
		if err != nil {
			e.t.Fatalf("rerun: %v", err)
		}
		return res
	}
}

// contents returns a table's rows as text in key order, columns in the
// source's order (targets may order them differently).
func (e *env) contents(db string, rel Relation, cols []string) []string {
	e.t.Helper()
	var sel []string
	for _, c := range cols {
		sel = append(sel, "coalesce(("+pg.Ident(c)+")::text, 'NULL')")
	}
	var order string
	if len(rel.KeyColumns) > 0 {
		var ks []string
		for _, k := range rel.KeyColumns {
			ks = append(ks, pg.Ident(k))
		}
		order = strings.Join(ks, ", ")
	} else {
		order = strings.Join(sel, ", ")
	}
	sql := fmt.Sprintf("SELECT concat_ws(' | ', %s) FROM %s ORDER BY %s", strings.Join(sel, ", "), pg.Ident(rel.Schema, rel.Name), order)
	return queryStrings(e.t, e.conn(db), sql)
}

// queryStrings returns the one text column of sql's rows.
func queryStrings(t *testing.T, conn *pgx.Conn, sql string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sourceColumns lists the source's non-generated columns of rel.
func (e *env) sourceColumns(rel Relation) []string {
	e.t.Helper()
	rows, err := e.conn(e.source()).Query(context.Background(),
		"SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
		pg.Ident(rel.Schema, rel.Name))
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			e.t.Fatal(err)
		}
		cols = append(cols, c)
	}
	return cols
}

// assertSame checks that every db holds what the source holds.
func (e *env) assertSame() {
	e.t.Helper()
	e.assertSameBut()
}

// assertSameBut checks that every db but those named holds what the
// source holds.
func (e *env) assertSameBut(but ...string) {
	e.t.Helper()
	left := map[string]bool{}
	for _, b := range but {
		left[b] = true
	}
	src := e.source()
	for _, rel := range e.sync.Relations {
		if rel.Sequence {
			want := e.seq(src, rel)
			for _, d := range e.sync.DBs {
				if left[d.Name] {
					continue
				}
				if got := e.seq(d.Name, rel); got != want {
					e.t.Errorf("sequence %s on %s = %s, source %s", rel.Display(), d.Name, got, want)
				}
			}
			continue
		}
		cols := e.sourceColumns(rel)
		want := e.contents(src, rel, cols)
		for _, d := range e.sync.DBs {
			if d.Name == src || left[d.Name] {
				continue
			}
			got := e.contents(d.Name, rel, cols)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				e.t.Errorf("%s on %s differs from the source: %d rows vs %d\n%s", rel.Display(), d.Name, len(got), len(want), diff(want, got))
			}
		}
	}
}

func (e *env) seq(db string, rel Relation) string {
	e.t.Helper()
	var s string
	if err := e.conn(db).QueryRow(context.Background(),
		"SELECT last_value::text || ' ' || is_called::text FROM "+pg.Ident(rel.Schema, rel.Name)).Scan(&s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

func diff(want, got []string) string {
	w := map[string]bool{}
	for _, s := range want {
		w[s] = true
	}
	g := map[string]bool{}
	for _, s := range got {
		g[s] = true
	}
	var b strings.Builder
	n := 0
	for _, s := range want {
		if !g[s] && n < 10 {
			fmt.Fprintf(&b, "  missing: %s\n", s)
			n++
		}
	}
	for _, s := range got {
		if !w[s] && n < 20 {
			fmt.Fprintf(&b, "  extra:   %s\n", s)
			n++
		}
	}
	return b.String()
}
