package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gobucardo/gobucardo/pkg/pg"
)

// ReapplyResult is what Reapply did with one key.
type ReapplyResult struct {
	Key json.RawMessage
	// Gone: the source no longer has a row of the key, so the key is only
	// deleted on the target.
	Gone bool
	// Err is why the key could not be applied; nil when it was. A database
	// error unwraps to its *pgconn.PgError.
	Err error
	// SQLState is Err's SQLSTATE when PostgreSQL raised it.
	SQLState string
}

// rowError is a database error that kept one key from being applied.
type rowError struct{ pe *pgconn.PgError }

func (e *rowError) Error() string { return pgText(e.pe) }
func (e *rowError) Unwrap() error { return e.pe }

// Reapply makes target hold what source holds now for each key of rel
// (JSON objects of rel's key columns, as parked rows record them): it
// deletes the key on target and inserts source's current row of it, or
// only deletes it when source has none. Columns are matched by name; only
// the columns both dbs have, and that are not generated on either, are
// written.
//
// It holds sync's lock on source meanwhile, as a run does, so that no run
// of the sync writes the same rows at once; it waits for a run in progress.
// target's changes are one transaction with session_replication_role =
// replica, each key under its own savepoint: a key that fails is reported
// in its result and does not stop the others. The results follow the order
// of keys. The error is for what fails them all (a db that cannot be
// reached, a table that is not there); then nothing was changed.
func Reapply(ctx context.Context, sync string, source, target DB, rel Relation, keys []json.RawMessage) ([]ReapplyResult, error) {
	if len(rel.KeyColumns) == 0 {
		return nil, fmt.Errorf("table %s: no key columns to find the rows by", rel.Display())
	}
	res := make([]ReapplyResult, len(keys))
	var valid []int // indexes into keys of the keys that name every key column
	for i, k := range keys {
		res[i].Key = k
		if err := checkKey(k, rel.KeyColumns); err != nil {
			res[i].Err = err
			continue
		}
		valid = append(valid, i)
	}
	if len(valid) == 0 {
		return res, nil
	}
	src, err := connect(ctx, source)
	if err != nil {
		return nil, err
	}
	defer src.Close(context.WithoutCancel(ctx))
	dst, err := connect(ctx, target)
	if err != nil {
		return nil, err
	}
	defer dst.Close(context.WithoutCancel(ctx))

	// Read committed, and the lock first: what is read is what the last run
	// left, and no run can start until the target has committed.
	stx, err := src.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin on source %s: %w", source.Name, err)
	}
	defer func() { _ = stx.Rollback(context.WithoutCancel(ctx)) }()
	// The lock beginSource takes.
	if _, err := stx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('gobucardo sync ' || $1))", sync); err != nil {
		return nil, fmt.Errorf("lock sync %s on %s: %w", sync, source.Name, err)
	}
	ttx, err := dst.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin on %s: %w", target.Name, err)
	}
	defer func() { _ = ttx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := ttx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
		return nil, fmt.Errorf("db %s: cannot set session_replication_role (gobucardo's user must be a superuser, "+
			"or on PostgreSQL 15+ hold GRANT SET ON PARAMETER session_replication_role): %w", target.Name, err)
	}
	// Deferred constraints are checked at each key's savepoint, not at
	// commit, where one key's failure would undo every other.
	if _, err := ttx.Exec(ctx, "SET CONSTRAINTS ALL IMMEDIATE"); err != nil {
		return nil, fmt.Errorf("db %s: %w", target.Name, err)
	}
	cols, srcRef, dstRef, err := sharedColumns(ctx, stx, ttx, source.Name, target.Name, rel)
	if err != nil {
		return nil, err
	}
	rows, err := currentRows(ctx, stx, source.Name, rel, srcRef, keys, valid)
	if err != nil {
		return nil, err
	}

	tbl := pg.Ident(rel.Schema, rel.Name)
	del := fmt.Sprintf("DELETE FROM %s t USING jsonb_populate_record(NULL::%s, $1::jsonb) k WHERE %s",
		dstRef, tbl, keyJoin(rel.KeyColumns, "t", "k"))
	ins := fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM jsonb_populate_record(NULL::%s, $1::jsonb) r",
		tbl, identList(cols, ""), identList(cols, "r"), tbl)
	for n, i := range valid {
		row := rows[n]
		res[i].Gone = row == nil
		pe, err := applyKey(ctx, ttx, del, ins, string(keys[i]), row)
		if err != nil {
			return nil, fmt.Errorf("re-apply %s on %s: %w", rel.Display(), target.Name, err)
		}
		if pe != nil {
			res[i].Err, res[i].SQLState = &rowError{pe: pe}, pe.Code
		}
	}
	if err := ttx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit on %s: %w", target.Name, err)
	}
	return res, nil
}

// checkKey makes sure key is a JSON object with a non-null value of every
// key column: jsonb_populate_record would make a missing one NULL, which
// matches no row, and the key would seem applied.
func checkKey(key json.RawMessage, cols []string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(key, &m); err != nil || m == nil {
		return fmt.Errorf("key %s is not a JSON object of the key columns", key)
	}
	for _, c := range cols {
		if v, ok := m[c]; !ok || string(v) == "null" {
			return fmt.Errorf("key %s has no value for key column %s", key, pg.Display(c))
		}
	}
	return nil
}

// sharedColumns are the columns of rel, in target's order, that both dbs
// have and neither generates, and how each db names the table.
func sharedColumns(ctx context.Context, stx, ttx pgx.Tx, source, target string, rel Relation) (cols []string, srcRef, dstRef string, err error) {
	scols, _, srcParted, err := readColumns(ctx, stx, source, rel)
	if err != nil {
		return nil, "", "", err
	}
	tcols, _, dstParted, err := readColumns(ctx, ttx, target, rel)
	if err != nil {
		return nil, "", "", err
	}
	names := columnSet{table: pg.Ident(rel.Schema, rel.Name), partitioned: map[string]bool{source: srcParted, target: dstParted}}
	srcRef, dstRef = names.ref(source), names.ref(target)
	have := map[string]bool{}
	for _, c := range scols {
		have[c.name] = true
	}
	for _, c := range tcols {
		if have[c.name] {
			cols = append(cols, c.name)
		}
	}
	shared := map[string]bool{}
	for _, c := range cols {
		shared[c] = true
	}
	for _, k := range rel.KeyColumns {
		if !shared[k] {
			return nil, "", "", fmt.Errorf("key column %s of %s is not a plain column on both %s and %s", pg.Display(k), rel.Display(), source, target)
		}
	}
	return cols, srcRef, dstRef, nil
}

// currentRows reads source's row (to_jsonb) of each of keys[valid[n]], nil
// when it has none.
func currentRows(ctx context.Context, q pgx.Tx, source string, rel Relation, ref string, keys []json.RawMessage, valid []int) ([]json.RawMessage, error) {
	list := make([]json.RawMessage, len(valid))
	for n, i := range valid {
		list[n] = keys[i]
	}
	arg, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	tbl := pg.Ident(rel.Schema, rel.Name)
	rows, err := q.Query(ctx, fmt.Sprintf(`SELECT j.n, to_jsonb(t)::text
		FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY j(v, n) CROSS JOIN LATERAL jsonb_populate_record(NULL::%s, j.v) k
		LEFT JOIN %s t ON %s`, tbl, ref, keyJoin(rel.KeyColumns, "t", "k")), string(arg))
	if err != nil {
		return nil, fmt.Errorf("read current rows of %s on %s: %w", rel.Display(), source, err)
	}
	defer rows.Close()
	out := make([]json.RawMessage, len(valid))
	for rows.Next() {
		var n int64
		var row *string
		if err := rows.Scan(&n, &row); err != nil {
			return nil, err
		}
		if row != nil && n >= 1 && n <= int64(len(out)) {
			out[n-1] = json.RawMessage(*row)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read current rows of %s on %s: %w", rel.Display(), source, err)
	}
	return out, nil
}

// applyKey deletes key and inserts row (unless nil) under a savepoint. A
// database error rolls the key back and is returned as pe; err is for
// what ends the transaction.
func applyKey(ctx context.Context, tx pgx.Tx, del, ins, key string, row json.RawMessage) (pe *pgconn.PgError, err error) {
	if _, err := tx.Exec(ctx, "SAVEPOINT gb_reapply"); err != nil {
		return nil, err
	}
	_, err = tx.Exec(ctx, del, key)
	if err == nil && row != nil {
		_, err = tx.Exec(ctx, ins, string(row))
	}
	if err == nil {
		_, err = tx.Exec(ctx, "RELEASE SAVEPOINT gb_reapply")
		return nil, err
	}
	if !errors.As(err, &pe) || pg.IsConnectionError(err) {
		return nil, err
	}
	if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT gb_reapply; RELEASE SAVEPOINT gb_reapply"); err != nil {
		return nil, err
	}
	return pe, nil
}
