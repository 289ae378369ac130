package capture

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// Version is the version of the objects this package installs; objects of
// another version are stale and reinstalled.
const Version = 3

// KickChannel is the NOTIFY channel of autokick; the payload is the sync.
const KickChannel = "gobucardo_kick"

// Trigger names on a captured table.
const (
	TriggerInsert   = "gobucardo_capture_ins"
	TriggerUpdate   = "gobucardo_capture_upd"
	TriggerDelete   = "gobucardo_capture_del"
	TriggerTruncate = "gobucardo_capture_trunc"
	// TriggerKeyChange records the old key of a row whose key an UPDATE
	// changed (the statement trigger records the new keys only).
	TriggerKeyChange = "gobucardo_capture_key"
)

// triggers are every trigger capture puts on a captured table itself.
var triggers = []string{TriggerInsert, TriggerUpdate, TriggerDelete, TriggerTruncate, TriggerKeyChange, TriggerRow}

// triggersOf are the triggers a table of that shape has: statement
// triggers with transition tables for a plain table, TriggerRow for the
// others; every table has the truncate trigger.
func triggersOf(s shape) []string {
	if s.rowLevel() {
		return []string{TriggerRow, TriggerTruncate}
	}
	return []string{TriggerInsert, TriggerUpdate, TriggerDelete, TriggerTruncate, TriggerKeyChange}
}

// installLock serialises installs on one database.
const installLock = 0x676f6263617074 // "gobcapt"

// Table is a table to capture, with the key the catalog recorded for it.
type Table struct {
	Schema, Name string
	KeyColumns   []string
	KeyTypes     []string
}

// Display is schema.name for messages.
func (t Table) Display() string { return pg.Display(t.Schema, t.Name) }

// Sync says what one sync reads from this database.
type Sync struct {
	Name     string
	Autokick bool
	Tables   []Table // tables with a key; fullcopy-only tables need no capture
}

// DeltaName is the name, in schema gobucardo, of the delta table of
// schema.table: readable, at most 55 bytes, and unambiguous (it ends with a
// hash of the exact names).
func DeltaName(schema, table string) string {
	sum := md5.Sum([]byte(schema + "\x00" + table))
	base := schema + "_" + table
	for len(base) > 44 {
		_, size := utf8.DecodeLastRuneInString(base)
		base = base[:len(base)-size]
	}
	return "d_" + base + "_" + hex.EncodeToString(sum[:4])
}

// baseSQL creates the objects shared by every captured table. Idempotent.
const baseSQL = `
CREATE SCHEMA IF NOT EXISTS gobucardo;
CREATE TABLE IF NOT EXISTS gobucardo.captured (
    schema_name text NOT NULL,
    rel_name    text NOT NULL,
    delta_table text NOT NULL UNIQUE,
    key_columns text[] NOT NULL,
    key_types   text[] NOT NULL,
    version     integer NOT NULL,
    created     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, rel_name));
CREATE TABLE IF NOT EXISTS gobucardo.subscription (
    sync        text NOT NULL,
    schema_name text NOT NULL,
    rel_name    text NOT NULL,
    autokick    boolean NOT NULL,
    PRIMARY KEY (sync, schema_name, rel_name),
    FOREIGN KEY (schema_name, rel_name) REFERENCES gobucardo.captured ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS gobucardo.watermark (
    sync        text PRIMARY KEY,
    snap        pg_snapshot NOT NULL,
    updated     timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS gobucardo.target_watermark (
    sync        text NOT NULL,
    target      text NOT NULL,
    snap        pg_snapshot NOT NULL,
    since       timestamptz NOT NULL DEFAULT now(),
    reason      text NOT NULL DEFAULT '',
    PRIMARY KEY (sync, target));
CREATE TABLE IF NOT EXISTS gobucardo.truncate_log (
    schema_name text NOT NULL,
    rel_name    text NOT NULL,
    txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    at          timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX IF NOT EXISTS truncate_log_txid ON gobucardo.truncate_log (txid);
CREATE TABLE IF NOT EXISTS gobucardo.partition (
    schema_name text NOT NULL,
    rel_name    text NOT NULL,
    part_schema text NOT NULL,
    part_name   text NOT NULL,
    PRIMARY KEY (schema_name, rel_name, part_schema, part_name),
    FOREIGN KEY (schema_name, rel_name) REFERENCES gobucardo.captured ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS gobucardo.partition_note (
    schema_name text NOT NULL,
    rel_name    text NOT NULL,
    partition   text NOT NULL,
    change      text NOT NULL CHECK (change IN ('attached', 'detached')),
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, rel_name, partition, change),
    FOREIGN KEY (schema_name, rel_name) REFERENCES gobucardo.captured ON DELETE CASCADE);
CREATE SEQUENCE IF NOT EXISTS gobucardo.activity;
CREATE OR REPLACE FUNCTION gobucardo.kick(syncs text[]) RETURNS void
LANGUAGE plpgsql AS $kick$
DECLARE
    n    bigint;
    s    text;
    mark regclass;
BEGIN
    IF coalesce(cardinality(syncs), 0) = 0 THEN
        RETURN;
    END IF;
    n := nextval('gobucardo.activity');
    FOREACH s IN ARRAY syncs LOOP
        mark := to_regclass(format('gobucardo.%I', 'kick_' || s));
        IF mark IS NOT NULL AND n >= coalesce(pg_sequence_last_value(mark), 0) THEN
            -- Disarm until the sync's controller arms the mark again.
            PERFORM setval(mark, 9223372036854775807);
            PERFORM pg_notify('gobucardo_kick', s);
        END IF;
    END LOOP;
END
$kick$;
CREATE OR REPLACE FUNCTION gobucardo.note_truncate() RETURNS trigger
LANGUAGE plpgsql AS $trunc$
BEGIN
    INSERT INTO gobucardo.truncate_log (schema_name, rel_name) VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME);
    -- A partitioned table's trigger fires before its partitions' (BEFORE
    -- TRUNCATE): they see the whole table is truncated and record nothing.
    PERFORM set_config('gobucardo.truncated', coalesce(current_setting('gobucardo.truncated', true), '') || TG_RELID::text || ',', true);
    PERFORM gobucardo.kick(TG_ARGV);
    RETURN NULL;
END
$trunc$;
`

// Install installs or refreshes the capture of every table of sync on the
// database behind conn, in one transaction, and records the sync's
// subscription. A sync's first install sets its watermark to now: changes
// before it are not replicated (onetimecopy fills the targets).
func Install(ctx context.Context, conn *pgx.Conn, sync Sync) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(installLock)); err != nil {
			return fmt.Errorf("lock capture: %w", err)
		}
		if _, err := tx.Exec(ctx, "SET LOCAL client_min_messages = warning"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, baseSQL); err != nil {
			return fmt.Errorf("install capture base objects: %w", err)
		}
		mark := pg.Ident("gobucardo", "kick_"+sync.Name)
		if _, err := tx.Exec(ctx, "CREATE SEQUENCE IF NOT EXISTS "+mark); err != nil {
			return fmt.Errorf("create kick mark of sync %s: %w", sync.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO gobucardo.watermark (sync, snap) VALUES ($1, pg_current_snapshot())
			ON CONFLICT (sync) DO NOTHING`, sync.Name); err != nil {
			return fmt.Errorf("set watermark of sync %s: %w", sync.Name, err)
		}
		// The subscription is replaced: a table the sync no longer reads is dropped.
		if _, err := tx.Exec(ctx, "DELETE FROM gobucardo.subscription WHERE sync = $1", sync.Name); err != nil {
			return fmt.Errorf("reset subscription of sync %s: %w", sync.Name, err)
		}
		shapes := map[string]shape{}
		for _, t := range sync.Tables {
			sh, err := capturable(ctx, tx, t)
			if err != nil {
				return err
			}
			shapes[t.Display()] = sh
			if err := captureTable(ctx, tx, t, sh); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO gobucardo.subscription (sync, schema_name, rel_name, autokick)
				VALUES ($1, $2, $3, $4)`, sync.Name, t.Schema, t.Name, sync.Autokick); err != nil {
				return fmt.Errorf("subscribe sync %s to %s: %w", sync.Name, t.Display(), err)
			}
		}
		return refreshTriggers(ctx, tx, shapes)
	})
}

// captureTable creates the delta table of t, or recreates it when the key
// changed; a new capture of a partitioned table knows its partitions.
func captureTable(ctx context.Context, tx pgx.Tx, t Table, sh shape) error {
	if len(t.KeyColumns) == 0 || len(t.KeyColumns) != len(t.KeyTypes) {
		return fmt.Errorf("capture %s: the table has no key", t.Display())
	}
	for _, c := range t.KeyColumns {
		if c == "txid" || c == "changed_at" || c == "origin" {
			return fmt.Errorf("capture %s: key column %q clashes with gobucardo's delta columns: use another key", t.Display(), c)
		}
	}
	var oldCols []string
	err := tx.QueryRow(ctx, "SELECT key_columns FROM gobucardo.captured WHERE schema_name = $1 AND rel_name = $2",
		t.Schema, t.Name).Scan(&oldCols)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("read capture of %s: %w", t.Display(), err)
	case strings.Join(oldCols, "\x00") == strings.Join(t.KeyColumns, "\x00"):
		return nil
	}
	delta := pg.Ident("gobucardo", DeltaName(t.Schema, t.Name))
	var cols []string
	for i, c := range t.KeyColumns {
		// Key types come from format_type on the table's own db.
		cols = append(cols, pg.Ident(c)+" "+t.KeyTypes[i]+" NOT NULL")
	}
	stmts := []string{
		"DROP TABLE IF EXISTS " + delta,
		// origin is NULL for the application's writes; makedelta sets it to
		// the sync that applied the row, which then does not read it back.
		fmt.Sprintf(`CREATE TABLE %s (%s, txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
			changed_at timestamptz NOT NULL DEFAULT clock_timestamp(), origin text)`, delta, strings.Join(cols, ", ")),
		fmt.Sprintf("CREATE INDEX %s ON %s (txid)", pg.Ident(DeltaName(t.Schema, t.Name)+"_txid"), delta),
		// Plans over delta tables must not depend on fresh statistics.
		fmt.Sprintf("ALTER TABLE %s SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01)", delta),
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("create delta table of %s: %w", t.Display(), err)
		}
	}
	_, err = tx.Exec(ctx, `INSERT INTO gobucardo.captured (schema_name, rel_name, delta_table, key_columns, key_types, version)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (schema_name, rel_name) DO UPDATE SET delta_table = excluded.delta_table,
			key_columns = excluded.key_columns, key_types = excluded.key_types, version = excluded.version`,
		t.Schema, t.Name, DeltaName(t.Schema, t.Name), t.KeyColumns, t.KeyTypes, Version)
	if err != nil {
		return fmt.Errorf("record capture of %s: %w", t.Display(), err)
	}
	for _, l := range sh.leaves {
		if _, err := tx.Exec(ctx, `INSERT INTO gobucardo.partition (schema_name, rel_name, part_schema, part_name)
			VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, t.Schema, t.Name, l.schema, l.name); err != nil {
			return fmt.Errorf("record the partitions of %s: %w", t.Display(), err)
		}
	}
	return nil
}

type captured struct {
	Table
	autokick []string // syncs with autokick that read the table
}

// loadCaptured reads every captured table with its autokick syncs.
func loadCaptured(ctx context.Context, q pgx.Tx) ([]captured, error) {
	rows, err := q.Query(ctx, `SELECT c.schema_name, c.rel_name, c.key_columns, c.key_types,
			coalesce(array_agg(s.sync ORDER BY s.sync) FILTER (WHERE s.autokick), '{}')
		FROM gobucardo.captured c LEFT JOIN gobucardo.subscription s USING (schema_name, rel_name)
		GROUP BY 1, 2, 3, 4 ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("read captured tables: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (captured, error) {
		var c captured
		err := r.Scan(&c.Schema, &c.Name, &c.KeyColumns, &c.KeyTypes, &c.autokick)
		return c, err
	})
}

// refreshTriggers (re)creates the trigger function and triggers of every
// captured table, so that each kicks the autokick syncs that read it; a
// table no sync reads any more loses its capture. shapes are those the
// caller read already, by Table.Display.
func refreshTriggers(ctx context.Context, tx pgx.Tx, shapes map[string]shape) error {
	tables, err := loadCaptured(ctx, tx)
	if err != nil {
		return err
	}
	for _, c := range tables {
		var subscribed bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM gobucardo.subscription WHERE schema_name = $1 AND rel_name = $2)",
			c.Schema, c.Name).Scan(&subscribed); err != nil {
			return err
		}
		if !subscribed {
			if err := dropCapture(ctx, tx, c.Table); err != nil {
				return err
			}
			continue
		}
		sh, ok := shapes[c.Display()]
		if !ok {
			if sh, err = capturable(ctx, tx, c.Table); err != nil {
				return err
			}
		}
		have, err := tableTriggers(ctx, tx, c.Table)
		if err != nil {
			return err
		}
		for _, s := range triggerSQL(c.Table, c.autokick, sh, have) {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("install triggers on %s: %w", c.Display(), err)
			}
		}
		if _, err := refreshPartitions(ctx, tx, c.Table, sh); err != nil {
			return err
		}
	}
	return nil
}

// tableTriggers returns capture's triggers on t, with their tgenabled.
func tableTriggers(ctx context.Context, q querier, t Table) (map[string]string, error) {
	rows, err := q.Query(ctx, `SELECT tgname::text, tgenabled::text FROM pg_trigger
		WHERE tgrelid = to_regclass($1) AND tgname::text = ANY($2)`, pg.Ident(t.Schema, t.Name), triggers)
	if err != nil {
		return nil, fmt.Errorf("read the triggers of %s: %w", t.Display(), err)
	}
	defer rows.Close()
	state := map[string]string{}
	for rows.Next() {
		var name, enabled string
		if err := rows.Scan(&name, &enabled); err != nil {
			return nil, err
		}
		state[name] = enabled
	}
	return state, rows.Err()
}

// functionName is the trigger function of t in schema gobucardo.
func functionName(t Table) string { return DeltaName(t.Schema, t.Name) + "_fn" }

// functionBody is the PL/pgSQL body of t's trigger function; Check compares
// the installed body with it to find stale triggers.
func functionBody(t Table, kick []string, sh shape) string {
	if sh.rowLevel() {
		return rowFunctionBody(t, kick, sh)
	}
	delta := pg.Ident("gobucardo", DeltaName(t.Schema, t.Name))
	var cols []string
	for _, c := range t.KeyColumns {
		cols = append(cols, pg.Ident(c))
	}
	list := strings.Join(cols, ", ")
	var b strings.Builder
	var old []string
	for _, c := range cols {
		old = append(old, "OLD."+c)
	}
	fmt.Fprintf(&b, "\n-- gobucardo capture v%d of %s\nDECLARE\n    n bigint;\nBEGIN\n", Version, t.Display())
	// The row trigger, for the rare UPDATE that changes a key (its WHEN
	// says so): the old key. An UPDATE's statement trigger records only the
	// new keys: a UNION with the old ones cost a sixth of pgbench's TPS.
	fmt.Fprintf(&b, "    IF TG_LEVEL = 'ROW' THEN\n        INSERT INTO %s (%s) VALUES (%s);\n        RETURN NULL;\n    END IF;\n",
		delta, list, strings.Join(old, ", "))
	fmt.Fprintf(&b, "    IF TG_OP = 'INSERT' THEN\n        INSERT INTO %s (%s) SELECT %s FROM new_rows;\n", delta, list, list)
	fmt.Fprintf(&b, "    ELSIF TG_OP = 'UPDATE' THEN\n        INSERT INTO %s (%s) SELECT %s FROM new_rows;\n", delta, list, list)
	fmt.Fprintf(&b, "    ELSE\n        INSERT INTO %s (%s) SELECT %s FROM old_rows;\n    END IF;\n", delta, list, list)
	b.WriteString("    GET DIAGNOSTICS n = ROW_COUNT;\n")
	writeKick(&b, kick)
	b.WriteString("    RETURN NULL;\nEND\n")
	return b.String()
}

// writeKick writes the autokick block of a trigger function: when n > 0.
func writeKick(b *strings.Builder, kick []string) {
	if len(kick) > 0 {
		// gobucardo.kick inlined: one nextval, then per sync a read of its
		// mark (regclass constants are resolved once per session).
		b.WriteString("    IF n > 0 THEN\n        n := nextval('gobucardo.activity');\n")
		for _, s := range kick {
			mark := quoteLiteral(pg.Ident("gobucardo", "kick_"+s)) + "::regclass"
			fmt.Fprintf(b, "        IF n >= coalesce(pg_sequence_last_value(%s), 0) THEN\n", mark)
			fmt.Fprintf(b, "            PERFORM setval(%s, 9223372036854775807);\n", mark)
			fmt.Fprintf(b, "            PERFORM pg_notify('%s', %s);\n        END IF;\n", KickChannel, quoteLiteral(s))
		}
		b.WriteString("    END IF;\n")
	}
}

// rowFunctionBody is the trigger function of a table captured row by row
// (see TriggerRow). For a partitioned table it also serves
// TriggerPartitionTruncate: a partition truncated on its own records the
// keys of its rows, unless the whole table is being truncated (the
// table's own truncate trigger fired first and said so).
func rowFunctionBody(t Table, kick []string, sh shape) string {
	delta := pg.Ident("gobucardo", DeltaName(t.Schema, t.Name))
	var cols, old, cur []string
	for _, c := range t.KeyColumns {
		cols = append(cols, pg.Ident(c))
		old = append(old, "OLD."+pg.Ident(c))
		cur = append(cur, "NEW."+pg.Ident(c))
	}
	list := strings.Join(cols, ", ")
	var b strings.Builder
	fmt.Fprintf(&b, "\n-- gobucardo capture v%d of %s, row by row\nDECLARE\n    n bigint := 1;\nBEGIN\n", Version, t.Display())
	b.WriteString("    IF TG_LEVEL = 'ROW' THEN\n")
	fmt.Fprintf(&b, "        IF TG_OP = 'DELETE' THEN\n            INSERT INTO %s (%s) VALUES (%s);\n", delta, list, strings.Join(old, ", "))
	fmt.Fprintf(&b, "        ELSE\n            INSERT INTO %s (%s) VALUES (%s);\n", delta, list, strings.Join(cur, ", "))
	fmt.Fprintf(&b, "            IF TG_OP = 'UPDATE' AND %s THEN\n                INSERT INTO %s (%s) VALUES (%s);\n            END IF;\n",
		keyChanged(t), delta, list, strings.Join(old, ", "))
	b.WriteString("        END IF;\n")
	if sh.partitioned {
		b.WriteString("    ELSIF TG_OP = 'TRUNCATE' THEN\n")
		fmt.Fprintf(&b, "        IF strpos(',' || coalesce(current_setting('gobucardo.truncated', true), ''), ',' || %s::regclass::oid::text || ',') > 0 THEN\n            RETURN NULL;\n        END IF;\n",
			quoteLiteral(pg.Ident(t.Schema, t.Name)))
		// The names go into a format() string literal: quotes and % doubled.
		esc := strings.NewReplacer("'", "''", "%", "%%")
		fmt.Fprintf(&b, "        EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM ONLY %%I.%%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);\n",
			esc.Replace(delta), esc.Replace(list), esc.Replace(list))
		b.WriteString("        GET DIAGNOSTICS n = ROW_COUNT;\n")
	}
	b.WriteString("    END IF;\n")
	if len(kick) > 0 {
		// Autokick once per transaction and table, not once per row: a
		// transaction that wrote before the mark was armed and writes on
		// after is in progress at the arming, which the controller's
		// settle run catches (see Arm).
		sum := md5.Sum([]byte(delta))
		flag := quoteLiteral("gobucardo.kicked_" + hex.EncodeToString(sum[:6]))
		fmt.Fprintf(&b, "    IF current_setting(%s, true) IS DISTINCT FROM 'on' THEN\n        PERFORM set_config(%s, 'on', true);\n", flag, flag)
		writeKick(&b, kick)
		b.WriteString("    END IF;\n")
	}
	b.WriteString("    RETURN NULL;\nEND\n")
	return b.String()
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// triggerSQL (re)creates t's trigger function and the triggers of its
// shape, and drops those of the other shape that it has.
func triggerSQL(t Table, kick []string, sh shape, have map[string]string) []string {
	tbl := pg.Ident(t.Schema, t.Name)
	fn := pg.Ident("gobucardo", functionName(t))
	args := make([]string, len(kick))
	for i, s := range kick {
		args[i] = quoteLiteral(s)
	}
	var out []string
	want := triggersOf(sh)
	for _, tg := range triggers {
		if _, ok := have[tg]; ok && !slices.Contains(want, tg) {
			out = append(out, fmt.Sprintf("DROP TRIGGER %s ON %s", pg.Ident(tg), tbl))
		}
	}
	out = append(out, fmt.Sprintf("CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS %s", fn, dollarQuote(functionBody(t, kick, sh))))
	if sh.rowLevel() {
		// A partitioned table's truncate trigger fires BEFORE, so that its
		// partitions' own (see TriggerPartitionTruncate) know.
		when := "AFTER"
		if sh.partitioned {
			when = "BEFORE"
		}
		return append(out,
			fmt.Sprintf("CREATE OR REPLACE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s()",
				pg.Ident(TriggerRow), tbl, fn),
			fmt.Sprintf("CREATE OR REPLACE TRIGGER %s %s TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION gobucardo.note_truncate(%s)",
				pg.Ident(TriggerTruncate), when, tbl, strings.Join(args, ", ")),
			fmt.Sprintf("ALTER TABLE %s ENABLE TRIGGER %s, ENABLE TRIGGER %s", tbl, pg.Ident(TriggerRow), pg.Ident(TriggerTruncate)))
	}
	return append(out,
		fmt.Sprintf("CREATE OR REPLACE TRIGGER %s AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION %s()",
			pg.Ident(TriggerInsert), tbl, fn),
		fmt.Sprintf("CREATE OR REPLACE TRIGGER %s AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION %s()",
			pg.Ident(TriggerUpdate), tbl, fn),
		fmt.Sprintf("CREATE OR REPLACE TRIGGER %s AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION %s()",
			pg.Ident(TriggerDelete), tbl, fn),
		fmt.Sprintf("CREATE OR REPLACE TRIGGER %s AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION gobucardo.note_truncate(%s)",
			pg.Ident(TriggerTruncate), tbl, strings.Join(args, ", ")),
		fmt.Sprintf("CREATE OR REPLACE TRIGGER %s AFTER UPDATE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s()",
			pg.Ident(TriggerKeyChange), tbl, keyChanged(t), fn),
		// Triggers fire in origin and local mode only: a kid writing under
		// session_replication_role = replica is not captured.
		fmt.Sprintf("ALTER TABLE %s ENABLE TRIGGER %s, ENABLE TRIGGER %s", tbl, pg.Ident(TriggerInsert), pg.Ident(TriggerUpdate)),
		fmt.Sprintf("ALTER TABLE %s ENABLE TRIGGER %s, ENABLE TRIGGER %s, ENABLE TRIGGER %s", tbl,
			pg.Ident(TriggerDelete), pg.Ident(TriggerTruncate), pg.Ident(TriggerKeyChange)))
}

// keyChanged is the WHEN condition of the key-change trigger: the row's
// key is not what it was.
func keyChanged(t Table) string {
	var old, cur []string
	for _, c := range t.KeyColumns {
		old = append(old, "OLD."+pg.Ident(c))
		cur = append(cur, "NEW."+pg.Ident(c))
	}
	if len(old) == 1 {
		return old[0] + " IS DISTINCT FROM " + cur[0]
	}
	return fmt.Sprintf("(%s) IS DISTINCT FROM (%s)", strings.Join(old, ", "), strings.Join(cur, ", "))
}

func dollarQuote(body string) string {
	tag := "$gobucardo$"
	for strings.Contains(body, tag) {
		tag = "$gobucardo" + fmt.Sprint(len(tag)) + "$"
	}
	return tag + body + tag
}

// dropCapture removes t's triggers (if the table still exists), trigger
// function and delta table.
func dropCapture(ctx context.Context, tx pgx.Tx, t Table) error {
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pg.Ident(t.Schema, t.Name)).Scan(&exists); err != nil {
		return err
	}
	var stmts []string
	if exists {
		for _, tg := range triggers {
			stmts = append(stmts, fmt.Sprintf("DROP TRIGGER IF EXISTS %s ON %s", pg.Ident(tg), pg.Ident(t.Schema, t.Name)))
		}
	}
	// The partitions' truncate triggers, wherever they are now.
	parts, _, err := partitionTriggers(ctx, tx, t)
	if err != nil {
		return err
	}
	for _, l := range parts {
		stmts = append(stmts, fmt.Sprintf("DROP TRIGGER %s ON %s", pg.Ident(TriggerPartitionTruncate), l.ident()))
	}
	stmts = append(stmts,
		"DROP FUNCTION IF EXISTS "+pg.Ident("gobucardo", functionName(t))+"()",
		"DROP TABLE IF EXISTS "+pg.Ident("gobucardo", DeltaName(t.Schema, t.Name)))
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("remove capture of %s: %w", t.Display(), err)
		}
	}
	if _, err := tx.Exec(ctx, "DELETE FROM gobucardo.captured WHERE schema_name = $1 AND rel_name = $2", t.Schema, t.Name); err != nil {
		return fmt.Errorf("remove capture of %s: %w", t.Display(), err)
	}
	return nil
}

// RemoveSync forgets a sync on this database: its subscription, watermark
// and kick mark; tables no other sync reads lose their capture.
func RemoveSync(ctx context.Context, conn *pgx.Conn, sync string) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var ok bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass('gobucardo.subscription') IS NOT NULL").Scan(&ok); err != nil || !ok {
			return err
		}
		stmts := []string{"DELETE FROM gobucardo.subscription WHERE sync = $1", "DELETE FROM gobucardo.watermark WHERE sync = $1"}
		var targets bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass('gobucardo.target_watermark') IS NOT NULL").Scan(&targets); err != nil {
			return err
		}
		if targets {
			stmts = append(stmts, "DELETE FROM gobucardo.target_watermark WHERE sync = $1")
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s, sync); err != nil {
				return fmt.Errorf("remove sync %s from capture: %w", sync, err)
			}
		}
		if _, err := tx.Exec(ctx, "DROP SEQUENCE IF EXISTS "+pg.Ident("gobucardo", "kick_"+sync)); err != nil {
			return err
		}
		return refreshTriggers(ctx, tx, nil)
	})
}

// Uninstall removes all of gobucardo's capture from the database: triggers,
// trigger functions, delta tables, watermarks. Schema gobucardo itself is
// dropped only when nothing else (such as a catalog) lives in it.
func Uninstall(ctx context.Context, conn *pgx.Conn) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var ok bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass('gobucardo.captured') IS NOT NULL").Scan(&ok); err != nil {
			return err
		}
		if ok {
			tables, err := loadCaptured(ctx, tx)
			if err != nil {
				return err
			}
			for _, t := range tables {
				if err := dropCapture(ctx, tx, t.Table); err != nil {
					return err
				}
			}
			rows, err := tx.Query(ctx, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE n.nspname = 'gobucardo' AND c.relkind = 'S' AND c.relname LIKE 'kick\_%'`)
			if err != nil {
				return err
			}
			marks, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			sort.Strings(marks)
			for _, m := range marks {
				if _, err := tx.Exec(ctx, "DROP SEQUENCE "+pg.Ident("gobucardo", m)); err != nil {
					return err
				}
			}
		}
		for _, s := range []string{
			"DROP TABLE IF EXISTS gobucardo.partition_note, gobucardo.partition, gobucardo.subscription, gobucardo.target_watermark, gobucardo.watermark, gobucardo.truncate_log, gobucardo.captured",
			"DROP SEQUENCE IF EXISTS gobucardo.activity",
			"DROP FUNCTION IF EXISTS gobucardo.kick(text[])",
			"DROP FUNCTION IF EXISTS gobucardo.note_truncate()",
		} {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("uninstall capture: %w", err)
			}
		}
		var others bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_namespace n ON d.refobjid = n.oid
			WHERE n.nspname = 'gobucardo' AND d.refclassid = 'pg_namespace'::regclass AND d.deptype = 'n')`).Scan(&others); err != nil {
			return err
		}
		if !others {
			if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS gobucardo"); err != nil {
				return fmt.Errorf("drop schema gobucardo: %w", err)
			}
		}
		return nil
	})
}

// SyncFrom is what the sync needs captured on each source, from its catalog
// entry.
func SyncFrom(d catalog.SyncDetail) Sync {
	cs := Sync{Name: d.Name, Autokick: d.Autokick}
	for _, r := range d.Relations {
		if r.Kind == catalog.KindTable && len(r.KeyColumns) > 0 {
			cs.Tables = append(cs.Tables, Table{Schema: r.Schema, Name: r.Name, KeyColumns: r.KeyColumns, KeyTypes: r.KeyTypes})
		}
	}
	return cs
}

// Arm sets the sync's autokick mark on this source so that the next change
// notifies again, and returns the snapshot taken at that moment. Writers in
// progress then may have passed the disarmed mark without notifying: the
// controller runs once more when Settled says they have all ended.
func Arm(ctx context.Context, conn *pgx.Conn, sync string) (snapshot string, err error) {
	mark := pg.Ident("gobucardo", "kick_"+sync)
	err = conn.QueryRow(ctx, "SELECT setval("+quoteLiteral(mark)+"::regclass, nextval('gobucardo.activity') + 1), pg_current_snapshot()::text").
		Scan(nil, &snapshot)
	if err != nil {
		return "", fmt.Errorf("arm autokick of sync %s: %w", sync, err)
	}
	return snapshot, nil
}

// Settled reports whether every transaction in progress at snapshot has
// ended.
func Settled(ctx context.Context, conn *pgx.Conn, snapshot string) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, `SELECT NOT EXISTS (SELECT FROM pg_snapshot_xip($1::pg_snapshot) x
		WHERE pg_xact_status(x) = 'in progress')`, snapshot).Scan(&ok)
	return ok, err
}
