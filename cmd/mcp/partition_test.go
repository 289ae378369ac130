package main

import (
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// TestDaemonPartitioned: the daemon replicates a partitioned table to a
// plain one: writes through the root and the leaves, rows moving between
// partitions, a partition created while it runs and written to at once;
// its purge pass gives the new partition its truncate trigger, so that a
// TRUNCATE of that partition alone is replicated; a filled table attached
// as a partition shows in mcp status with what to run, and the copy it
// says to make clears it.
func TestDaemonPartitioned(t *testing.T) {
	c := pgtest.Shared(t)
	d := newDaemon(t, c)
	src, dst := c.NewDB(t), c.NewDB(t)
	c.Exec(t, src, `CREATE TABLE public.ev (id int, m int, v text, PRIMARY KEY (id, m)) PARTITION BY RANGE (m);
		CREATE TABLE public.ev_1 PARTITION OF public.ev FOR VALUES FROM (0) TO (10);
		CREATE TABLE public.ev_2 PARTITION OF public.ev FOR VALUES FROM (10) TO (20) PARTITION BY HASH (id);
		CREATE TABLE public.ev_2a PARTITION OF public.ev_2 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
		CREATE TABLE public.ev_2b PARTITION OF public.ev_2 FOR VALUES WITH (MODULUS 2, REMAINDER 1);`)
	c.Exec(t, dst, `CREATE TABLE public.ev (id int, m int, v text, PRIMARY KEY (id, m))`)
	d.run(0, "add", "db", "A", "dsn="+c.DSN(src))
	d.run(0, "add", "db", "B", "dsn="+c.DSN(dst))
	d.run(0, "add", "all", "tables", "db=A", "relgroup=rg")
	d.run(0, "add", "sync", "s", "relgroup=rg", "dbs=A:source,B:target")
	d.start("--purge-interval", "1s")
	same := func(what string) {
		t.Helper()
		d.eventually(30*time.Second, what, func() bool { return contents(t, c, dst, "public.ev") == contents(t, c, src, "public.ev") })
	}

	c.Exec(t, src, "INSERT INTO public.ev SELECT g, g % 20, 'v' FROM generate_series(1, 300) g")
	c.Exec(t, src, "UPDATE public.ev SET m = m + 10 WHERE m < 10 AND id % 4 = 0") // moves into ev_2
	c.Exec(t, src, "DELETE FROM public.ev_2b WHERE id % 3 = 0")
	c.Exec(t, src, "UPDATE public.ev_1 SET v = 'leaf'")
	same("the partitioned table replicated to the plain one")

	c.Exec(t, src, "CREATE TABLE public.ev_3 PARTITION OF public.ev FOR VALUES FROM (20) TO (30)")
	c.Exec(t, src, "INSERT INTO public.ev_3 SELECT g, 25, 'new partition' FROM generate_series(1000, 1049) g")
	same("rows written straight into a partition created after the sync")
	d.eventually(30*time.Second, "the purge pass gave ev_3 its truncate trigger", func() bool {
		return strings.Contains(d.logText(), "added the truncate trigger to partition public.ev_3 of public.ev")
	})
	c.Exec(t, src, "TRUNCATE public.ev_3")
	same("a TRUNCATE of the new partition alone")
	if n := d.count(dst, "public.ev"); n != d.count(src, "public.ev") || n == 0 {
		t.Errorf("after the TRUNCATE of ev_3: %d rows on B", n)
	}

	c.Exec(t, src, "CREATE TABLE public.ev_old (id int NOT NULL, m int NOT NULL, v text)")
	c.Exec(t, src, "INSERT INTO public.ev_old SELECT g, 35, 'attached' FROM generate_series(5000, 5009) g")
	c.Exec(t, src, "ALTER TABLE public.ev ATTACH PARTITION public.ev_old FOR VALUES FROM (30) TO (40)")
	d.eventually(30*time.Second, "mcp status s tells of the attached partition", func() bool {
		out := d.run(0, "status", "s")
		return strings.Contains(out, "partition public.ev_old was attached to public.ev holding rows") &&
			strings.Contains(out, "mcp update sync s onetimecopy=1, then mcp kick s")
	})
	if n := d.count(dst, "public.ev WHERE v = 'attached'"); n != 0 {
		t.Errorf("the attached rows reached B without a copy: %d", n)
	}
	d.run(0, "update", "sync", "s", "onetimecopy=1")
	d.run(0, "kick", "s", "--timeout", "60s")
	same("the copy the status asked for")
	if out := d.run(0, "status", "s"); strings.Contains(out, "Partitions") {
		t.Errorf("the note stays after the copy:\n%s", out)
	}
}
