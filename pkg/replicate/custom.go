package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// Handlers are the custom code a run calls, as a plugin host (the kid's
// pkg/pluginhost) builds them from Sync.CustomCode. The zero value has none.
// Keys of Conflict and Exception are a table as "schema.name", or "" for
// the code attached to the whole sync.
type Handlers struct {
	// Conflict decides the conflicts of a table. A table's own code comes
	// first; then the table's own conflict_strategy, when it has one; then
	// the sync's code; then the sync's strategy.
	Conflict map[string]ConflictCode
	// Exception handlers of a table, in order: the table's, then the sync's.
	// The first to answer decides.
	Exception map[string][]ExceptionCode
	// Hooks run in order at their point; the first to cancel stops the run.
	Hooks map[HookPoint][]HookCode
}

// ConflictCode is a named conflict handler.
type ConflictCode struct {
	Name    string
	Handler ConflictHandler
}

// ExceptionCode is a named exception handler.
type ExceptionCode struct {
	Name    string
	Handler ExceptionHandler
}

// HookCode is a named run hook.
type HookCode struct {
	Name    string
	Handler RunHook
}

// ErrCancelled means a run hook cancelled the run, which changed nothing.
// Use errors.Is; errors.As with *CancelledError gives the reason.
var ErrCancelled = errors.New("cancelled by a run hook")

// CancelledError is a run cancelled by the hook Code at Point.
type CancelledError struct {
	Code   string
	Point  HookPoint
	Reason string
}

func (e *CancelledError) Error() string {
	return fmt.Sprintf("customcode %s cancelled the run at %s: %s", e.Code, e.Point, e.Reason)
}

// Is makes errors.Is(err, ErrCancelled) hold.
func (e *CancelledError) Is(target error) bool { return target == ErrCancelled }

// errExceptionRetry is an exception handler asking for the run again.
type errExceptionRetry struct{ msg string }

func (e *errExceptionRetry) Error() string { return e.msg }

// Parked is a row an exception handler set aside: it was not applied to
// TargetDB, which lacks it (or has its old version deleted) until `mcp
// parked retry`.
type Parked struct {
	Sync, Schema, Name string
	SourceDB, TargetDB string
	Key                json.RawMessage // the key columns as a JSON object
	Row                json.RawMessage // the row as the source had it; null when absent
	SQLState, Error    string
	Code               string // the customcode that parked it
}

// hooks calls the hooks of point in order. A cancel at after_sync cannot
// undo the run and is only logged, as are after_sync's errors.
func (r *run) hooks(ctx context.Context, point HookPoint, sum *RunSummary) error {
	for _, h := range r.opts.Handlers.Hooks[point] {
		d, err := h.Handler.Run(ctx, HookEvent{Sync: r.s.Name, Hook: point, Attempt: r.attempt(), Result: sum})
		if point == AfterSync {
			if err != nil || d.Cancel {
				r.log.Warn("after_sync hook", zap.String("customcode", h.Name), zap.String("reason", d.Reason), zap.Error(err))
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("customcode %s at %s: %w", h.Name, point, err)
		}
		if d.Cancel {
			return &CancelledError{Code: h.Name, Point: point, Reason: d.Reason}
		}
	}
	return nil
}

func (r *run) attempt() int { return max(r.opts.Attempt, 1) }

func (r *run) summary(err error) *RunSummary {
	s := &RunSummary{Deletes: r.res.Deletes, Inserts: r.res.Inserts, Conflicts: r.res.Conflicts}
	if err != nil {
		s.Error = err.Error()
	}
	return s
}

// conflictCode returns the code that decides rel's conflicts, if any, and
// an error when the strategy is custom without one.
func (r *run) conflictCode(rel Relation) (*ConflictCode, error) {
	table := rel.Display()
	if c, ok := r.opts.Handlers.Conflict[table]; ok {
		return &c, nil
	}
	if rel.ConflictStrategy != "" && rel.ConflictStrategy != catalog.StrategyCustom {
		return nil, nil
	}
	if c, ok := r.opts.Handlers.Conflict[""]; ok {
		return &c, nil
	}
	if r.strategy(rel) == catalog.StrategyCustom {
		return nil, fmt.Errorf("table %s: conflict_strategy custom needs a conflict customcode: attach one with "+
			"mcp add customcode NAME plugin=PATH whenrun=conflict table=%s (or sync=%s), or choose a built-in strategy",
			table, table, r.s.Name)
	}
	return nil, nil
}

func (r *run) exceptionCode(rel Relation) []ExceptionCode {
	h := r.opts.Handlers.Exception
	return append(append([]ExceptionCode{}, h[rel.Display()]...), h[""]...)
}

// keyJSON is the SQL of the key columns of alias as a JSON object's text.
func keyJSON(keys []string, alias string) string {
	return fmt.Sprintf("(SELECT to_jsonb(x) FROM (SELECT %s) x)::text", identList(keys, alias))
}

// textArray is the SQL of cols of alias as a text[] of their output.
func textArray(cols []string, alias string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = alias + "." + pg.Ident(c) + "::text"
	}
	return "ARRAY[" + strings.Join(parts, ", ") + "]::text[]"
}

// lookedUp is a row read by key: nil when the db has no such row.
type lookedUp map[string][]*string

// lookup reads the rows of keys (key JSON texts) of rel on tx, as text;
// ref names the table there (columnSet.ref).
func lookup(ctx context.Context, q querier, db string, rel Relation, ref string, cols []string, keys []string) (lookedUp, error) {
	tbl := pg.Ident(rel.Schema, rel.Name)
	rows, err := q.Query(ctx, fmt.Sprintf(`SELECT %s, t.ctid IS NOT NULL, %s
		FROM jsonb_array_elements($1::jsonb) j CROSS JOIN LATERAL jsonb_populate_record(NULL::%s, j) k
		LEFT JOIN %s t ON %s`, keyJSON(rel.KeyColumns, "k"), textArray(cols, "t"), tbl, ref, keyJoin(rel.KeyColumns, "t", "k")),
		"["+strings.Join(keys, ",")+"]")
	if err != nil {
		return nil, fmt.Errorf("read rows of %s on %s: %w", rel.Display(), db, err)
	}
	defer rows.Close()
	out := lookedUp{}
	for rows.Next() {
		var k string
		var found bool
		var vals []*string
		if err := rows.Scan(&k, &found, &vals); err != nil {
			return nil, err
		}
		if found {
			out[k] = vals
		}
	}
	return out, rows.Err()
}

// textRow is the text values of the columns names as a Row.
func textRow(cols *columnSet, names []string, vals []*string) Row {
	if vals == nil {
		return nil
	}
	row := make(Row, len(names))
	for i, n := range names {
		row[i] = Column{Name: n, Type: cols.types[n], Value: vals[i]}
	}
	return row
}

// customBatch is how many conflicts customResolve reads at once.
const customBatch = 1000

// pluginCalls is how many calls to a handler a run has in flight at once.
const pluginCalls = 8

// customResolve asks code about every conflicting key of pg_temp.gb_win on
// the coordinator and writes its answers there: the winner, NULL for a
// skip or a merge (gb_merged), and a note for the conflict log. It returns
// the merged rows, as JSON objects of column text, to write everywhere.
func (r *run) customResolve(ctx context.Context, rel Relation, cols *columnSet, active []*source, code *ConflictCode) ([]json.RawMessage, error) {
	coord := active[0]
	keyList := identList(rel.KeyColumns, "")
	table := rel.Display()
	for _, st := range []string{
		"DROP TABLE IF EXISTS pg_temp.gb_cc",
		fmt.Sprintf(`CREATE TEMP TABLE gb_cc ON COMMIT DROP AS SELECT row_number() OVER (ORDER BY %s) AS gb_rn, %s
			FROM pg_temp.gb_win WHERE gb_n > 1`, keyList, keyList),
		"CREATE INDEX ON pg_temp.gb_cc (gb_rn)",
		fmt.Sprintf("CREATE INDEX IF NOT EXISTS gb_all_keys ON pg_temp.gb_all (%s)", keyList),
		"ANALYZE pg_temp.gb_cc, pg_temp.gb_all",
	} {
		if _, err := coord.tx.Exec(ctx, st); err != nil {
			return nil, fmt.Errorf("number conflicts of %s: %w", table, err)
		}
	}
	var base *node // a delta target holds the rows as the previous run left them
	for _, t := range r.targets {
		if t.Role == RoleTarget {
			base = t
			break
		}
	}
	byName := map[string]int{}
	for i, s := range active {
		byName[s.Name] = i
	}
	var merged []json.RawMessage
	for lo := 0; ; lo += customBatch {
		rows, err := coord.tx.Query(ctx, fmt.Sprintf(`SELECT %s, %s, array_agg(a.gb_src ORDER BY a.gb_src), array_agg(a.changed_at ORDER BY a.gb_src)
			FROM pg_temp.gb_cc c JOIN pg_temp.gb_all a USING (%s)
			WHERE c.gb_rn > $1 AND c.gb_rn <= $2 GROUP BY c.gb_rn, %s ORDER BY c.gb_rn`,
			keyJSON(rel.KeyColumns, "c"), textArray(rel.KeyColumns, "c"), keyList, identList(rel.KeyColumns, "c")),
			lo, lo+customBatch)
		if err != nil {
			return nil, fmt.Errorf("read conflicts of %s: %w", table, err)
		}
		type item struct {
			key     string
			keyVals []*string
			srcs    []int32
			ats     []time.Time
		}
		var items []item
		for rows.Next() {
			var it item
			if err := rows.Scan(&it.key, &it.keyVals, &it.srcs, &it.ats); err != nil {
				rows.Close()
				return nil, err
			}
			items = append(items, it)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return merged, nil
		}
		perSource := make([][]string, len(active))
		all := make([]string, len(items))
		for i, it := range items {
			all[i] = it.key
			for _, s := range it.srcs {
				perSource[s] = append(perSource[s], it.key)
			}
		}
		got := make([]lookedUp, len(active))
		for i, ks := range perSource {
			if len(ks) == 0 {
				continue
			}
			if got[i], err = lookup(ctx, active[i].tx, active[i].Name, rel, cols.ref(active[i].Name), cols.names, ks); err != nil {
				return nil, err
			}
		}
		var prev lookedUp
		var prevNames []string // the base's columns of those (strict_checking=false may leave some out there)
		if base != nil {
			prevNames = cols.without(base.Name).names
			if prev, err = lookup(ctx, base.tx, base.Name, rel, cols.ref(base.Name), prevNames, all); err != nil {
				return nil, err
			}
		}
		answers := make([]Resolution, len(items))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(pluginCalls)
		for i, it := range items {
			c := ConflictRow{Sync: r.s.Name, Table: table, Key: textRow(cols, rel.KeyColumns, it.keyVals)}
			if prev != nil {
				c.Previous = textRow(cols, prevNames, prev[it.key])
			}
			for j, s := range it.srcs {
				vals := got[s][it.key]
				c.Sources = append(c.Sources, SourceRow{DB: active[s].Name, Row: textRow(cols, cols.names, vals),
					Deleted: vals == nil, ChangedAt: it.ats[j]})
			}
			g.Go(func() error {
				res, err := code.Handler.Resolve(gctx, c)
				if err != nil {
					return fmt.Errorf("customcode %s: %w", code.Name, err)
				}
				switch res.Action {
				case ResolveAbort:
					return fmt.Errorf("table %s: customcode %s aborted the run at key %s: %s", table, code.Name, it.key, res.Message)
				case ResolveWinner:
					if !slices.ContainsFunc(c.Sources, func(s SourceRow) bool { return s.DB == res.DB }) {
						return fmt.Errorf("table %s: customcode %s chose %q at key %s, which is not a source of the conflict", table, code.Name, res.DB, it.key)
					}
				case ResolveMerge, ResolveSkip:
				default:
					return fmt.Errorf("table %s: customcode %s gave no resolution at key %s", table, code.Name, it.key)
				}
				answers[i] = res
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		type decision struct {
			K json.RawMessage `json:"k"`
			W *int            `json:"w"`
			M bool            `json:"m"`
			N string          `json:"n"`
		}
		ds := make([]decision, len(items))
		for i, a := range answers {
			ds[i] = decision{K: json.RawMessage(items[i].key)}
			switch a.Action {
			case ResolveWinner:
				w := byName[a.DB]
				ds[i].W = &w
			case ResolveSkip:
				ds[i].N = "skipped: " + a.Message
			case ResolveMerge:
				ds[i].M, ds[i].N = true, "merged"
				obj, err := rowJSON(cols, a.Row)
				if err != nil {
					return nil, fmt.Errorf("table %s: customcode %s merged key %s: %w", table, code.Name, items[i].key, err)
				}
				merged = append(merged, obj)
			}
		}
		arg, err := json.Marshal(ds)
		if err != nil {
			return nil, err
		}
		if _, err := coord.tx.Exec(ctx, fmt.Sprintf(`UPDATE pg_temp.gb_win w SET winner = (d->>'w')::int, gb_merged = (d->>'m')::boolean,
				gb_note = nullif(d->>'n', '')
			FROM jsonb_array_elements($1::jsonb) d CROSS JOIN LATERAL jsonb_populate_record(NULL::%s, d->'k') k
			WHERE %s`, pg.Ident(rel.Schema, rel.Name), keyJoin(rel.KeyColumns, "w", "k")), string(arg)); err != nil {
			return nil, fmt.Errorf("record the decisions of customcode %s on %s: %w", code.Name, table, err)
		}
	}
}

// applyMerged writes the merged rows (JSON objects of column text) to every
// dest: their keys deleted, the rows inserted.
func (r *run) applyMerged(ctx context.Context, rel Relation, cols *columnSet, merged []json.RawMessage, dests []*node, tr *TableResult) error {
	if len(merged) == 0 {
		return nil
	}
	tbl := pg.Ident(rel.Schema, rel.Name)
	keyList := identList(rel.KeyColumns, "")
	arg, err := json.Marshal(merged)
	if err != nil {
		return err
	}
	var sources []string
	for _, s := range r.sources {
		sources = append(sources, s.Name)
	}
	for _, t := range dests {
		// Merged rows have the columns every source has, less those t lacks.
		list := cols.without(append(sources, t.Name)...).selectList("")
		stmts := []string{
			"DROP TABLE IF EXISTS pg_temp.gb_merge",
			fmt.Sprintf("CREATE TEMP TABLE gb_merge ON COMMIT DROP AS SELECT %s FROM jsonb_populate_recordset(NULL::%s, $1::jsonb)", list, tbl),
		}
		for i, st := range stmts {
			var args []any
			if i == 1 {
				args = []any{string(arg)}
			}
			if _, err := t.tx.Exec(ctx, st, args...); err != nil {
				return fmt.Errorf("stage merged rows of %s on %s: %w", rel.Display(), t.Name, err)
			}
		}
		tag, err := t.tx.Exec(ctx, fmt.Sprintf("DELETE FROM %s t USING pg_temp.gb_merge k WHERE %s", cols.ref(t.Name), keyJoin(rel.KeyColumns, "t", "k")))
		if err != nil {
			return fmt.Errorf("delete merged rows of %s on %s: %w", rel.Display(), t.Name, err)
		}
		tr.Deletes += tag.RowsAffected()
		ins := fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM pg_temp.gb_merge", tbl, list, list)
		if t.source {
			ins += fmt.Sprintf(" ON CONFLICT (%s) DO NOTHING", keyList)
		}
		if tag, err = t.tx.Exec(ctx, ins); err != nil {
			return fmt.Errorf("insert merged rows of %s on %s: %w", rel.Display(), t.Name, err)
		}
		tr.Inserts += tag.RowsAffected()
		if err := r.makeDelta(ctx, rel, t, "SELECT %s FROM pg_temp.gb_merge"); err != nil {
			return err
		}
	}
	return nil
}

// rowJSON is a merged row as a JSON object of the text of each column
// copied, which jsonb_populate_record turns back into the table's types.
func rowJSON(cols *columnSet, row Row) (json.RawMessage, error) {
	obj := make(map[string]any, len(cols.names))
	for _, n := range cols.names {
		c, ok := row.Get(n)
		if !ok {
			return nil, fmt.Errorf("the merged row lacks column %s", pg.Display(n))
		}
		text := c.Value
		switch t := pg.BaseType(cols.types[n]); {
		case text != nil && (t == "json" || t == "jsonb") && json.Valid([]byte(*text)):
			obj[n] = json.RawMessage(*text) // a string would be stored as a JSON string
		default:
			obj[n] = text
		}
	}
	return json.Marshal(obj)
}

// querier reads rows: a transaction of the run.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}
