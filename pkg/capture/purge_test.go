package capture

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// advance sets sync's watermark to snap, as a run's commit does.
func advance(t *testing.T, conn *pgx.Conn, sync, snap string) {
	t.Helper()
	tag, err := conn.Exec(context.Background(), "UPDATE gobucardo.watermark SET snap = $2::pg_snapshot, updated = now() WHERE sync = $1", sync, snap)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("advance watermark of %s: %v (%d rows)", sync, err, tag.RowsAffected())
	}
}

func snapshot(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), "SELECT pg_current_snapshot()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func countRows(t *testing.T, conn *pgx.Conn, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestPurgeBatchesKeepsWhatLaggingSyncNeeds: two syncs read public.t, one
// of them also the odd table. Purge, in batches smaller than a transaction's
// deltas, deletes exactly what every reader has consumed: nothing of t while
// the second sync lags, the first sync's consumed rows of the odd table,
// then t's rows below both watermarks — never those of a transaction that
// was still open when the watermark's snapshot was taken.
func TestPurgeBatchesKeepsWhatLaggingSyncNeeds(t *testing.T) {
	c, db, conn := setup(t)
	ctx := context.Background()
	if err := Install(ctx, conn, Sync{Name: "fast", Tables: []Table{plain, odd}}); err != nil {
		t.Fatal(err)
	}
	if err := Install(ctx, conn, Sync{Name: "slow", Tables: []Table{plain}}); err != nil {
		t.Fatal(err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// Consumed by the time of snap1: one transaction bigger than several
	// batches, a one-row one, another big one; rows and a truncate of odd.
	exec("INSERT INTO public.t SELECT g, 'a' FROM generate_series(1, 1000) g")
	exec("INSERT INTO public.t VALUES (1001, 'b')")
	exec("UPDATE public.t SET v = 'c'") // 1001 keys again
	exec(`INSERT INTO "Odd Schema"."Mixed Case" SELECT g, 'k', 'v' FROM generate_series(1, 300) g`)
	exec(`TRUNCATE "Odd Schema"."Mixed Case"`)
	// A transaction open across snap1: not consumed by a run at snap1.
	open := c.Connect(t, db)
	tx, err := open.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO public.t VALUES (9999, 'open across the snapshot')"); err != nil {
		t.Fatal(err)
	}
	snap1 := snapshot(t, conn)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// Not consumed by anyone.
	exec("INSERT INTO public.t SELECT g, 'later' FROM generate_series(2001, 2700) g")
	exec(`INSERT INTO "Odd Schema"."Mixed Case" VALUES (7, 'later', 'v')`)

	deltaT := "SELECT count(*) FROM gobucardo." + `"` + DeltaName(plain.Schema, plain.Name) + `"`
	deltaOdd := "SELECT count(*) FROM gobucardo." + `"` + DeltaName(odd.Schema, odd.Name) + `"`
	truncates := "SELECT count(*) FROM gobucardo.truncate_log"
	if got := countRows(t, conn, deltaT); got != 1000+1+1001+1+700 {
		t.Fatalf("t has %d delta rows before any purge", got)
	}
	beforeT := deltas(t, conn, plain)

	// Only fast has consumed (up to snap1): t is kept whole, since slow
	// still needs it; odd loses what fast consumed (300 rows, the truncate).
	advance(t, conn, "fast", snap1)
	res, err := Purger{BatchSize: 100}.Purge(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deltas != 300 || res.Truncates != 1 || len(res.Busy) != 0 {
		t.Errorf("purge with slow behind = %+v, want 300 deltas and 1 truncate", res)
	}
	if res.Batches < 4 {
		t.Errorf("300 rows in batches of 100 took %d transactions", res.Batches)
	}
	if got := deltas(t, conn, plain); !slices.Equal(got, beforeT) {
		t.Errorf("t's deltas changed while slow had not consumed them: %d rows, had %d", len(got), len(beforeT))
	}
	if got := strings.Join(deltas(t, conn, odd), " "); got != "7,later" {
		t.Errorf("odd's deltas after purge = %q, want the later row only", got)
	}
	if got := countRows(t, conn, truncates); got != 0 {
		t.Errorf("%d truncate records left", got)
	}

	// slow has consumed up to snap1 too: exactly t's rows below it go, the
	// open transaction's and the later ones stay.
	advance(t, conn, "slow", snap1)
	res, err = Purger{BatchSize: 100}.Purge(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deltas != 2002 || res.Batches < 21 {
		t.Errorf("purge with both at snap1 = %+v, want 2002 deltas in at least 21 transactions", res)
	}
	want := []string{"9999"}
	for i := 2001; i <= 2700; i++ {
		want = append(want, fmt.Sprint(i))
	}
	got := deltas(t, conn, plain)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("t's deltas after purge: %d rows %v..., want the open transaction's and the 700 later ones", len(got), got[:min(5, len(got))])
	}
	// Nothing more is consumed: a second purge deletes nothing.
	if n, err := Purge(ctx, conn); err != nil || n != 0 {
		t.Errorf("second purge deleted %d, %v", n, err)
	}

	// The backlog of slow: the 701 rows it has not consumed, oldest first;
	// cut at a limit.
	read := func(sync string, limit int64) catalog.SourceLag {
		t.Helper()
		b, err := ReadSourceLag(ctx, conn, "A", sync, limit)
		if err != nil {
			t.Fatalf("ReadSourceLag(%s, %d): %v", sync, limit, err)
		}
		return b
	}
	b := read("slow", 100000)
	if b.DB != "A" || b.Pending != 701 || b.Capped || b.Oldest == nil || b.Consumed == nil || time.Since(*b.Consumed) > time.Minute ||
		b.ReadAt.Before(*b.Oldest) || len(b.Tables) != 1 || b.Tables[0].Table != "t" || b.Tables[0].Pending != 701 || !b.Tables[0].Oldest.Equal(*b.Oldest) {
		t.Errorf("backlog of slow = %+v, want 701 pending on t, not capped", b)
	}
	if b = read("slow", 701); b.Pending != 701 || b.Capped {
		t.Errorf("backlog of slow with limit 701 = %+v", b)
	}
	if b = read("slow", 50); b.Pending != 50 || !b.Capped || !b.Tables[0].Capped {
		t.Errorf("backlog of slow with limit 50 = %+v", b)
	}
	b = read("fast", 100000)
	pending := map[string]int64{}
	for _, tl := range b.Tables {
		pending[tl.Table] = tl.Pending
	}
	if b.Pending != 702 || pending["t"] != 701 || pending["Mixed Case"] != 1 {
		t.Errorf("backlog of fast = %+v; want 701 of t and 1 of odd", b)
	}
	// Over the limit, every table is still probed for its oldest change.
	if b = read("fast", 10); !b.Capped || len(b.Tables) != 2 || b.Pending > 10+2 {
		t.Errorf("backlog of fast with limit 10 = %+v; want both tables, capped", b)
	}
	if _, err := ReadSourceLag(ctx, conn, "A", "nope", 100000); !errors.Is(err, ErrNoWatermark) || !strings.Contains(err.Error(), "sync nope has no capture on db A: mcp validate nope installs it") {
		t.Errorf("backlog of an unknown sync: %v", err)
	}
	if countRows(t, conn, deltaOdd) != 1 {
		t.Error("odd lost its pending row")
	}
}

// TestPurgeGivesUpOnLocks: a delta table locked by another session is
// skipped after the lock timeout, not waited for, and the others are
// purged.
func TestPurgeGivesUpOnLocks(t *testing.T) {
	c, db, conn := setup(t)
	ctx := context.Background()
	if err := Install(ctx, conn, Sync{Name: "s", Tables: []Table{plain, odd}}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO public.t VALUES (1, 'x'); INSERT INTO "Odd Schema"."Mixed Case" VALUES (1, 'k', 'v')`); err != nil {
		t.Fatal(err)
	}
	advance(t, conn, "s", snapshot(t, conn))
	locker := c.Connect(t, db)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "LOCK TABLE gobucardo."+`"`+DeltaName(plain.Schema, plain.Name)+`"`+" IN SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := Purger{LockTimeout: 50 * time.Millisecond}.Purge(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("purge waited %s for the lock", took)
	}
	if res.Deltas != 1 || !slices.Equal(res.Busy, []string{"public.t"}) {
		t.Errorf("purge with t locked = %+v, want odd's row purged and t busy", res)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err = (Purger{}).Purge(ctx, conn); err != nil || res.Deltas != 1 || len(res.Busy) != 0 {
		t.Errorf("purge once unlocked = %+v, %v", res, err)
	}
}
