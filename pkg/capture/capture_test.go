package capture

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestDeltaName(t *testing.T) {
	long := strings.Repeat("ä", 40)
	cases := [][2]string{{"public", "accounts"}, {"a_b", "c"}, {"a", "b_c"}, {long, long}, {"Sales Dept", "Ünïcode Tåble"}}
	seen := map[string]bool{}
	for _, c := range cases {
		n := DeltaName(c[0], c[1])
		if len(n)+len("_txid") > 63 || !strings.HasPrefix(n, "d_") {
			t.Errorf("DeltaName%v = %q (%d bytes)", c, n, len(n))
		}
		if seen[n] {
			t.Errorf("DeltaName%v = %q is ambiguous", c, n)
		}
		seen[n] = true
	}
}

func setup(t *testing.T) (*pgtest.Cluster, string, *pgx.Conn) {
	t.Helper()
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	c.Exec(t, db, `CREATE SCHEMA "Odd Schema";
		CREATE TABLE "Odd Schema"."Mixed Case" ("Id" int, k2 text, v text, PRIMARY KEY ("Id", k2));
		CREATE TABLE public.t (id int PRIMARY KEY, v text)`)
	return c, db, c.Connect(t, db)
}

var (
	odd   = Table{Schema: "Odd Schema", Name: "Mixed Case", KeyColumns: []string{"Id", "k2"}, KeyTypes: []string{"integer", "text"}}
	plain = Table{Schema: "public", Name: "t", KeyColumns: []string{"id"}, KeyTypes: []string{"integer"}}
)

func deltas(t *testing.T, conn *pgx.Conn, tbl Table) []string {
	t.Helper()
	var cols []string
	for _, c := range tbl.KeyColumns {
		cols = append(cols, `d."`+c+`"::text`)
	}
	rows, err := conn.Query(context.Background(), "SELECT concat_ws(',', "+strings.Join(cols, ", ")+`) FROM gobucardo."`+
		DeltaName(tbl.Schema, tbl.Name)+`" d ORDER BY txid, 1`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCaptureRecordsKeys(t *testing.T) {
	_, _, conn := setup(t)
	ctx := context.Background()
	s := Sync{Name: "s1", Autokick: true, Tables: []Table{odd, plain}}
	if err := Install(ctx, conn, s); err != nil {
		t.Fatal(err)
	}
	if err := Install(ctx, conn, s); err != nil { // idempotent
		t.Fatalf("second install: %v", err)
	}
	if ps, err := Check(ctx, conn, s); err != nil || len(ps) != 0 {
		t.Fatalf("Check after install = %v, %v", ps, err)
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`INSERT INTO "Odd Schema"."Mixed Case" VALUES (1, 'a', 'x'), (2, 'b', 'y')`)
	exec(`UPDATE "Odd Schema"."Mixed Case" SET v = 'z' WHERE "Id" = 1`)
	exec(`UPDATE "Odd Schema"."Mixed Case" SET "Id" = 3 WHERE "Id" = 2`) // key change: old and new
	exec(`DELETE FROM "Odd Schema"."Mixed Case" WHERE "Id" = 1`)
	exec(`UPDATE "Odd Schema"."Mixed Case" SET v = v WHERE false`) // no row: nothing recorded
	got := strings.Join(deltas(t, conn, odd), " ")
	if want := "1,a 2,b 1,a 2,b 3,b 1,a"; got != want {
		t.Errorf("deltas = %q, want %q", got, want)
	}
	// Writes under session_replication_role = replica (a kid's) are not captured.
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO public.t VALUES (100, 'from a kid')")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := deltas(t, conn, plain); len(d) != 0 {
		t.Errorf("replica-mode insert was captured: %v", d)
	}
	exec("TRUNCATE public.t")
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM gobucardo.truncate_log WHERE rel_name = 't'").Scan(&n); err != nil || n != 1 {
		t.Errorf("truncate_log rows = %d, %v", n, err)
	}
}

func TestAutokickNotifiesOnceUntilArmed(t *testing.T) {
	c, db, conn := setup(t)
	ctx := context.Background()
	if err := Install(ctx, conn, Sync{Name: "s1", Autokick: true, Tables: []Table{plain}}); err != nil {
		t.Fatal(err)
	}
	if err := Install(ctx, conn, Sync{Name: "quiet", Autokick: false, Tables: []Table{plain}}); err != nil {
		t.Fatal(err)
	}
	listener := listen(t, c, db)
	for i := 0; i < 3; i++ {
		if _, err := conn.Exec(ctx, "INSERT INTO public.t VALUES ($1, 'x')", i); err != nil {
			t.Fatal(err)
		}
	}
	if got := notified(listener); got != "s1" {
		t.Errorf("notifications = %v, want exactly one for s1 (then disarmed)", got)
	}
}

// listen is a session of db listening for kicks.
func listen(t *testing.T, c *pgtest.Cluster, db string) *pgx.Conn {
	t.Helper()
	listener := c.Connect(t, db)
	if _, err := listener.Exec(context.Background(), "LISTEN "+KickChannel); err != nil {
		t.Fatal(err)
	}
	return listener
}

// notified is the payloads of the kicks listener received, comma-separated,
// once none came for 300ms.
func notified(listener *pgx.Conn) string {
	var got []string
	for {
		wctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		n, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			return strings.Join(got, ",")
		}
		got = append(got, n.Payload)
	}
}

func TestCheckFindsStaleAndMissing(t *testing.T) {
	_, _, conn := setup(t)
	ctx := context.Background()
	s := Sync{Name: "s1", Autokick: false, Tables: []Table{plain}}
	ps, err := Check(ctx, conn, s)
	if err != nil || len(ps) != 1 || !strings.Contains(ps[0], "not installed") {
		t.Fatalf("Check before install = %v, %v", ps, err)
	}
	if err := Install(ctx, conn, s); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "ALTER TABLE public.t DISABLE TRIGGER "+TriggerInsert+"; DROP TRIGGER "+TriggerDelete+" ON public.t"); err != nil {
		t.Fatal(err)
	}
	// The sync now wants autokick: the trigger function is stale.
	s.Autokick = true
	ps, err = Check(ctx, conn, s)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(ps, "; ")
	for _, w := range []string{"gobucardo_capture_ins on public.t is not enabled", "gobucardo_capture_del on public.t is missing", "trigger function of public.t is stale"} {
		if !strings.Contains(joined, w) {
			t.Errorf("Check = %q, lacks %q", joined, w)
		}
	}
	if err := Install(ctx, conn, s); err != nil {
		t.Fatal(err)
	}
	if ps, err := Check(ctx, conn, s); err != nil || len(ps) != 0 {
		t.Errorf("Check after repair = %v, %v", ps, err)
	}
}

func TestRemoveSyncAndUninstall(t *testing.T) {
	_, _, conn := setup(t)
	ctx := context.Background()
	if err := Install(ctx, conn, Sync{Name: "a", Tables: []Table{plain, odd}}); err != nil {
		t.Fatal(err)
	}
	if err := Install(ctx, conn, Sync{Name: "b", Tables: []Table{plain}}); err != nil {
		t.Fatal(err)
	}
	if err := RemoveSync(ctx, conn, "a"); err != nil {
		t.Fatal(err)
	}
	// odd is read by no sync now: its capture is gone; plain is still read by b.
	var oddTriggers, plainTriggers int
	q := "SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname::text LIKE 'gobucardo%'"
	if err := conn.QueryRow(ctx, q, `"Odd Schema"."Mixed Case"`).Scan(&oddTriggers); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, q, "public.t").Scan(&plainTriggers); err != nil {
		t.Fatal(err)
	}
	if oddTriggers != 0 || plainTriggers != len(triggersOf(shape{})) {
		t.Errorf("triggers after RemoveSync: odd %d, plain %d", oddTriggers, plainTriggers)
	}
	if err := Uninstall(ctx, conn); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_trigger WHERE tgname::text LIKE 'gobucardo%')
		+ (SELECT count(*) FROM pg_namespace WHERE nspname = 'gobucardo')`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d objects left after Uninstall", left)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO public.t VALUES (1, 'after uninstall')"); err != nil {
		t.Errorf("table unusable after uninstall: %v", err)
	}
}

// Uninstall keeps a catalog living in the same schema.
func TestUninstallKeepsOtherObjects(t *testing.T) {
	_, _, conn := setup(t)
	ctx := context.Background()
	if err := Install(ctx, conn, Sync{Name: "a", Tables: []Table{plain}}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE gobucardo.db (name text)"); err != nil {
		t.Fatal(err)
	}
	if err := Uninstall(ctx, conn); err != nil {
		t.Fatal(err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('gobucardo.db') IS NOT NULL AND to_regclass('gobucardo.captured') IS NULL").Scan(&ok); err != nil || !ok {
		t.Errorf("catalog table dropped or capture left: %v %v", ok, err)
	}
}
