package replicate

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/pg"
)

// eventsPartitioned is a partitioned table of every kind: RANGE on m at the
// top, a LIST sub-partition with a default, a HASH sub-partition, and a
// default partition, with odd names.
const eventsPartitioned = `
CREATE TABLE public.events (id int, m int, v text, PRIMARY KEY (id, m)) PARTITION BY RANGE (m);
CREATE TABLE public."events 0" PARTITION OF public.events FOR VALUES FROM (0) TO (10);
CREATE TABLE public.events_1 PARTITION OF public.events FOR VALUES FROM (10) TO (20) PARTITION BY LIST (m);
CREATE TABLE public.events_1a PARTITION OF public.events_1 FOR VALUES IN (10, 11, 12);
CREATE TABLE public.events_1rest PARTITION OF public.events_1 DEFAULT;
CREATE TABLE public.events_2 PARTITION OF public.events FOR VALUES FROM (20) TO (30) PARTITION BY HASH (id);
CREATE TABLE public.events_2h0 PARTITION OF public.events_2 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE public.events_2h1 PARTITION OF public.events_2 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE public.events_default PARTITION OF public.events DEFAULT;
`

// eventsOther is the same table partitioned another way (by HASH on id).
const eventsOther = `
CREATE TABLE public.events (id int, m int, v text, PRIMARY KEY (id, m)) PARTITION BY HASH (id);
CREATE TABLE public.events_x0 PARTITION OF public.events FOR VALUES WITH (MODULUS 3, REMAINDER 0);
CREATE TABLE public.events_x1 PARTITION OF public.events FOR VALUES WITH (MODULUS 3, REMAINDER 1);
CREATE TABLE public.events_x2 PARTITION OF public.events FOR VALUES WITH (MODULUS 3, REMAINDER 2);
`

// eventsPlain is the same table not partitioned at all.
const eventsPlain = `CREATE TABLE public.events (id int, m int, v text, PRIMARY KEY (id, m));`

// inheritSchema is a legacy inheritance tree.
const inheritSchema = `
CREATE TABLE public.parent (id int PRIMARY KEY, v text);
CREATE TABLE public.child (CHECK (id > 1000)) INHERITS (public.parent);
ALTER TABLE public.child ADD PRIMARY KEY (id);
`

var (
	events = Relation{Schema: "public", Name: "events", KeyColumns: []string{"id", "m"}}
	parent = Relation{Schema: "public", Name: "parent", KeyColumns: []string{"id"}}
	child  = Relation{Schema: "public", Name: "child", KeyColumns: []string{"id"}}
)

// newPartitionEnv: A the partitioned source; B a target partitioned
// another way; C a plain target; F a plain fullcopy target.
func newPartitionEnv(t *testing.T, roles []string) *env {
	t.Helper()
	e := newEnv(t, eventsPartitioned+inheritSchema, roles, []Relation{events, parent, child})
	for _, d := range e.sync.DBs {
		switch d.Name {
		case "B":
			e.exec("B", "DROP TABLE public.events; "+eventsOther)
		case "C", "F":
			e.exec(d.Name, "DROP TABLE public.events; "+eventsPlain)
		}
	}
	e.install() // again, on the tables as they are now
	return e
}

// TestPartitionedTable: a partitioned table is replicated through its
// root to targets partitioned differently or not at all, whichever way
// the application names it (root, sub-partition, leaf); partition-moving
// updates, partitions created after the sync, a partition truncated alone
// and the whole table truncated all arrive. Legacy inheritance children
// are tables of their own.
func TestPartitionedTable(t *testing.T) {
	e := newPartitionEnv(t, []string{"A:source", "B:target", "C:target", "F:fullcopy"})
	e.exec("A", `INSERT INTO events SELECT g, g % 40, 'v' || g FROM generate_series(1, 400) g`)
	e.exec("A", `INSERT INTO parent VALUES (1, 'p'); INSERT INTO child VALUES (1001, 'c'), (1002, 'c')`)
	res := e.run()
	if res.Inserts < 3*400 {
		t.Fatalf("first run inserted %d rows, want the 400 events on each of 3 dbs: %+v", res.Inserts, res)
	}
	e.assertSame()

	steps := []string{
		`UPDATE events SET m = m + 10 WHERE id % 7 = 0`,  // rows move between partitions (and into the default)
		`UPDATE events_1 SET v = 'sub' WHERE id % 5 = 0`, // through a sub-partition
		`DELETE FROM "events 0" WHERE id % 3 = 0`,        // through a leaf
		`INSERT INTO events_2h1 SELECT id, 25, 'leaf' FROM (SELECT g AS id FROM generate_series(500, 540) g) x
			WHERE satisfies_hash_partition('public.events_2'::regclass, 2, 1, id)`, // straight into a hash leaf
		`UPDATE events SET id = id + 10000 WHERE id % 11 = 0`, // key changes
		`UPDATE parent SET v = 'all'`,                         // the parent's row and the child's
		`DELETE FROM parent WHERE id = 1002`,                  // a child's row through the parent
	}
	for _, s := range steps {
		e.exec("A", s)
	}
	e.run()
	e.assertSame()

	// A partition created after the sync was added, written to directly,
	// before any refresh of the capture.
	e.exec("A", `CREATE TABLE public.events_3 PARTITION OF public.events FOR VALUES FROM (50) TO (60) PARTITION BY RANGE (m)`)
	e.exec("A", `CREATE TABLE public.events_3a PARTITION OF public.events_3 FOR VALUES FROM (50) TO (60)`)
	e.exec("A", `INSERT INTO events_3a VALUES (900, 53, 'new partition')`)
	e.exec("A", `UPDATE events SET m = 55 WHERE id = 1`) // moved into it
	e.run()
	e.assertSame()

	// A partition truncated alone; then, in one transaction, rows written
	// and the whole table truncated and written again.
	e.exec("A", `TRUNCATE events_1`)
	res = e.run()
	if res.Truncates != 0 || res.Deletes == 0 {
		t.Errorf("a partition truncated alone: %+v, want its rows deleted by key", res)
	}
	e.assertSame()
	e.exec("A", `INSERT INTO events VALUES (7000, 1, 'x'); TRUNCATE events; INSERT INTO events VALUES (7001, 2, 'after')`)
	if res := e.run(); res.Truncates != 1 {
		t.Errorf("the whole table truncated: %+v", res)
	}
	e.assertSame()
	for _, tr := range e.run().Tables { // F is copied again, which is no change
		if tr.Keys > 0 {
			t.Errorf("a quiet run found changed keys: %+v", tr)
		}
	}
}

// TestPartitionedRandomized: one partitioned source, and then two sources
// partitioned differently with a plain target, under random inserts,
// updates that move rows between partitions, key changes, deletes through
// the root and the leaves, and truncates of a partition or of the table;
// runs during the writes; in the end every db holds the same rows.
func TestPartitionedRandomized(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("GOBUCARDO_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (GOBUCARDO_SEED=%d reproduces)", seed, seed)
	for _, roles := range [][]string{
		{"A:source", "B:target", "C:target"},
		{"A:source", "B:source", "C:target"},
	} {
		t.Run(fmt.Sprint(roles), func(t *testing.T) {
			e := newPartitionEnv(t, roles)
			var writers []string
			for _, d := range e.sync.DBs {
				if d.Role == RoleSource {
					writers = append(writers, d.Name)
				}
			}
			stop := startPartitionWriters(t, e, writers, seed, len(writers) == 1)
			// The writers truncate often: a run that cannot take its
			// locks fails and the controller would retry it; here the
			// next one does.
			for i, failed := 0, 0; i < 10; i++ {
				_, err := RunRetrying(context.Background(), e.sync, Options{}, 3)
				if err != nil && (!pg.IsRetryable(err) || failed > 5) {
					t.Fatalf("run %d during writes: %v", i, err)
				}
				if err != nil {
					failed++
					t.Logf("run %d during writes: %v", i, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			stop()
			e.run()
			e.assertSame()
			if res := e.run(); res.Inserts+res.Deletes != 0 {
				t.Errorf("a quiet run changed rows: %+v", res)
			}
		})
	}
}

// startPartitionWriters writes random changes to events (and the
// inheritance tree) on each of dbs until stop is called. truncates allows
// TRUNCATE of the whole table (with several sources the last truncate
// wins, which the final contents of every db follow just as well, but a
// single writer exercises it more clearly).
func startPartitionWriters(t *testing.T, e *env, dbs []string, seed int64, truncates bool) (stop func()) {
	t.Helper()
	return startWriterLoops(t, e, dbs, seed, func(db string, rnd *rand.Rand, j int) string {
		// Only A has eventsPartitioned's partitions; elsewhere the root.
		leaf0, leaf1, leaf2 := `"events 0"`, "events_1", "events_2"
		if db != "A" {
			leaf0, leaf1, leaf2 = "events", "events", "events"
		}
		id, m := rnd.Intn(80), rnd.Intn(45)
		switch r := rnd.Intn(100); {
		case r < 30:
			return fmt.Sprintf("INSERT INTO events VALUES (%d, %d, '%s%d') ON CONFLICT (id, m) DO UPDATE SET v = excluded.v", id, m, db, j)
		case r < 45: // moves the row to another partition: a key change
			return fmt.Sprintf("UPDATE events SET m = %d WHERE id = %d AND NOT EXISTS (SELECT 1 FROM events WHERE id = %d AND m = %d)", m, id, id, m)
		case r < 55:
			return fmt.Sprintf("UPDATE events SET v = v || '+' WHERE id %% 9 = %d", id%9)
		case r < 62:
			return fmt.Sprintf(`UPDATE %s SET v = 'leaf %s' WHERE id = %d`, leaf0, db, id)
		case r < 70:
			return fmt.Sprintf("DELETE FROM events WHERE id = %d", id)
		case r < 75:
			return fmt.Sprintf("DELETE FROM %s WHERE id %% 13 = %d", leaf1, id%13)
		case r < 80:
			return fmt.Sprintf("UPDATE events SET id = %d WHERE id = %d AND NOT EXISTS (SELECT 1 FROM events WHERE id = %d)", id+100, id, id+100)
		case r < 82:
			return "TRUNCATE " + leaf2
		case r < 83 && truncates:
			return "TRUNCATE events"
		case r < 91:
			return fmt.Sprintf("INSERT INTO child VALUES (%d, '%s') ON CONFLICT (id) DO UPDATE SET v = excluded.v", 1001+id, db)
		case r < 96:
			return fmt.Sprintf("UPDATE parent SET v = '%s%d' WHERE id %% 5 = %d", db, j, id%5)
		default:
			return fmt.Sprintf("DELETE FROM parent WHERE id = %d", 1001+id)
		}
	})
}
