package capture

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// partitionedDDL is a partitioned table of every kind: RANGE at the top,
// a LIST sub-partition with a default, a HASH sub-partition, odd names.
const partitionedDDL = `CREATE SCHEMA "Sales Dept";
	CREATE TABLE "Sales Dept"."Orders" (id int, m int, v text, PRIMARY KEY (id, m)) PARTITION BY RANGE (m);
	CREATE TABLE "Sales Dept"."Orders q1" PARTITION OF "Sales Dept"."Orders" FOR VALUES FROM (1) TO (4);
	CREATE TABLE "Sales Dept"."Orders q2" PARTITION OF "Sales Dept"."Orders" FOR VALUES FROM (4) TO (7) PARTITION BY LIST (m);
	CREATE TABLE "Sales Dept"."Orders m4" PARTITION OF "Sales Dept"."Orders q2" FOR VALUES IN (4);
	CREATE TABLE "Sales Dept"."Orders q2 rest" PARTITION OF "Sales Dept"."Orders q2" DEFAULT;
	CREATE TABLE "Sales Dept"."Orders h" PARTITION OF "Sales Dept"."Orders" FOR VALUES FROM (7) TO (13) PARTITION BY HASH (id);
	CREATE TABLE "Sales Dept"."Orders h0" PARTITION OF "Sales Dept"."Orders h" FOR VALUES WITH (MODULUS 2, REMAINDER 0);
	CREATE TABLE "Sales Dept"."Orders h1" PARTITION OF "Sales Dept"."Orders h" FOR VALUES WITH (MODULUS 2, REMAINDER 1);`

var orders = Table{Schema: "Sales Dept", Name: "Orders", KeyColumns: []string{"id", "m"}, KeyTypes: []string{"integer", "integer"}}

// TestCapturePartitioned: every change to a partitioned table is captured,
// however the statement names it (the root, a sub-partition, a leaf),
// in partitions created or attached later too; a partition-moving UPDATE
// records the old and the new key; a partition truncated alone records
// its keys; ATTACH and DETACH are noted.
func TestCapturePartitioned(t *testing.T) {
	c, db, conn := setup(t)
	ctx := context.Background()
	c.Exec(t, db, partitionedDDL)
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	check := func(want ...string) {
		t.Helper()
		ps, err := Check(ctx, conn, Sync{Name: "s1", Autokick: true, Tables: []Table{orders}})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(ps, "\n") != strings.Join(want, "\n") {
			t.Errorf("Check =\n%s\nwant\n%s", strings.Join(ps, "\n"), strings.Join(want, "\n"))
		}
	}
	forget := func() { exec(`DELETE FROM gobucardo."` + DeltaName(orders.Schema, orders.Name) + `"`) }
	exec(`INSERT INTO "Sales Dept"."Orders" VALUES (1, 1, 'before')`) // before capture: not recorded
	s := Sync{Name: "s1", Autokick: true, Tables: []Table{orders}}
	if err := Install(ctx, conn, s); err != nil {
		t.Fatal(err)
	}
	check()

	exec(`INSERT INTO "Sales Dept"."Orders" VALUES (2, 2, 'a'), (3, 4, 'b'), (4, 5, 'c'), (5, 8, 'd')`) // through the root
	exec(`INSERT INTO "Sales Dept"."Orders q2" VALUES (6, 6, 'e')`)                                     // a sub-partition
	exec(`INSERT INTO "Sales Dept"."Orders h1" VALUES (7, 9, 'f')`)                                     // a leaf (7 hashes to h1 or fails)
	if got := strings.Join(deltas(t, conn, orders), " "); got != "2,2 3,4 4,5 5,8 6,6 7,9" {
		t.Errorf("inserts captured %q", got)
	}
	forget()
	exec(`UPDATE "Sales Dept"."Orders" SET m = 10 WHERE id = 2`)     // moves q1 -> h
	exec(`UPDATE "Sales Dept"."Orders q2" SET v = 'x' WHERE id = 3`) // stays
	exec(`DELETE FROM "Sales Dept"."Orders m4"`)                     // row 3, by the leaf
	exec(`UPDATE "Sales Dept"."Orders" SET v = v WHERE false`)       // nothing
	if got := strings.Join(deltas(t, conn, orders), " "); got != "2,10 2,2 3,4 3,4" {
		t.Errorf("updates and deletes captured %q, want the moved row's old and new key", got)
	}
	forget()

	// A partition created after the sync was added is captured at once
	// (its row trigger is cloned); its truncate trigger comes with the next
	// refresh, which Check asks for.
	exec(`CREATE TABLE "Sales Dept"."Orders q5" PARTITION OF "Sales Dept"."Orders" FOR VALUES FROM (13) TO (16)`)
	exec(`INSERT INTO "Sales Dept"."Orders q5" VALUES (8, 14, 'new')`)
	if got := strings.Join(deltas(t, conn, orders), " "); got != "8,14" {
		t.Errorf("insert into a new partition captured %q", got)
	}
	forget()
	check(`partition "Sales Dept"."Orders q5" of "Sales Dept"."Orders" has no truncate trigger (created or attached since capture last looked)`)
	done, err := RefreshPartitions(ctx, conn)
	if err != nil || len(done) != 1 {
		t.Fatalf("RefreshPartitions = %q, %v", done, err)
	}
	check()
	if done, err := RefreshPartitions(ctx, conn); err != nil || len(done) != 0 {
		t.Fatalf("second RefreshPartitions = %q, %v", done, err)
	}
	if notes, err := PartitionNotes(ctx, conn, s); err != nil || len(notes) != 0 {
		t.Errorf("a partition created (not attached) is noted: %v, %v", notes, err)
	}

	// A partition truncated alone: its keys. The whole table: one truncate.
	exec(`TRUNCATE "Sales Dept"."Orders h"`)
	if got := strings.Join(deltas(t, conn, orders), " "); got != "2,10 5,8 7,9" && got != "5,8 2,10 7,9" && got != "7,9 2,10 5,8" {
		// the order among partitions is the server's
		if ks := strings.Fields(got); len(ks) != 3 {
			t.Errorf("TRUNCATE of a sub-partition captured %q, want its 3 keys", got)
		}
	}
	forget()
	exec(`TRUNCATE "Sales Dept"."Orders"`)
	var truncates int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM gobucardo.truncate_log WHERE rel_name = 'Orders'`).Scan(&truncates); err != nil || truncates != 1 {
		t.Errorf("truncate_log rows = %d, %v", truncates, err)
	}
	if got := deltas(t, conn, orders); len(got) != 0 {
		t.Errorf("TRUNCATE of the whole table also recorded keys %q", got)
	}

	// ATTACH of a filled table and DETACH change the rows with no trigger:
	// noted for the operator.
	exec(`CREATE TABLE "Sales Dept".old (id int NOT NULL, m int NOT NULL, v text, PRIMARY KEY (id, m))`)
	exec(`INSERT INTO "Sales Dept".old VALUES (9, 20, 'old')`)
	exec(`ALTER TABLE "Sales Dept"."Orders" ATTACH PARTITION "Sales Dept".old FOR VALUES FROM (16) TO (30)`)
	exec(`ALTER TABLE "Sales Dept"."Orders" DETACH PARTITION "Sales Dept"."Orders q1"`)
	if got := deltas(t, conn, orders); len(got) != 0 {
		t.Errorf("ATTACH/DETACH recorded %q", got)
	}
	if _, err := RefreshPartitions(ctx, conn); err != nil {
		t.Fatal(err)
	}
	notes, err := PartitionNotes(ctx, conn, s)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range notes {
		got = append(got, n.Change+" "+n.Partition)
	}
	if strings.Join(got, ", ") != `attached "Sales Dept".old, detached "Sales Dept"."Orders q1"` &&
		strings.Join(got, ", ") != `detached "Sales Dept"."Orders q1", attached "Sales Dept".old` {
		t.Errorf("notes = %q", got)
	}
	if p := notes[0].Problem("A", "s1"); !strings.Contains(p, "mcp update sync s1 onetimecopy=1") {
		t.Errorf("note's problem %q says nothing to run", p)
	}
	var detachedTriggers int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgrelid = '"Sales Dept"."Orders q1"'::regclass`).Scan(&detachedTriggers); err != nil || detachedTriggers != 0 {
		t.Errorf("the detached partition keeps %d triggers (%v)", detachedTriggers, err)
	}
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return ClearPartitionNotes(ctx, tx, orders.Schema, orders.Name) }); err != nil {
		t.Fatal(err)
	}
	if notes, _ := PartitionNotes(ctx, conn, s); len(notes) != 0 {
		t.Errorf("notes after ClearPartitionNotes: %v", notes)
	}

	// A partition captured on its own is refused, naming the root.
	leaf := Table{Schema: "Sales Dept", Name: "Orders h0", KeyColumns: []string{"id", "m"}, KeyTypes: []string{"integer", "integer"}}
	err = Install(ctx, conn, Sync{Name: "s2", Tables: []Table{leaf}})
	if err == nil || !strings.Contains(err.Error(), `is a partition of "Sales Dept"."Orders"`) {
		t.Errorf("Install of a partition: %v", err)
	}

	if err := Uninstall(ctx, conn); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgname::text LIKE 'gobucardo%'`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d triggers left after Uninstall (%v)", left, err)
	}
}

// TestCaptureInheritance: legacy inheritance children are tables of their
// own; a statement on the parent that changes a child's rows is captured
// as the child's change.
func TestCaptureInheritance(t *testing.T) {
	c, db, conn := setup(t)
	ctx := context.Background()
	c.Exec(t, db, `CREATE TABLE parent (id int PRIMARY KEY, v text);
		CREATE TABLE child (CHECK (id > 100)) INHERITS (parent);
		ALTER TABLE child ADD PRIMARY KEY (id)`)
	parent := Table{Schema: "public", Name: "parent", KeyColumns: []string{"id"}, KeyTypes: []string{"integer"}}
	child := Table{Schema: "public", Name: "child", KeyColumns: []string{"id"}, KeyTypes: []string{"integer"}}
	s := Sync{Name: "s1", Tables: []Table{parent, child}}
	if err := Install(ctx, conn, s); err != nil {
		t.Fatal(err)
	}
	if ps, err := Check(ctx, conn, s); err != nil || len(ps) != 0 {
		t.Fatalf("Check = %v, %v", ps, err)
	}
	for _, sql := range []string{
		"INSERT INTO parent VALUES (1, 'p')", "INSERT INTO child VALUES (101, 'c'), (102, 'c')",
		"UPDATE parent SET v = 'all'", // the parent's row and the child's
		"DELETE FROM parent WHERE id = 102",
		"UPDATE parent SET id = 103 WHERE id = 101", // a child's key change through the parent
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if got := strings.Join(deltas(t, conn, parent), " "); got != "1 1" {
		t.Errorf("parent's deltas %q", got)
	}
	if got := strings.Join(deltas(t, conn, child), " "); got != "101 102 101 102 102 101 103" {
		t.Errorf("child's deltas %q", got)
	}
}

// TestAutokickRowLevel: a table captured row by row kicks once per
// transaction (not once per row) and table, and again once armed.
func TestAutokickRowLevel(t *testing.T) {
	c, db, conn := setup(t)
	ctx := context.Background()
	c.Exec(t, db, partitionedDDL)
	if err := Install(ctx, conn, Sync{Name: "s1", Autokick: true, Tables: []Table{orders}}); err != nil {
		t.Fatal(err)
	}
	if err := Install(ctx, conn, Sync{Name: "s2", Autokick: true, Tables: []Table{plain}}); err != nil {
		t.Fatal(err)
	}
	listener := listen(t, c, db)
	var calls int64
	count := func() int64 {
		var n int64
		if err := conn.QueryRow(ctx, "SELECT last_value FROM gobucardo.activity").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()
	// One transaction, many rows of the row-level table, then a row of another table.
	if _, err := conn.Exec(ctx, `INSERT INTO "Sales Dept"."Orders" SELECT g, 1 + g % 12, 'x' FROM generate_series(1, 200) g;
		INSERT INTO public.t VALUES (1, 'x')`); err != nil {
		t.Fatal(err)
	}
	calls = count() - before
	if got := notified(listener); got != "s1,s2" {
		t.Errorf("notifications = %q, want one for each table's sync", got)
	}
	if calls > 2 {
		t.Errorf("the 200-row transaction bumped the activity sequence %d times, want once per table", calls)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO "Sales Dept"."Orders" VALUES (500, 2, 'disarmed')`); err != nil {
		t.Fatal(err)
	}
	if got := notified(listener); got != "" {
		t.Errorf("a second transaction notified %q before the mark was armed again", got)
	}
	if _, err := Arm(ctx, conn, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE "Sales Dept"."Orders" SET v = 'armed' WHERE id = 500`); err != nil {
		t.Fatal(err)
	}
	if got := notified(listener); got != "s1" {
		t.Errorf("after arming, notifications = %q, want s1", got)
	}
}
