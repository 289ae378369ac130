package capture

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/pg"
)

// TriggerRow captures, row by row, a table whose rows statement triggers
// would not all see: a partitioned table (PostgreSQL clones the trigger
// into every partition, those created or attached later included, and
// drops it from a partition that is detached) and a table in a legacy
// inheritance tree (a statement on the parent changes the children's rows
// without firing their statement triggers).
const TriggerRow = "gobucardo_capture_row"

// TriggerPartitionTruncate, on every partition of a captured partitioned
// table, records the keys of the rows a TRUNCATE of that partition alone
// removes. Statement triggers are not cloned into new partitions, so
// RefreshPartitions adds it to each new one.
const TriggerPartitionTruncate = "gobucardo_capture_part_trunc"

// shape is how a table is built on one database, which decides how it is
// captured there.
type shape struct {
	exists      bool
	partitioned bool   // a partitioned table: its rows live in its partitions
	inherits    bool   // in a legacy inheritance tree (parent or child)
	partitionOf string // the root of the tree, when the table is a partition
	leaves      []leaf // a partitioned table's partitions with storage
}

// leaf is a partition that holds rows.
type leaf struct{ schema, name string }

func (l leaf) ident() string   { return pg.Ident(l.schema, l.name) }
func (l leaf) display() string { return pg.Display(l.schema, l.name) }

// rowLevel: the table is captured by TriggerRow rather than by statement
// triggers.
func (s shape) rowLevel() bool { return s.partitioned || s.inherits }

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// shapeOf reads t's shape on the database behind q.
func shapeOf(ctx context.Context, q querier, t Table) (shape, error) {
	var s shape
	var rootSchema, rootName *string
	err := q.QueryRow(ctx, `SELECT c.relkind = 'p',
			c.relkind = 'r' AND NOT c.relispartition AND (c.relhassubclass OR EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)),
			rn.nspname::text, r.relname::text
		FROM pg_class c
		LEFT JOIN pg_class r ON c.relispartition AND r.oid = pg_partition_root(c.oid)
		LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
		WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')`, pg.Ident(t.Schema, t.Name)).
		Scan(&s.partitioned, &s.inherits, &rootSchema, &rootName)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("look up %s: %w", t.Display(), err)
	}
	s.exists = true
	if rootName != nil {
		s.partitionOf = pg.Display(*rootSchema, *rootName)
	}
	if s.partitioned {
		if s.leaves, err = leavesOf(ctx, q, t); err != nil {
			return s, err
		}
	}
	return s, nil
}

// leavesOf lists the partitions of t that hold rows (foreign partitions
// cannot have TRUNCATE triggers and are left out).
func leavesOf(ctx context.Context, q querier, t Table) ([]leaf, error) {
	ls, err := queryLeaves(ctx, q, `SELECT n.nspname::text, c.relname::text
		FROM pg_partition_tree(to_regclass($1)) p JOIN pg_class c ON c.oid = p.relid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE p.level > 0 AND c.relkind = 'r' ORDER BY 1, 2`, pg.Ident(t.Schema, t.Name))
	if err != nil {
		return nil, fmt.Errorf("list the partitions of %s: %w", t.Display(), err)
	}
	return ls, nil
}

// queryLeaves runs sql, whose rows are a schema and a name.
func queryLeaves(ctx context.Context, q querier, sql string, args ...any) ([]leaf, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (leaf, error) {
		var l leaf
		err := r.Scan(&l.schema, &l.name)
		return l, err
	})
}

// partitionTriggers lists the tables that have t's TriggerPartitionTruncate,
// and those of them where it is enabled as capture needs it.
func partitionTriggers(ctx context.Context, q querier, t Table) (all, enabled []leaf, err error) {
	rows, err := q.Query(ctx, `SELECT n.nspname::text, c.relname::text, tg.tgenabled = 'O'
		FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE tg.tgname = $1 AND tg.tgfoid = to_regprocedure($2)
		ORDER BY 1, 2`, TriggerPartitionTruncate, pg.Ident("gobucardo", functionName(t))+"()")
	if err != nil {
		return nil, nil, fmt.Errorf("read the partition triggers of %s: %w", t.Display(), err)
	}
	defer rows.Close()
	for rows.Next() {
		var l leaf
		var on bool
		if err := rows.Scan(&l.schema, &l.name, &on); err != nil {
			return nil, nil, err
		}
		all = append(all, l)
		if on {
			enabled = append(enabled, l)
		}
	}
	return all, enabled, rows.Err()
}

// knownPartitions are the partitions of t that capture last saw.
func knownPartitions(ctx context.Context, q querier, t Table) ([]leaf, error) {
	ls, err := queryLeaves(ctx, q, `SELECT part_schema, part_name FROM gobucardo.partition
		WHERE schema_name = $1 AND rel_name = $2 ORDER BY 1, 2`, t.Schema, t.Name)
	if err != nil {
		return nil, fmt.Errorf("read the partitions of %s: %w", t.Display(), err)
	}
	return ls, nil
}

// capturable returns t's shape, or why t cannot be captured: it does not
// exist, or it is a partition (its root is what is replicated).
func capturable(ctx context.Context, q querier, t Table) (shape, error) {
	sh, err := shapeOf(ctx, q, t)
	if err != nil {
		return sh, err
	}
	return sh, sh.refusal(t)
}

// refusal says why a table of this shape cannot be captured (nil: it can).
func (s shape) refusal(t Table) error {
	switch {
	case !s.exists:
		return fmt.Errorf("capture %s: the table does not exist on this database: create it, or remove it from the syncs that read it", t.Display())
	case s.partitionOf != "":
		return fmt.Errorf("capture %s: it is a partition of %s: replicate %s instead, which carries every partition "+
			"(mcp remove table %s, then mcp add table %s)", t.Display(), s.partitionOf, s.partitionOf, t.Display(), s.partitionOf)
	}
	return nil
}

// refreshPartitions keeps TriggerPartitionTruncate on exactly the
// partitions of the partitioned table t, and gobucardo.partition in step
// with them. A partition that appears holding rows (ATTACH PARTITION of a
// filled table) or disappears (DETACH or DROP) changed t's rows without a
// trigger firing: it is noted in gobucardo.partition_note for validate and
// status. It returns what it changed, as sentences.
func refreshPartitions(ctx context.Context, tx pgx.Tx, t Table, sh shape) ([]string, error) {
	fn := pg.Ident("gobucardo", functionName(t)) + "()"
	withTrigger, enabled, err := partitionTriggers(ctx, tx, t)
	if err != nil {
		return nil, err
	}
	known, err := knownPartitions(ctx, tx, t)
	if err != nil {
		return nil, err
	}
	var done []string
	note := func(l leaf, change string) error {
		_, err := tx.Exec(ctx, `INSERT INTO gobucardo.partition_note (schema_name, rel_name, partition, change) VALUES ($1, $2, $3, $4)
			ON CONFLICT (schema_name, rel_name, partition, change) DO UPDATE SET at = now()`, t.Schema, t.Name, l.display(), change)
		return err
	}
	for _, l := range sh.leaves {
		if !slices.Contains(enabled, l) {
			for _, st := range []string{
				fmt.Sprintf("CREATE OR REPLACE TRIGGER %s BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s",
					pg.Ident(TriggerPartitionTruncate), l.ident(), fn),
				fmt.Sprintf("ALTER TABLE %s ENABLE TRIGGER %s", l.ident(), pg.Ident(TriggerPartitionTruncate)),
			} {
				if _, err := tx.Exec(ctx, st); err != nil {
					return nil, fmt.Errorf("install the truncate trigger on partition %s of %s: %w", l.display(), t.Display(), err)
				}
			}
			done = append(done, fmt.Sprintf("added the truncate trigger to partition %s of %s", l.display(), t.Display()))
		}
		if slices.Contains(known, l) {
			continue
		}
		if _, err := tx.Exec(ctx, `INSERT INTO gobucardo.partition (schema_name, rel_name, part_schema, part_name) VALUES ($1, $2, $3, $4)`,
			t.Schema, t.Name, l.schema, l.name); err != nil {
			return nil, fmt.Errorf("record partition %s of %s: %w", l.display(), t.Display(), err)
		}
		// A partition made by CREATE TABLE ... PARTITION OF has its row type
		// and its pg_inherits row from one transaction; ATTACH PARTITION
		// came later than the table. Rows written since its creation went
		// through the cloned row trigger; an attached table's did not. (A
		// table created, filled and attached in one transaction looks created.)
		var attached bool
		err := tx.QueryRow(ctx, `SELECT h.xmin::text <> ty.xmin::text AND EXISTS (SELECT 1 FROM ONLY `+l.ident()+`)
			FROM pg_class c JOIN pg_inherits h ON h.inhrelid = c.oid JOIN pg_type ty ON ty.oid = c.reltype
			WHERE c.oid = to_regclass($1)`, l.ident()).Scan(&attached)
		if err != nil {
			return nil, fmt.Errorf("look at partition %s of %s: %w", l.display(), t.Display(), err)
		}
		if attached {
			if err := note(l, "attached"); err != nil {
				return nil, fmt.Errorf("note partition %s of %s: %w", l.display(), t.Display(), err)
			}
		}
	}
	for _, l := range withTrigger {
		if !slices.Contains(sh.leaves, l) {
			if _, err := tx.Exec(ctx, fmt.Sprintf("DROP TRIGGER %s ON %s", pg.Ident(TriggerPartitionTruncate), l.ident())); err != nil {
				return nil, fmt.Errorf("remove the truncate trigger from %s, no longer a partition of %s: %w", l.display(), t.Display(), err)
			}
			done = append(done, fmt.Sprintf("removed the truncate trigger from %s, no longer a partition of %s", l.display(), t.Display()))
		}
	}
	for _, l := range known {
		if slices.Contains(sh.leaves, l) {
			continue
		}
		if _, err := tx.Exec(ctx, `DELETE FROM gobucardo.partition WHERE schema_name = $1 AND rel_name = $2 AND part_schema = $3 AND part_name = $4`,
			t.Schema, t.Name, l.schema, l.name); err != nil {
			return nil, fmt.Errorf("forget partition %s of %s: %w", l.display(), t.Display(), err)
		}
		if err := note(l, "detached"); err != nil {
			return nil, fmt.Errorf("note partition %s of %s: %w", l.display(), t.Display(), err)
		}
	}
	return done, nil
}

// RefreshPartitions brings the capture of every captured partitioned table
// on the database behind conn in step with its partitions (see
// refreshPartitions), without waiting on the application: a partition it
// cannot lock within a second is left for the next call. It returns what it
// changed, as sentences.
func RefreshPartitions(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	var done []string
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var ok bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass('gobucardo.partition') IS NOT NULL").Scan(&ok); err != nil || !ok {
			return err
		}
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '1s'"); err != nil {
			return err
		}
		// Only the partitioned ones: this runs at every purge pass.
		rows, err := tx.Query(ctx, `SELECT c.schema_name, c.rel_name, c.key_columns, c.key_types FROM gobucardo.captured c
			WHERE (SELECT relkind FROM pg_class WHERE oid = to_regclass(format('%I.%I', c.schema_name, c.rel_name))) = 'p'
			ORDER BY 1, 2`)
		if err != nil {
			return fmt.Errorf("read captured tables: %w", err)
		}
		tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Table, error) {
			var t Table
			err := r.Scan(&t.Schema, &t.Name, &t.KeyColumns, &t.KeyTypes)
			return t, err
		})
		if err != nil {
			return fmt.Errorf("read captured tables: %w", err)
		}
		for _, t := range tables {
			sh, err := shapeOf(ctx, tx, t)
			if err != nil {
				return err
			}
			d, err := refreshPartitions(ctx, tx, t, sh)
			if err != nil {
				return err
			}
			done = append(done, d...)
		}
		return nil
	})
	return done, err
}

// PartitionNote is a partition that changed a captured table's rows
// without a trigger firing: attached holding rows, or detached (or
// dropped).
type PartitionNote struct {
	Schema, Name string // the captured (partitioned) table
	Partition    string // schema.name, for messages
	Change       string // attached or detached
	At           time.Time
}

// Problem says what the note means and what to run, for sync.
func (n PartitionNote) Problem(db, sync string) string {
	table := pg.Display(n.Schema, n.Name)
	if n.Change == "attached" {
		return fmt.Sprintf("db %s: partition %s was attached to %s holding rows (seen %s), which no trigger saw: the other dbs lack them "+
			"until %s is copied again: mcp update sync %s onetimecopy=1, then mcp kick %s", db, n.Partition, table,
			n.At.UTC().Format(time.RFC3339), table, sync, sync)
	}
	return fmt.Sprintf("db %s: partition %s of %s was detached or dropped (seen %s): its rows left %s there without a trigger firing, "+
		"so the other dbs keep them until %s is copied again: mcp update sync %s onetimecopy=1, then mcp kick %s (or delete them there)",
		db, n.Partition, table, n.At.UTC().Format(time.RFC3339), table, table, sync, sync)
}

// PartitionNotes returns the notes of the tables of sync on the database
// behind q.
func PartitionNotes(ctx context.Context, q querier, sync Sync) ([]PartitionNote, error) {
	var ok bool
	if err := q.QueryRow(ctx, "SELECT to_regclass('gobucardo.partition_note') IS NOT NULL").Scan(&ok); err != nil || !ok {
		return nil, err
	}
	var schemas, names []string
	for _, t := range sync.Tables {
		schemas, names = append(schemas, t.Schema), append(names, t.Name)
	}
	rows, err := q.Query(ctx, `SELECT n.schema_name, n.rel_name, n.partition, n.change, n.at FROM gobucardo.partition_note n
		JOIN unnest($1::text[], $2::text[]) t(schema_name, rel_name) USING (schema_name, rel_name)
		ORDER BY n.at, n.partition`, schemas, names)
	if err != nil {
		return nil, fmt.Errorf("read the partition notes of sync %s: %w", sync.Name, err)
	}
	notes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PartitionNote, error) {
		var n PartitionNote
		err := r.Scan(&n.Schema, &n.Name, &n.Partition, &n.Change, &n.At)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the partition notes of sync %s: %w", sync.Name, err)
	}
	return notes, nil
}

// ClearPartitionNotes forgets the notes of a table once a run has copied it
// whole from or into the database of tx, in tx.
func ClearPartitionNotes(ctx context.Context, tx pgx.Tx, schema, name string) error {
	var ok bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass('gobucardo.partition_note') IS NOT NULL").Scan(&ok); err != nil || !ok {
		return err
	}
	_, err := tx.Exec(ctx, "DELETE FROM gobucardo.partition_note WHERE schema_name = $1 AND rel_name = $2", schema, name)
	return err
}
