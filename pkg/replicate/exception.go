package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// failure is a staged row (its gb_rn) that could not be inserted.
type failure struct {
	rn  int64
	err *pgconn.PgError
}

// insertHandled inserts the rows staged in pg_temp.gb_rows on t, under a
// savepoint. When that fails on a database error, it finds the failing rows
// by inserting in halves (each under its own savepoint), keeps the rows that
// go in, and asks the exception handlers, in order, about the others, a
// group per SQLSTATE and constraint: retry fails the run so that it is tried
// again, skip_rows parks them, fail fails the run.
func (r *run) insertHandled(ctx context.Context, rel Relation, cols *columnSet, s *source, t *node, insert func(where string) string, count int64, exc []ExceptionCode) (int64, error) {
	table := rel.Display()
	exec := func(sql string) (pgconn.CommandTag, error) { return t.tx.Exec(ctx, sql) }
	if _, err := exec("SAVEPOINT gb_ins"); err != nil {
		return 0, err
	}
	tag, err := exec(insert(""))
	if err == nil {
		_, err = exec("RELEASE SAVEPOINT gb_ins")
		return tag.RowsAffected(), err
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return 0, fmt.Errorf("insert changed rows of %s on %s: %w", table, t.Name, err)
	}
	r.log.Info("insert failed, looking for the rows at fault", zap.String("table", table), zap.String("db", t.Name), zap.Error(err))
	if _, err := exec("ROLLBACK TO SAVEPOINT gb_ins; RELEASE SAVEPOINT gb_ins"); err != nil {
		return 0, err
	}
	if _, err := exec("ALTER TABLE pg_temp.gb_rows ADD COLUMN gb_rn bigint GENERATED ALWAYS AS IDENTITY"); err != nil {
		return 0, fmt.Errorf("number staged rows of %s on %s: %w", table, t.Name, err)
	}
	var inserted int64
	var failed []failure
	var bisect func(lo, hi int64) error
	bisect = func(lo, hi int64) error {
		if _, err := exec("SAVEPOINT gb_part"); err != nil {
			return err
		}
		tag, err := exec(insert(fmt.Sprintf(" WHERE gb_rn BETWEEN %d AND %d", lo, hi)))
		if err == nil {
			inserted += tag.RowsAffected()
			_, err = exec("RELEASE SAVEPOINT gb_part")
			return err
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			return fmt.Errorf("insert changed rows of %s on %s: %w", table, t.Name, err)
		}
		if _, err := exec("ROLLBACK TO SAVEPOINT gb_part; RELEASE SAVEPOINT gb_part"); err != nil {
			return err
		}
		if lo == hi {
			failed = append(failed, failure{rn: lo, err: pe})
			return nil
		}
		mid := lo + (hi-lo)/2
		if err := bisect(lo, mid); err != nil {
			return err
		}
		return bisect(mid+1, hi)
	}
	if err := bisect(1, count); err != nil {
		return 0, err
	}
	if len(failed) == 0 {
		return inserted, nil // the failure came from rows together, not one alone: a race that is gone
	}
	// The rows at fault, grouped by SQLSTATE and constraint in order.
	type group struct {
		first *pgconn.PgError
		rns   []int64
	}
	var groups []*group
	index := map[string]*group{}
	for _, f := range failed {
		k := f.err.Code + "\x00" + f.err.ConstraintName
		g := index[k]
		if g == nil {
			g = &group{first: f.err}
			index[k] = g
			groups = append(groups, g)
		}
		g.rns = append(g.rns, f.rn)
	}
	for _, g := range groups {
		rows, err := t.tx.Query(ctx, fmt.Sprintf(`SELECT %s, %s, (to_jsonb(g) - 'gb_rn')::text FROM pg_temp.gb_rows g
			WHERE gb_rn = ANY($1) ORDER BY gb_rn`, keyJSON(rel.KeyColumns, "g"), textArray(rel.KeyColumns, "g")), g.rns)
		if err != nil {
			return 0, fmt.Errorf("read the failing rows of %s on %s: %w", table, t.Name, err)
		}
		var keys []Row
		var parked []Parked
		for rows.Next() {
			var key, row string
			var vals []*string
			if err := rows.Scan(&key, &vals, &row); err != nil {
				rows.Close()
				return 0, err
			}
			keys = append(keys, textRow(cols, rel.KeyColumns, vals))
			parked = append(parked, Parked{Sync: r.s.Name, Schema: rel.Schema, Name: rel.Name, SourceDB: s.Name, TargetDB: t.Name,
				Key: json.RawMessage(key), Row: json.RawMessage(row), SQLState: g.first.Code, Error: pgText(g.first)})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, err
		}
		e := Exception{Sync: r.s.Name, Table: table, DB: t.Name, SQLState: g.first.Code, Message: g.first.Message,
			Detail: g.first.Detail, Constraint: g.first.ConstraintName, Keys: keys, Attempt: r.attempt()}
		h := exc[0]
		d, err := h.Handler.Handle(ctx, e)
		if err != nil {
			return 0, fmt.Errorf("table %s on %s: %s; customcode %s: %w", table, t.Name, pgText(g.first), h.Name, err)
		}
		switch d.Action {
		case ExceptionRetry:
			return 0, &errExceptionRetry{msg: fmt.Sprintf("table %s on %s: %s; customcode %s asked for a retry (attempt %d): %s",
				table, t.Name, pgText(g.first), h.Name, r.attempt(), d.Message)}
		case ExceptionSkipRows:
			if r.opts.Parked == nil {
				return 0, fmt.Errorf("table %s on %s: %s; customcode %s would park %d rows, but this run has nowhere to record them",
					table, t.Name, pgText(g.first), h.Name, len(parked))
			}
			for i := range parked {
				parked[i].Code = h.Name
			}
			if err := r.opts.Parked(parked); err != nil {
				return 0, err
			}
			r.res.Parked += int64(len(parked))
			r.log.Warn("rows parked", zap.String("table", table), zap.String("db", t.Name), zap.Int("rows", len(parked)),
				zap.String("customcode", h.Name), zap.String("why", d.Message))
		default: // ExceptionFail
			return 0, fmt.Errorf("table %s on %s: %s; customcode %s failed the run: %s", table, t.Name, pgText(g.first), h.Name, d.Message)
		}
	}
	return inserted, nil
}

// pgText is a database error as one line: message, detail, SQLSTATE.
func pgText(e *pgconn.PgError) string {
	s := e.Message
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s + " [SQLSTATE " + e.Code + "]"
}
