package main

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// deltas counts the delta rows kept for public.table on a database.
func (d *daemon) deltas(db, table string) int {
	d.t.Helper()
	return d.count(db, pg.Ident("gobucardo", capture.DeltaName("public", table)))
}

// syncJSON is what mcp status SYNC --json says of one sync, as the tests
// read it.
type syncJSON struct {
	InStep     bool    `json:"in_step"`
	LagSeconds float64 `json:"lag_seconds"`
	Pending    int64   `json:"pending"`
	Rate       struct {
		Runs          int        `json:"runs"`
		RowsPerSecond float64    `json:"rows_per_second"`
		LastGood      *time.Time `json:"last_good"`
	} `json:"rate"`
	Backlog []struct {
		DB         string  `json:"db"`
		Pending    int64   `json:"pending"`
		Error      string  `json:"error"`
		LagSeconds float64 `json:"lag_seconds"`
		Tables     []struct {
			Table      string  `json:"table"`
			Pending    int64   `json:"pending"`
			LagSeconds float64 `json:"lag_seconds"`
		} `json:"tables"`
	} `json:"backlog"`
	Targets []struct {
		DB         string  `json:"db"`
		State      string  `json:"state"`
		LagSeconds float64 `json:"lag_seconds"`
	} `json:"targets"`
}

// status is mcp status SYNC --json.
func (d *daemon) status(sync string) syncJSON {
	d.t.Helper()
	var doc struct {
		Syncs []syncJSON `json:"syncs"`
	}
	if err := json.Unmarshal([]byte(d.run(0, "status", sync, "--json")), &doc); err != nil || len(doc.Syncs) != 1 {
		d.t.Fatalf("status %s --json: %v", sync, err)
	}
	return doc.Syncs[0]
}

// pending is what mcp status SYNC --json says the sync has not consumed on
// db.
func (d *daemon) pending(sync, db string) int64 {
	d.t.Helper()
	for _, b := range d.status(sync).Backlog {
		if b.DB == db {
			if b.Error != "" {
				d.t.Fatalf("status %s: backlog on %s unknown: %s", sync, db, b.Error)
			}
			return b.Pending
		}
	}
	d.t.Fatalf("status %s shows no backlog on %s", sync, db)
	return 0
}

// TestDaemonPurges: the MCP purges consumed deltas by itself; a sync that
// is paused, inactive or failing keeps the deltas it has not consumed (and
// status shows them) while another sync's on the same db are purged; once
// it runs again they are consumed and purged.
func TestDaemonPurges(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	src, dst := d.twoDBs(c, c, c)
	for _, db := range []string{src, dst} {
		c.Exec(t, db, "CREATE TABLE public.t2 (id int PRIMARY KEY, v text)")
	}
	d.run(0, "add", "table", "t2", "db=A", "relgroup=rg2")
	d.run(0, "add", "sync", "other", "relgroup=rg2", "dbs=A:source,B:target")
	d.start("--purge-interval", "1s")

	for i := 0; i < 10; i++ {
		c.Exec(t, src, "INSERT INTO public.t SELECT g, 'v' FROM generate_series($1::int * 100 + 1, $1::int * 100 + 100) g", i)
	}
	c.Exec(t, src, "UPDATE public.t SET v = 'w' WHERE id % 3 = 0")
	d.eventually(30*time.Second, "t replicated", func() bool { return digest(t, c, dst) == digest(t, c, src) })
	d.eventually(30*time.Second, "t's deltas purged without mcp purge", func() bool { return d.deltas(src, "t") == 0 })
	// The pass logs once its last batch has committed: a moment after the
	// deltas are gone.
	d.eventually(10*time.Second, "the purge in the MCP's log", func() bool {
		return strings.Contains(d.logText(), `"purged consumed deltas"`)
	})

	id := 10000
	scenarios := []struct {
		name          string
		hold, release func()
	}{
		{"paused",
			func() { d.run(0, "pause", "s") },
			func() { d.run(0, "resume", "s") }},
		{"inactive",
			func() {
				d.run(0, "deactivate", "s")
				d.eventually(15*time.Second, "no controller of s", func() bool { return d.pidOf("controller", "s") == 0 })
			},
			func() { d.run(0, "activate", "s") }},
		{"failing", // its runs fail: the target's table is gone
			func() { c.Exec(t, dst, "ALTER TABLE public.t RENAME TO t_away") },
			func() { c.Exec(t, dst, "ALTER TABLE public.t_away RENAME TO t") }},
	}
	for _, sc := range scenarios {
		sc.hold()
		c.Exec(t, src, "INSERT INTO public.t SELECT g, $2 FROM generate_series($1::int, $1::int + 249) g", id, sc.name)
		c.Exec(t, src, "INSERT INTO public.t2 VALUES ($1, $2)", id, sc.name)
		id += 1000
		// t2's deltas consumed and purged: a purge pass began after the
		// writes to t, and kept them.
		d.eventually(30*time.Second, sc.name+": t2's deltas purged", func() bool {
			return contents(t, c, dst, "public.t2") == contents(t, c, src, "public.t2") && d.deltas(src, "t2") == 0
		})
		if n := d.deltas(src, "t"); n != 250 {
			t.Errorf("%s: %d of t's deltas kept, want the 250 that s has not consumed", sc.name, n)
		}
		if n := d.pending("s", "A"); n != 250 {
			t.Errorf("%s: status s shows %d pending on A, want 250", sc.name, n)
		}
		if out := d.run(0, "status", "s"); !strings.Contains(out, "Pending on A:  250 changes, the oldest from") {
			t.Errorf("%s: status s printed %q", sc.name, out)
		}
		sc.release()
		d.eventually(60*time.Second, sc.name+": t replicated once released", func() bool {
			return digest(t, c, dst) == digest(t, c, src)
		})
		d.eventually(30*time.Second, sc.name+": t's deltas purged once consumed", func() bool { return d.deltas(src, "t") == 0 })
		if n := d.pending("s", "A"); n != 0 {
			t.Errorf("%s: status s shows %d pending once consumed", sc.name, n)
		}
	}
}

// TestDaemonKilledDuringPurge: the MCP is killed (SIGKILL) in the middle of
// purging a large delta table; after a restart nothing is lost: every
// change replicates, the databases converge, and the purge finishes.
func TestDaemonKilledDuringPurge(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	src, dst := d.twoDBs(c, c, c)
	d.start("--purge-interval", "0") // no purge: the consumed deltas pile up
	const rows = 100000
	c.Exec(t, src, "INSERT INTO public.t SELECT g, 'x' || g FROM generate_series(1, $1::int) g", rows)
	d.eventually(90*time.Second, "the big insert replicated", func() bool { return d.count(dst, "public.t") == rows })
	if n := d.deltas(src, "t"); n != rows {
		t.Fatalf("%d deltas kept with the purge off, want %d", n, rows)
	}
	d.stop()
	// Each purge batch (10000 rows) takes 0.2s more, so that the purge of
	// these rows lasts long enough to be caught under way.
	delta := pg.Ident("gobucardo", capture.DeltaName("public", "t"))
	c.Exec(t, src, `CREATE FUNCTION public.slow_purge() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN PERFORM pg_sleep(0.2); RETURN NULL; END $$;
		CREATE TRIGGER slow_purge BEFORE DELETE ON `+delta+` FOR EACH STATEMENT EXECUTE FUNCTION public.slow_purge()`)

	// Changes the next MCP must carry while it purges.
	c.Exec(t, src, "UPDATE public.t SET v = 'before the kill' WHERE id % 1000 = 0")
	d.start("--purge-interval", "1s")
	var left int
	d.eventually(60*time.Second, "the purge under way", func() bool {
		left = d.deltas(src, "t")
		return left > 0 && left < rows
	})
	if err := d.mcp.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.exit("SIGKILL") // killed: its exit status says so
	t.Logf("killed the MCP with %d of %d deltas left", left, rows+100)

	// More changes while no MCP runs.
	c.Exec(t, src, "UPDATE public.t SET v = 'after the kill' WHERE id % 1000 = 1")
	c.Exec(t, src, "DELETE FROM public.t WHERE id % 1000 = 2")
	c.Exec(t, src, "INSERT INTO public.t SELECT g, 'new' FROM generate_series($1::int + 1, $1::int + 500) g", rows)
	d.eventually(30*time.Second, "the killed MCP's sessions gone", func() bool {
		out, code := d.try("ping")
		return code == 2 && strings.Contains(out, "no MCP is running")
	})
	d.start("--purge-interval", "1s")
	d.eventually(90*time.Second, "source and target equal", func() bool { return digest(t, c, dst) == digest(t, c, src) })
	if got, want := contents(t, c, dst, "public.t"), contents(t, c, src, "public.t"); got != want {
		t.Error("target differs from the source")
	}
	d.eventually(60*time.Second, "every consumed delta purged", func() bool { return d.deltas(src, "t") == 0 })
	if n := d.pending("s", "A"); n != 0 {
		t.Errorf("status s shows %d pending at the end", n)
	}
}
