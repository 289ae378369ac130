package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// The source's table; the target has the columns in another order, an
// extra column with a default, no src_only, and a trigger that refuses every
// write unless session_replication_role is replica. Identifiers need quoting
// and the key has two columns.
const (
	reapplySource = `
CREATE SCHEMA "App";
CREATE TABLE "App"."User List" (region text, "ID" integer, email text NOT NULL UNIQUE, name text,
	shout text GENERATED ALWAYS AS (upper(name)) STORED, src_only integer DEFAULT 7, PRIMARY KEY (region, "ID"));
CREATE TABLE public.other (id integer PRIMARY KEY);`
	reapplyTarget = `
CREATE SCHEMA "App";
CREATE TABLE "App"."User List" (note text DEFAULT 'target only', shout text GENERATED ALWAYS AS (upper(name)) STORED,
	name text, email text NOT NULL UNIQUE, "ID" integer, region text, PRIMARY KEY (region, "ID"));
CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'application trigger fired'; END$$;
CREATE TRIGGER refuse BEFORE INSERT OR UPDATE OR DELETE ON "App"."User List" FOR EACH ROW EXECUTE FUNCTION public.refuse();`
)

var userList = Relation{Schema: "App", Name: "User List", KeyColumns: []string{"region", "ID"}}

type reapplyEnv struct {
	t              *testing.T
	c              *pgtest.Cluster
	src, dst       string // databases
	source, target DB
}

func newReapplyEnv(t *testing.T) *reapplyEnv {
	t.Helper()
	c := pgtest.Shared(t)
	e := &reapplyEnv{t: t, c: c, src: c.NewDB(t), dst: c.NewDB(t)}
	c.Exec(t, e.src, reapplySource)
	c.Exec(t, e.dst, reapplyTarget)
	e.source = DB{Name: "A", Role: RoleSource, ConnString: c.DSN(e.src)}
	e.target = DB{Name: "B", Role: RoleTarget, ConnString: c.DSN(e.dst)}
	return e
}

// targetRows returns the target's table as text, by key.
func (e *reapplyEnv) targetRows() []string {
	e.t.Helper()
	return queryStrings(e.t, e.c.Connect(e.t, e.dst), `SELECT concat_ws(' | ', region, "ID", email, coalesce(name, 'NULL'), coalesce(shout, 'NULL'), note)
		FROM "App"."User List" ORDER BY region, "ID"`)
}

func (e *reapplyEnv) reapply(ctx context.Context, rel Relation, keys ...string) ([]ReapplyResult, error) {
	raw := make([]json.RawMessage, len(keys))
	for i, k := range keys {
		raw[i] = json.RawMessage(k)
	}
	return Reapply(ctx, "s1", e.source, e.target, rel, raw)
}

func key(region string, id int) string {
	b, _ := json.Marshal(map[string]any{"region": region, "ID": id})
	return string(b)
}

// TestReapply: rows parked after a unique violation on the target are
// re-applied as the source has them now, under a savepoint each.
func TestReapply(t *testing.T) {
	e := newReapplyEnv(t)
	e.c.Exec(t, e.src, `INSERT INTO "App"."User List" (region, "ID", email, name) VALUES
		('eu', 1, 'ann@x', 'Ann'), ('eu', 2, 'bob@x', 'Bob'), ('us', 3, 'cy@x', 'Cy'), ('us', 5, 'eve@x', NULL)`)
	// The target as a run that parked eu/1, eu/2, us/3 and us/4 left it: rows
	// 10 and 11 hold the emails of eu/1 and us/3 (their inserts failed);
	// eu/2 was parked for the same reason, and its row 12 is gone since; us/4
	// was deleted on the source after it was parked; 20 is none of this.
	session := "SET session_replication_role = replica; "
	e.c.Exec(t, e.dst, session+`INSERT INTO "App"."User List" (region, "ID", email, name, note) VALUES
		('eu', 10, 'ann@x', 'Ann elsewhere', 'n10'), ('us', 11, 'cy@x', 'Cy elsewhere', 'n11'),
		('us', 4, 'dan@x', 'Dan', 'n4'), ('zz', 20, 'zed@x', 'Zed', 'n20')`)
	keys := []string{key("eu", 1), key("eu", 2), key("us", 3), key("us", 4)}

	// Nothing fixed yet on the target: eu/1 and us/3 fail again with the
	// unique violation and are rolled back; eu/2 and us/4 go through.
	res, err := e.reapply(context.Background(), userList, keys...)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("results %+v", res)
	}
	for i, want := range []string{"23505", "", "23505", ""} {
		r := res[i]
		if string(r.Key) != keys[i] || r.SQLState != want || (r.Err == nil) != (want == "") {
			t.Errorf("key %s: %+v, want SQLSTATE %q", keys[i], r, want)
		}
	}
	var pe *pgconn.PgError
	if res[0].Err == nil || !errors.As(res[0].Err, &pe) || pe.ConstraintName != "User List_email_key" ||
		!strings.Contains(res[0].Err.Error(), "duplicate key") || !strings.Contains(res[0].Err.Error(), "ann@x") {
		t.Errorf("eu/1 error %v", res[0].Err)
	}
	if res[0].Gone || res[1].Gone || !res[3].Gone {
		t.Errorf("gone: %+v", res)
	}
	want := []string{
		"eu | 2 | bob@x | Bob | BOB | target only",
		"eu | 10 | ann@x | Ann elsewhere | ANN ELSEWHERE | n10",
		"us | 11 | cy@x | Cy elsewhere | CY ELSEWHERE | n11",
		"zz | 20 | zed@x | Zed | ZED | n20",
	}
	if got := e.targetRows(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("target after the first retry:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The conflict fixed on the target, the row changed on the source since
	// it was parked: the source's current row goes in. us/3 still fails.
	e.c.Exec(t, e.dst, session+`UPDATE "App"."User List" SET email = 'ann@elsewhere' WHERE "ID" = 10`)
	e.c.Exec(t, e.src, `UPDATE "App"."User List" SET name = 'Anne', src_only = 99 WHERE "ID" = 1`)
	res, err = e.reapply(context.Background(), userList, key("eu", 1), key("us", 3), key("us", 5))
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[0].Gone || res[1].SQLState != "23505" || res[2].Err != nil {
		t.Errorf("second retry: %+v", res)
	}
	want = []string{
		"eu | 1 | ann@x | Anne | ANNE | target only",
		"eu | 2 | bob@x | Bob | BOB | target only",
		"eu | 10 | ann@elsewhere | Ann elsewhere | ANN ELSEWHERE | n10",
		"us | 5 | eve@x | NULL | NULL | target only",
		"us | 11 | cy@x | Cy elsewhere | CY ELSEWHERE | n11",
		"zz | 20 | zed@x | Zed | ZED | n20",
	}
	if got := e.targetRows(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("target after the second retry:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// An existing target row of the key is replaced by the source's.
	e.c.Exec(t, e.src, `UPDATE "App"."User List" SET name = 'Robert' WHERE "ID" = 2`)
	if res, err := e.reapply(context.Background(), userList, key("eu", 2)); err != nil || res[0].Err != nil {
		t.Fatalf("eu/2: %+v %v", res, err)
	}
	if got := e.targetRows()[1]; got != "eu | 2 | bob@x | Robert | ROBERT | target only" {
		t.Errorf("eu/2 on the target: %s", got)
	}
}

// TestReapplyRefusals: keys that do not name the row, and what fails every
// key, change nothing.
func TestReapplyRefusals(t *testing.T) {
	e := newReapplyEnv(t)
	e.c.Exec(t, e.src, `INSERT INTO "App"."User List" (region, "ID", email, name) VALUES ('eu', 1, 'ann@x', 'Ann')`)
	res, err := e.reapply(context.Background(), userList, `{"ID": 1}`, `{"region": "eu", "ID": null}`, `[1]`, key("eu", 1))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{`no value for key column region`, `no value for key column "ID"`, "not a JSON object"} {
		if res[i].Err == nil || !strings.Contains(res[i].Err.Error(), want) || res[i].SQLState != "" {
			t.Errorf("key %s: %v, want %q", res[i].Key, res[i].Err, want)
		}
	}
	if res[3].Err != nil {
		t.Errorf("the valid key: %v", res[3].Err)
	}
	if got := e.targetRows(); len(got) != 1 {
		t.Errorf("target: %q", got)
	}

	cases := []struct {
		name string
		rel  Relation
		want string
	}{
		{"no table on the target", Relation{Schema: "public", Name: "other", KeyColumns: []string{"id"}}, "does not exist on db B"},
		{"no such key column", Relation{Schema: "App", Name: "User List", KeyColumns: []string{"region", "nope"}}, `key column nope`},
		{"no key columns", Relation{Schema: "App", Name: "User List"}, "no key columns"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := `{"id": 1, "region": "eu", "nope": 1}`
			if _, err := e.reapply(context.Background(), tc.rel, k); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
	if got := e.targetRows(); len(got) != 1 {
		t.Errorf("target: %q", got)
	}
}

// TestReapplyWaitsForARun: a run of the sync holds its lock on the source;
// Reapply waits for it and writes nothing meanwhile.
func TestReapplyWaitsForARun(t *testing.T) {
	e := newReapplyEnv(t)
	e.c.Exec(t, e.src, `INSERT INTO "App"."User List" (region, "ID", email, name) VALUES ('eu', 1, 'ann@x', 'Ann')`)
	ctx := context.Background()
	run := e.c.Connect(t, e.src)
	tx, err := run.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('gobucardo sync ' || $1))", "s1"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := e.reapply(short, userList, key("eu", 1)); err == nil {
		t.Fatal("Reapply did not wait for the run's lock")
	}
	if got := e.targetRows(); len(got) != 0 {
		t.Errorf("target while the run holds the lock: %q", got)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := e.reapply(ctx, userList, key("eu", 1)); err != nil || res[0].Err != nil {
		t.Fatalf("after the run: %+v %v", res, err)
	}
	if got := e.targetRows(); len(got) != 1 {
		t.Errorf("target: %q", got)
	}
}
