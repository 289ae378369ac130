package admin

import (
	"strings"
	"testing"
)

// partitionSchema is a partitioned table, a legacy inheritance tree and
// partitioned tables that cannot be replicated through their root.
const partitionSchema = `
CREATE TABLE public.orders (id int, m int, v text, PRIMARY KEY (id, m)) PARTITION BY RANGE (m);
CREATE TABLE public.orders_1 PARTITION OF public.orders FOR VALUES FROM (1) TO (7);
CREATE TABLE public.orders_2 PARTITION OF public.orders FOR VALUES FROM (7) TO (13) PARTITION BY HASH (id);
CREATE TABLE public.orders_2a PARTITION OF public.orders_2 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE public.orders_2b PARTITION OF public.orders_2 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE public.parent (id int PRIMARY KEY, v text);
CREATE TABLE public.child (CHECK (id > 100)) INHERITS (public.parent);
ALTER TABLE public.child ADD PRIMARY KEY (id);
CREATE TABLE public.leafkeys (id int NOT NULL, m int NOT NULL) PARTITION BY LIST (m);
CREATE TABLE public.leafkeys_1 PARTITION OF public.leafkeys (PRIMARY KEY (id)) FOR VALUES IN (1);
`

// TestPartitionedThroughMCP: add all tables takes the root of a
// partitioned table and never its partitions; a partition or a root
// without a key of its own is refused with what to do, changing nothing;
// the rows reach a target that is not partitioned; validate tells the
// operator about an attached partition and a parent whose inheritance
// child is not replicated, and what to run.
func TestPartitionedThroughMCP(t *testing.T) {
	f := newFixture(t, true)
	for _, db := range []string{"A", "B"} {
		f.c.Exec(t, f.db[db], partitionSchema)
	}
	// B's orders is a plain table.
	f.c.Exec(t, f.db["B"], "DROP TABLE public.orders; CREATE TABLE public.orders (id int, m int, v text, PRIMARY KEY (id, m))")
	f.addDBs()
	f.fail(1, []string{`table public.orders_2a of db "A" is a partition of public.orders: add public.orders instead`},
		"add", "table", "public.orders_2a", "db=A")
	f.fail(1, []string{"partitioned table public.leafkeys has no primary key or unique index of its own", "ALTER TABLE public.leafkeys ADD PRIMARY KEY"},
		"add", "table", "public.leafkeys", "db=A")
	out := f.ok("add", "all", "tables", "db=A", "relgroup=r", "-T", "nokey", "-T", "leafkeys", "-T", "child")
	if !strings.Contains(out, "public.orders") || strings.Contains(out, "orders_1") || strings.Contains(out, "orders_2") {
		t.Errorf("add all tables took partitions, or not the root:\n%s", out)
	}
	f.ok("add", "sync", "s", "relgroup=r", "dbs=A:source,B:target")
	f.c.Exec(t, f.db["A"], `INSERT INTO orders SELECT g, 1 + g % 12, 'v' FROM generate_series(1, 100) g;
		INSERT INTO orders_2b SELECT g, 9, 'leaf' FROM generate_series(1000, 1100) g WHERE satisfies_hash_partition('public.orders_2'::regclass, 2, 1, g);
		UPDATE orders SET m = 12 WHERE id <= 10`)
	f.ok("sync", "run", "s", "--quiet")
	orders := `SELECT coalesce(string_agg(format('%s/%s/%s', id, m, v), ';' ORDER BY id, m), '') FROM public.orders`
	if a, b := f.query(f.db["A"], orders), f.query(f.db["B"], orders); a != b || !strings.Contains(a, "/9/leaf") {
		t.Errorf("orders on B differs from A (%d and %d bytes)", len(a), len(b))
	}

	// The parent's child is not in the sync: validate says so.
	r := f.run("validate", "s")
	if r.code != 1 || !strings.Contains(r.out, "table public.parent has inheritance children (public.child) that sync s does not replicate") ||
		!strings.Contains(r.out, "mcp update sync s add table public.child") {
		t.Errorf("validate with a child left out: exit %d\n%s%s", r.code, r.out, r.err)
	}
	f.ok("add", "table", "public.child", "db=A")
	f.ok("update", "sync", "s", "add", "table", "public.child")
	if out := f.ok("validate", "s"); !strings.Contains(out, "OK") {
		t.Errorf("validate = %q", out)
	}

	// A filled table attached as a partition: no trigger saw its rows.
	f.c.Exec(t, f.db["A"], "CREATE TABLE public.orders_3 (id int NOT NULL, m int NOT NULL, v text)")
	f.c.Exec(t, f.db["A"], "INSERT INTO public.orders_3 VALUES (5000, 20, 'attached')")
	f.c.Exec(t, f.db["A"], "ALTER TABLE public.orders ATTACH PARTITION public.orders_3 FOR VALUES FROM (13) TO (25)")
	r = f.run("validate", "s")
	if r.code != 1 || !strings.Contains(r.out, "repaired on db A: partition public.orders_3 of public.orders has no truncate trigger") ||
		!strings.Contains(r.out, "partition public.orders_3 was attached to public.orders holding rows") ||
		!strings.Contains(r.out, "mcp update sync s onetimecopy=1, then mcp kick s") {
		t.Errorf("validate after ATTACH: exit %d\n%s%s", r.code, r.out, r.err)
	}
	f.ok("update", "sync", "s", "onetimecopy=1")
	f.ok("sync", "run", "s", "--quiet")
	if a, b := f.query(f.db["A"], orders), f.query(f.db["B"], orders); a != b || !strings.Contains(b, "5000/20/attached") {
		t.Errorf("orders on B after the onetimecopy differs from A (%d and %d bytes)", len(a), len(b))
	}
	if out := f.ok("validate", "s"); !strings.Contains(out, "OK") {
		t.Errorf("validate after the onetimecopy = %q", out)
	}
}
