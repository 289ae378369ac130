package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// ErrConflictAbort means a conflict met the bucardo_abort strategy: the run
// changed nothing. Use errors.Is.
var ErrConflictAbort = errors.New("conflict under bucardo_abort")

// Conflict is one key changed on several sources since their watermarks.
type Conflict struct {
	Schema, Name string
	Key          json.RawMessage // the key columns as a JSON object
	Strategy     string
	Winner       string // "" when the strategy skipped the row (bucardo_skip)
	Losers       []Loser
}

// Loser is a source whose change of a conflicting key did not win.
type Loser struct {
	DB        string          `json:"db"`
	ChangedAt time.Time       `json:"changed_at"`
	Row       json.RawMessage `json:"row"` // null when the row was deleted there
}

// strategy is rel's conflict strategy, else the sync's, else bucardo_latest.
func (r *run) strategy(rel Relation) string {
	switch {
	case rel.ConflictStrategy != "":
		return rel.ConflictStrategy
	case r.s.ConflictStrategy != "":
		return r.s.ConflictStrategy
	}
	return catalog.StrategyLatest
}

// latestAll computes, for bucardo_latest_all_tables, each source's latest
// change over every table of the sync, once per run.
func (r *run) latestAll(ctx context.Context) error {
	r.latest = make([]any, len(r.sources))
	for i, s := range r.sources {
		var latest *time.Time
		for _, rel := range r.s.Relations {
			if rel.Sequence || len(rel.KeyColumns) == 0 || s.last == "" {
				continue
			}
			var t *time.Time
			err := s.tx.QueryRow(ctx, fmt.Sprintf(`SELECT max(changed_at) FROM %s
				WHERE txid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)
				  AND (origin IS NULL OR origin <> $2)`, pg.Ident("gobucardo", capture.DeltaName(rel.Schema, rel.Name))), s.last, r.s.Name).Scan(&t)
			if err != nil {
				return fmt.Errorf("latest change on %s: %w", s.Name, err)
			}
			if t != nil && (latest == nil || t.After(*latest)) {
				latest = t
			}
		}
		if latest != nil {
			r.latest[i] = *latest
		}
	}
	return nil
}

// resolve decides, per key changed on several of the active sources, which
// source's row wins, leaves on each source its winning keys in
// pg_temp.gb_won, reports the conflicts, and returns how many keys each
// source won. Each source's changed keys are in its pg_temp.<changed>
// (see stageKeys). The first active source coordinates: the others'
// changed keys are copied to it and compared there in SQL.
func (r *run) resolve(ctx context.Context, rel Relation, cols *columnSet, changed string, active []*source, tr *TableResult) (map[*source]int64, []json.RawMessage, error) {
	table := rel.Display()
	strategy := r.strategy(rel)
	coord := active[0]
	keyList := identList(rel.KeyColumns, "")
	format := cols.keyFormat()
	r.progress(Progress{Table: table, Phase: "conflicts"})
	parts := []string{fmt.Sprintf("SELECT %s, 0 AS gb_src, changed_at FROM pg_temp.%s", keyList, changed)}
	for i, o := range active[1:] {
		in := fmt.Sprintf("gb_in_%d", i+1)
		if _, err := coord.tx.Exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS pg_temp.%s; CREATE TEMP TABLE %s ON COMMIT DROP AS SELECT %s, changed_at FROM pg_temp.%s WITH NO DATA",
			in, in, keyList, changed)); err != nil {
			return nil, nil, err
		}
		if _, err := r.copyOne(ctx, table, o.endpoint(), fmt.Sprintf("COPY (SELECT %s, changed_at FROM pg_temp.%s) TO STDOUT%s", keyList, changed, format),
			coord.endpoint(), fmt.Sprintf("COPY pg_temp.%s (%s, changed_at) FROM STDIN%s", in, keyList, format)); err != nil {
			return nil, nil, err
		}
		parts = append(parts, fmt.Sprintf("SELECT %s, %d, changed_at FROM pg_temp.%s", keyList, i+1, in))
	}
	names := make([]string, len(active))
	order := make([]int32, len(active))
	latest := make([]any, len(active))
	for i, s := range active {
		names[i], order[i] = s.Name, int32(s.index)
		if r.latest != nil {
			latest[i] = r.latest[s.index]
		}
	}
	code, err := r.conflictCode(rel)
	if err != nil {
		return nil, nil, err
	}
	if code != nil {
		strategy = "customcode " + code.Name
	}
	var args []any
	arg := func(v any, cast string) string {
		args = append(args, v)
		return fmt.Sprintf("($%d::%s)", len(args), cast)
	}
	by := "gb_src" // a plugin decides later
	if code == nil {
		by = r.strategyOrder(strategy, names, order, latest, arg)
	}
	stmts := []string{
		"DROP TABLE IF EXISTS pg_temp.gb_all, pg_temp.gb_win",
		"CREATE TEMP TABLE gb_all ON COMMIT DROP AS " + strings.Join(parts, " UNION ALL "),
	}
	for _, st := range stmts {
		if _, err := coord.tx.Exec(ctx, st); err != nil {
			return nil, nil, fmt.Errorf("compare changed keys of %s: %w", table, err)
		}
	}
	win := fmt.Sprintf(`CREATE TEMP TABLE gb_win ON COMMIT DROP AS
		SELECT DISTINCT ON (%s) %s, gb_src AS winner, count(*) OVER (PARTITION BY %s) AS gb_n,
			false AS gb_merged, NULL::text AS gb_note
		FROM pg_temp.gb_all ORDER BY %s, %s`, keyList, keyList, keyList, keyList, by)
	if _, err := coord.tx.Exec(ctx, win, args...); err != nil {
		return nil, nil, fmt.Errorf("resolve conflicts of %s: %w", table, err)
	}
	var conflicts int64
	if err := coord.tx.QueryRow(ctx, "SELECT count(*) FROM pg_temp.gb_win WHERE gb_n > 1").Scan(&conflicts); err != nil {
		return nil, nil, err
	}
	tr.Conflicts = conflicts
	if conflicts > 0 && strategy == catalog.StrategyAbort {
		return nil, nil, fmt.Errorf("table %s: %d keys changed on several sources: %w", table, conflicts, ErrConflictAbort)
	}
	if strategy == catalog.StrategySkip {
		if _, err := coord.tx.Exec(ctx, "UPDATE pg_temp.gb_win SET winner = NULL WHERE gb_n > 1"); err != nil {
			return nil, nil, err
		}
	}
	var merged []json.RawMessage
	if conflicts > 0 && code != nil {
		if merged, err = r.customResolve(ctx, rel, cols, active, code); err != nil {
			return nil, nil, err
		}
	}
	if conflicts > 0 && r.opts.Conflicts != nil {
		if err := r.reportConflicts(ctx, rel, cols, strategy, active); err != nil {
			return nil, nil, err
		}
	}
	// Each source gets the keys it won.
	won := map[*source]int64{}
	for i, s := range active {
		sel := fmt.Sprintf("SELECT %s FROM pg_temp.gb_win WHERE winner = %d", keyList, i)
		if i == 0 {
			if _, err := coord.tx.Exec(ctx, "DROP TABLE IF EXISTS pg_temp.gb_won"); err != nil {
				return nil, nil, err
			}
			tag, err := coord.tx.Exec(ctx, "CREATE TEMP TABLE gb_won ON COMMIT DROP AS "+sel)
			if err != nil {
				return nil, nil, err
			}
			won[s] = tag.RowsAffected()
			continue
		}
		if _, err := s.tx.Exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS pg_temp.gb_won; CREATE TEMP TABLE gb_won ON COMMIT DROP AS SELECT %s FROM pg_temp.%s WITH NO DATA", keyList, changed)); err != nil {
			return nil, nil, err
		}
		n, err := r.copyOne(ctx, table, coord.endpoint(), "COPY ("+sel+") TO STDOUT"+format,
			s.endpoint(), fmt.Sprintf("COPY pg_temp.gb_won (%s) FROM STDIN%s", keyList, format))
		if err != nil {
			return nil, nil, err
		}
		won[s] = n
	}
	return won, merged, nil
}

// strategyOrder is the ORDER BY of a built-in strategy that puts each key's
// winning change first in pg_temp.gb_all.
func (r *run) strategyOrder(strategy string, names []string, order []int32, latest []any, arg func(any, string) string) string {
	switch strategy {
	case catalog.StrategyLatest, catalog.StrategySkip:
		return "changed_at DESC, " + arg(names, "text[]") + "[gb_src + 1]"
	case catalog.StrategyLatestAllTables:
		return arg(latest, "timestamptz[]") + "[gb_src + 1] DESC NULLS LAST, " + arg(names, "text[]") + "[gb_src + 1]"
	case catalog.StrategySource:
		return arg(order, "int[]") + "[gb_src + 1]"
	case catalog.StrategyRandom:
		return "random()"
	case catalog.StrategyAbort:
		return "gb_src"
	default: // an ordered list of dbs; dbs it does not name come after, latest first
		name := arg(names, "text[]") + "[gb_src + 1]"
		return fmt.Sprintf("coalesce(array_position(%s, %s), 2147483647), changed_at DESC, %s", arg(strings.Fields(strategy), "text[]"), name, name)
	}
}

// copyOne streams one COPY from one connection into another.
func (r *run) copyOne(ctx context.Context, table string, from endpoint, fromSQL string, to endpoint, toSQL string) (int64, error) {
	return r.fanOut(ctx, table, "conflicts", 0, from, fromSQL, []*node{{DB: DB{Name: to.name}, conn: to.conn}}, toSQL)
}

// conflictBatch is how many conflicts reportConflicts gathers at once.
const conflictBatch = 5000

// reportConflicts gathers, for every conflicting key, the winner and each
// loser's row as of its snapshot, and hands them to Options.Conflicts in
// batches, so that memory does not grow with the number of conflicts.
func (r *run) reportConflicts(ctx context.Context, rel Relation, cols *columnSet, strategy string, active []*source) error {
	coord := active[0]
	keyList := identList(rel.KeyColumns, "")
	tbl := pg.Ident(rel.Schema, rel.Name)
	for _, st := range []string{
		"DROP TABLE IF EXISTS pg_temp.gb_conf",
		fmt.Sprintf(`CREATE TEMP TABLE gb_conf ON COMMIT DROP AS SELECT row_number() OVER (ORDER BY %s) AS gb_rn, %s, winner, gb_note
			FROM pg_temp.gb_win WHERE gb_n > 1`, keyList, keyList),
		"CREATE INDEX ON pg_temp.gb_conf (gb_rn)",
		fmt.Sprintf("CREATE INDEX IF NOT EXISTS gb_all_keys ON pg_temp.gb_all (%s)", keyList),
		"ANALYZE pg_temp.gb_conf, pg_temp.gb_all",
	} {
		if _, err := coord.tx.Exec(ctx, st); err != nil {
			return fmt.Errorf("number conflicts of %s: %w", rel.Display(), err)
		}
	}
	for lo := 0; ; lo += conflictBatch {
		rows, err := coord.tx.Query(ctx, fmt.Sprintf(`SELECT %s, c.winner, c.gb_note, a.gb_src, a.changed_at
			FROM pg_temp.gb_conf c JOIN pg_temp.gb_all a USING (%s)
			WHERE c.gb_rn > $1 AND c.gb_rn <= $2 AND a.gb_src IS DISTINCT FROM c.winner ORDER BY c.gb_rn, a.gb_src`, keyJSON(rel.KeyColumns, "c"), keyList),
			lo, lo+conflictBatch)
		if err != nil {
			return fmt.Errorf("read conflicts of %s: %w", rel.Display(), err)
		}
		byKey := map[string]*Conflict{}
		var keys []string
		lost := map[int][]string{} // source -> keys it lost
		for rows.Next() {
			var key string
			var winner *int64
			var note *string
			var src int32
			var at time.Time
			if err := rows.Scan(&key, &winner, &note, &src, &at); err != nil {
				rows.Close()
				return err
			}
			c := byKey[key]
			if c == nil {
				c = &Conflict{Schema: rel.Schema, Name: rel.Name, Key: json.RawMessage(key), Strategy: strategy}
				if note != nil {
					c.Strategy += ": " + *note
				}
				if winner != nil {
					c.Winner = active[*winner].Name
				}
				byKey[key] = c
				keys = append(keys, key)
			}
			c.Losers = append(c.Losers, Loser{DB: active[src].Name, ChangedAt: at})
			lost[int(src)] = append(lost[int(src)], key)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		// Each loser's current row, as it saw it: the keys go as a JSON
		// array, turned back into the table's types by jsonb_populate_record.
		for src, ks := range lost {
			s := active[src]
			rs, err := s.tx.Query(ctx, fmt.Sprintf(`SELECT %s, to_jsonb(t)::text
				FROM jsonb_array_elements($1::jsonb) j CROSS JOIN LATERAL jsonb_populate_record(NULL::%s, j) k
				LEFT JOIN %s t ON %s`, keyJSON(rel.KeyColumns, "k"), tbl, cols.ref(s.Name), keyJoin(rel.KeyColumns, "t", "k")),
				"["+strings.Join(ks, ",")+"]")
			if err != nil {
				return fmt.Errorf("read losing rows of %s on %s: %w", rel.Display(), s.Name, err)
			}
			got := map[string]json.RawMessage{}
			for rs.Next() {
				var k string
				var row *string
				if err := rs.Scan(&k, &row); err != nil {
					rs.Close()
					return err
				}
				if row != nil {
					got[k] = json.RawMessage(*row)
				}
			}
			rs.Close()
			if err := rs.Err(); err != nil {
				return err
			}
			for _, k := range ks {
				c := byKey[k]
				for i := range c.Losers {
					if c.Losers[i].DB == s.Name {
						c.Losers[i].Row = got[k]
					}
				}
			}
		}
		out := make([]Conflict, 0, len(keys))
		for _, k := range keys {
			out = append(out, *byKey[k])
		}
		if err := r.opts.Conflicts(out); err != nil {
			return err
		}
	}
}
