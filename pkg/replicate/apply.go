package replicate

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// endpoint is a connection a COPY reads from or writes to.
type endpoint struct {
	name string
	conn *pgx.Conn
}

// othersThan is every writer but the given source's own.
func (r *run) othersThan(s *source) []*node {
	var out []*node
	for _, w := range r.writers {
		if s == nil || w != s.writer {
			out = append(out, w)
		}
	}
	return out
}

// sourceWritersBut is the writers of every source but s (none with one
// source).
func (r *run) sourceWritersBut(s *source) []*node {
	var out []*node
	for _, o := range r.sources {
		if o != s && o.writer != nil {
			out = append(out, o.writer)
		}
	}
	return out
}

// sequence gives every other db the highest value of the sources.
func (r *run) sequence(ctx context.Context, rel Relation) (TableResult, error) {
	tr := TableResult{Table: rel.Display(), Mode: "sequence"}
	r.progress(Progress{Table: tr.Table, Phase: "sequence"})
	seq := pg.Ident(rel.Schema, rel.Name)
	var best *source
	var last int64
	var called bool
	for _, s := range r.sources {
		var v int64
		var c bool
		if err := s.tx.QueryRow(ctx, "SELECT last_value, is_called FROM "+seq).Scan(&v, &c); err != nil {
			return tr, fmt.Errorf("read sequence %s on %s: %w", tr.Table, s.Name, err)
		}
		if best == nil || v > last || v == last && c && !called {
			best, last, called = s, v, c
		}
	}
	for _, t := range r.othersThan(best) {
		var tl int64
		var tc bool
		if err := t.tx.QueryRow(ctx, "SELECT last_value, is_called FROM "+seq).Scan(&tl, &tc); err != nil {
			return tr, fmt.Errorf("read sequence %s on %s: %w", tr.Table, t.Name, err)
		}
		if tl == last && tc == called {
			continue
		}
		if _, err := t.tx.Exec(ctx, "SELECT setval($1::regclass, $2, $3)", seq, last, called); err != nil {
			return tr, fmt.Errorf("set sequence %s on %s: %w", tr.Table, t.Name, err)
		}
		tr.Keys++ // dbs whose value changed
	}
	return tr, nil
}

// table replicates one table: in full to fullcopy targets (and for
// onetimecopy, and after a truncate on a source), by delta otherwise.
func (r *run) table(ctx context.Context, rel Relation) (TableResult, error) {
	tr := TableResult{Table: rel.Display(), Mode: "none"}
	cols, err := r.columns(ctx, rel)
	if err != nil {
		return tr, err
	}
	// The source that truncated last wins: every other db gets its table whole.
	var truncator *source
	if len(rel.KeyColumns) > 0 {
		if truncator, err = r.lastTruncate(ctx, rel); err != nil {
			return tr, err
		}
	}
	first := r.sources[0]
	var full, delta, lagging []*node
	for _, t := range r.targets {
		if t.Role == RoleFullcopy || truncator != nil || r.s.OneTimeCopy == 1 {
			full = append(full, t)
			continue
		}
		whole := false // the whole table first
		if r.s.OneTimeCopy == 2 {
			if err := t.tx.QueryRow(ctx, "SELECT NOT EXISTS (SELECT 1 FROM "+cols.ref(t.Name)+")").Scan(&whole); err != nil {
				return tr, fmt.Errorf("look at %s on %s: %w", tr.Table, t.Name, err)
			}
		}
		if whole && !t.behind {
			full = append(full, t)
			continue
		}
		if t.behind && len(rel.KeyColumns) > 0 && !whole {
			// A target that missed runs also takes the keys changed since
			// its own watermark; or, if a source truncated the table since,
			// the whole table; then this run's keys.
			if whole, err = r.truncatedWhileBehind(ctx, rel, t); err != nil {
				return tr, err
			}
			if !whole {
				lagging = append(lagging, t)
			}
		}
		if whole {
			full = append(full, t)
		}
		delta = append(delta, t)
	}
	if len(delta) > 0 && len(rel.KeyColumns) == 0 {
		return tr, fmt.Errorf("table %s has no key, so it cannot go to target %s by delta: make that db a fullcopy target", tr.Table, delta[0].Name)
	}
	from := first
	if truncator != nil {
		tr.Truncated = true
		from = truncator
		if r.multi() {
			// The other sources take the truncating source's table too;
			// their changes to it in this run are overruled.
			full = append(full, r.sourceWritersBut(truncator)...)
			delta = nil
		}
	}
	if len(full) > 0 {
		tr.Mode = "fullcopy"
		for _, g := range cols.between(from.Name, full) {
			d, n, err := r.fullCopy(ctx, rel, g.cols, from, g.dests)
			if err != nil {
				return tr, err
			}
			tr.Deletes += d
			tr.Inserts += n
		}
		if err := r.clearPartitionNotes(ctx, rel, cols, from, full); err != nil {
			return tr, err
		}
	}
	if len(delta) > 0 || (r.multi() && truncator == nil && len(rel.KeyColumns) > 0) {
		if tr.Mode == "none" {
			tr.Mode = "delta"
		} else {
			tr.Mode = "delta+fullcopy"
		}
		if err := r.deltaCopy(ctx, rel, cols, delta, lagging, &tr); err != nil {
			return tr, err
		}
	}
	return tr, nil
}

// clearPartitionNotes forgets, once rel was copied whole from source from
// to dests, the partitions attached or detached on from, and on the
// sources among dests, which now hold from's rows (see
// capture.PartitionNote).
func (r *run) clearPartitionNotes(ctx context.Context, rel Relation, cols *columnSet, from *source, dests []*node) error {
	if !cols.partitioned[from.Name] {
		return nil // nothing to note
	}
	if err := capture.ClearPartitionNotes(ctx, from.tx, rel.Schema, rel.Name); err != nil {
		return fmt.Errorf("forget the partition notes of %s on %s: %w", rel.Display(), from.Name, err)
	}
	for _, t := range dests {
		if t.source {
			if err := capture.ClearPartitionNotes(ctx, t.tx, rel.Schema, rel.Name); err != nil {
				return fmt.Errorf("forget the partition notes of %s on %s: %w", rel.Display(), t.Name, err)
			}
		}
	}
	return nil
}

// truncatedWhileBehind reports whether a source truncated rel after target
// t stopped and before where this run catches it up to.
func (r *run) truncatedWhileBehind(ctx context.Context, rel Relation, t *node) (bool, error) {
	for _, s := range r.sources {
		if s.upTo[t.Name] == "" {
			continue // in step on s
		}
		var truncated bool
		err := s.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM gobucardo.truncate_log
			WHERE schema_name = $1 AND rel_name = $2
			  AND txid >= pg_snapshot_xmin($3::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, $3::pg_snapshot)
			  AND pg_visible_in_snapshot(txid, $4::pg_snapshot))`, rel.Schema, rel.Name, s.behind[t.Name], s.upTo[t.Name]).Scan(&truncated)
		if err != nil {
			return false, fmt.Errorf("read truncates of %s on %s: %w", rel.Display(), s.Name, err)
		}
		if truncated {
			return true, nil
		}
	}
	return false, nil
}

// lastTruncate returns the source that truncated rel last since its
// watermark, or nil.
func (r *run) lastTruncate(ctx context.Context, rel Relation) (*source, error) {
	var winner *source
	var when time.Time
	for _, s := range r.sources {
		if s.last == "" {
			continue
		}
		var at *time.Time
		err := s.tx.QueryRow(ctx, `SELECT max(at) FROM gobucardo.truncate_log
			WHERE schema_name = $1 AND rel_name = $2
			  AND txid >= pg_snapshot_xmin($3::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, $3::pg_snapshot)`,
			rel.Schema, rel.Name, s.last).Scan(&at)
		if err != nil {
			return nil, fmt.Errorf("read truncates of %s on %s: %w", rel.Display(), s.Name, err)
		}
		if at != nil && (winner == nil || at.After(when)) {
			winner, when = s, *at
		}
	}
	return winner, nil
}

// empty removes every row of rel on t as the sync's deletemethod says.
func (r *run) empty(ctx context.Context, rel Relation, cols *columnSet, t *node) (int64, error) {
	tbl := cols.ref(t.Name)
	var sql string
	switch r.s.DeleteMethod {
	case "truncate":
		sql = "TRUNCATE " + tbl
	case "truncate_cascade":
		sql = "TRUNCATE " + tbl + " CASCADE"
	default:
		sql = "DELETE FROM " + tbl
	}
	tag, err := t.tx.Exec(ctx, sql)
	if err != nil {
		return 0, fmt.Errorf("empty %s on %s: %w", rel.Display(), t.Name, err)
	}
	return tag.RowsAffected(), nil
}

func (r *run) fullCopy(ctx context.Context, rel Relation, cols *columnSet, from *source, targets []*node) (deletes, inserts int64, err error) {
	table := rel.Display()
	r.progress(Progress{Table: table, Phase: "fullcopy"})
	for _, t := range targets {
		// makedelta: the rows that go away are changes too.
		if err := r.makeDelta(ctx, rel, t, "SELECT %s FROM "+cols.ref(t.Name)); err != nil {
			return 0, 0, err
		}
		n, err := r.empty(ctx, rel, cols, t)
		if err != nil {
			return 0, 0, err
		}
		deletes += n
	}
	var total int64
	if err := from.tx.QueryRow(ctx, "SELECT count(*) FROM "+cols.ref(from.Name)).Scan(&total); err != nil {
		return 0, 0, fmt.Errorf("count %s on %s: %w", table, from.Name, err)
	}
	srcSQL := fmt.Sprintf("COPY (SELECT %s FROM %s t) TO STDOUT%s", cols.selectList("t"), cols.ref(from.Name), cols.format())
	n, err := r.fanOut(ctx, table, "copy", total, from.endpoint(), srcSQL, targets, cols.copyIn(rel))
	if err != nil {
		return 0, 0, err
	}
	for _, t := range targets {
		if err := r.makeDelta(ctx, rel, t, "SELECT %s FROM "+cols.ref(t.Name)); err != nil {
			return 0, 0, err
		}
	}
	r.rows += n
	return deletes, n, r.maybeCommitWriters(ctx)
}

// deltaCopy applies the keys changed on the sources since their
// watermarks. Each source's changed keys are staged on it; keys changed on
// several sources are conflicts, resolved per row; each source's winning
// keys are deleted on every other db and their current rows copied there.
// targets are the targets that take this table by delta (with several
// sources, the other sources always do). Each of lagging (a target that
// missed runs) first takes, from each source, the keys changed there from
// its own watermark to the sync's: the other dbs have them already, every
// source holds the same row for each of them (but for those changed since,
// which this run then applies as usual, after).
func (r *run) deltaCopy(ctx context.Context, rel Relation, cols *columnSet, targets, lagging []*node, tr *TableResult) error {
	table := rel.Display()
	r.progress(Progress{Table: table, Phase: "keys"})
	changed := keysTable(rel, cols, true)
	for _, t := range lagging {
		for _, s := range r.sources {
			if s.upTo[t.Name] == "" {
				continue // in step on s
			}
			n, err := r.stageKeys(ctx, rel, cols, s, s.behind[t.Name], s.upTo[t.Name])
			if err != nil {
				return err
			}
			if n == 0 {
				continue
			}
			tr.Keys += n
			r.log.Debug("catching up a target", zap.String("db", t.Name), zap.String("table", table), zap.String("from", s.Name), zap.Int64("keys", n))
			if err := r.applyFrom(ctx, rel, cols, s, changed, n, []*node{t}, tr); err != nil {
				return err
			}
		}
	}
	var active []*source
	counts := map[*source]int64{}
	for _, s := range r.sources {
		n, err := r.stageKeys(ctx, rel, cols, s, s.last, "")
		if err != nil {
			return err
		}
		if n > 0 {
			active = append(active, s)
			counts[s] = n
			tr.Keys += n
		}
	}
	if len(active) == 0 {
		return nil
	}
	won := map[*source]int64{active[0]: counts[active[0]]}
	table0 := changed
	var merged []json.RawMessage
	if len(active) > 1 {
		var err error
		if won, merged, err = r.resolve(ctx, rel, cols, changed, active, tr); err != nil {
			return err
		}
		table0 = "gb_won"
	}
	for _, s := range active {
		n := won[s]
		if n == 0 {
			continue
		}
		dests := targets
		if r.multi() {
			dests = append(append([]*node{}, targets...), r.sourceWritersBut(s)...)
		}
		if len(dests) == 0 {
			continue
		}
		if err := r.applyFrom(ctx, rel, cols, s, table0, n, dests, tr); err != nil {
			return err
		}
	}
	if len(merged) > 0 {
		dests := append(append([]*node{}, targets...), r.sourceWritersBut(nil)...)
		if err := r.applyMerged(ctx, rel, cols, merged, dests, tr); err != nil {
			return err
		}
	}
	return nil
}

// stageKeys fills s's temporary table of rel's changed keys (keysTable)
// with the keys changed since the watermark from (not those this sync
// wrote there itself), up to the snapshot upTo when given, with their
// latest change time. The index range on txid keeps it fast whatever the
// statistics say.
func (r *run) stageKeys(ctx context.Context, rel Relation, cols *columnSet, s *source, from, upTo string) (int64, error) {
	if from == "" {
		return 0, nil
	}
	delta := pg.Ident("gobucardo", capture.DeltaName(rel.Schema, rel.Name))
	keyList := identList(rel.KeyColumns, "")
	changed := keysTable(rel, cols, true)
	// A kept table is emptied by the same statement that fills it: its
	// DELETE sees none of the rows the INSERT adds.
	empty := fmt.Sprintf("WITH gb_gone AS (DELETE FROM pg_temp.%s) ", changed)
	if !s.temps[changed] {
		if err := useKeysTable(ctx, s.tx, s.temps, changed, rel, cols, true); err != nil {
			return 0, fmt.Errorf("stage changed keys of %s on %s: %w", rel.Display(), s.Name, err)
		}
		empty = ""
	}
	bound, args := "", []any{from, r.s.Name}
	if upTo != "" {
		bound, args = " AND pg_visible_in_snapshot(txid, $3::pg_snapshot)", append(args, upTo)
	}
	tag, err := s.tx.Exec(ctx, fmt.Sprintf(`%sINSERT INTO pg_temp.%s (%s, changed_at)
		SELECT %s, max(changed_at) FROM %s
		WHERE txid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)
		  AND (origin IS NULL OR origin <> $2)%s
		GROUP BY %s`, empty, changed, keyList, keyList, delta, bound, keyList), args...)
	if err != nil {
		return 0, fmt.Errorf("read changed keys of %s on %s: %w", rel.Display(), s.Name, err)
	}
	return tag.RowsAffected(), nil
}

// applyFrom applies count keys of keyTable on s to dests, in pieces of
// commit_every rows when set.
func (r *run) applyFrom(ctx context.Context, rel Relation, cols *columnSet, s *source, keyTable string, count int64, dests []*node, tr *TableResult) error {
	piece := count
	chunked := r.s.CommitEvery > 0 && int64(r.s.CommitEvery) < count
	if chunked {
		// Numbered in a table of this run's: the keys' table may be kept.
		piece = int64(r.s.CommitEvery)
		stmts := []string{
			"DROP TABLE IF EXISTS pg_temp.gb_numbered",
			"CREATE TEMP TABLE gb_numbered ON COMMIT DROP AS SELECT *, row_number() OVER () AS gb_rn FROM pg_temp." + keyTable,
			"CREATE INDEX ON pg_temp.gb_numbered (gb_rn)",
		}
		for _, st := range stmts {
			if _, err := s.tx.Exec(ctx, st); err != nil {
				return fmt.Errorf("number keys of %s on %s: %w", rel.Display(), s.Name, err)
			}
		}
		keyTable = "gb_numbered"
	}
	// A few keys are sized well enough by their pages (see useKeysTable);
	// analyzing them at every run would write pg_statistic each time.
	if count > analyzeKeys {
		if _, err := s.tx.Exec(ctx, "ANALYZE pg_temp."+keyTable); err != nil {
			return err
		}
	}
	for lo := int64(0); lo < count; lo += piece {
		where := ""
		if chunked {
			where = fmt.Sprintf(" WHERE k.gb_rn > %d AND k.gb_rn <= %d", lo, lo+piece)
		}
		for _, g := range cols.between(s.Name, dests) {
			d, n, err := r.applyKeys(ctx, rel, g.cols, s, keyTable, g.dests, where, min(piece, count-lo))
			if err != nil {
				return err
			}
			tr.Deletes += d
			tr.Inserts += n
			r.rows += d + n
		}
		if err := r.maybeCommitWriters(ctx); err != nil {
			return err
		}
	}
	return nil
}

// applyKeys copies keys (those where selects) of keyTable on s to each
// dest, deletes them there, and copies their current rows from s.
func (r *run) applyKeys(ctx context.Context, rel Relation, cols *columnSet, s *source, keyTable string, dests []*node, where string, count int64) (deletes, inserts int64, err error) {
	table := rel.Display()
	tbl := pg.Ident(rel.Schema, rel.Name)
	keyList := identList(rel.KeyColumns, "")
	keys := keysTable(rel, cols, false)
	for _, t := range dests {
		if err := useKeysTable(ctx, t.tx, t.temps, keys, rel, cols, false); err != nil {
			return 0, 0, fmt.Errorf("stage keys of %s on %s: %w", table, t.Name, err)
		}
	}
	keyFormat := cols.keyFormat()
	srcKeys := fmt.Sprintf("COPY (SELECT %s FROM pg_temp.%s k%s) TO STDOUT%s", identList(rel.KeyColumns, "k"), keyTable, where, keyFormat)
	if _, err := r.fanOut(ctx, table, "keys", count, s.endpoint(), srcKeys, dests, "COPY pg_temp."+keys+" ("+keyList+") FROM STDIN"+keyFormat); err != nil {
		return 0, 0, err
	}
	r.progress(Progress{Table: table, Phase: "delete", Total: count})
	on := keyJoin(rel.KeyColumns, "t", "k")
	exc := r.exceptionCode(rel)
	// A source is written in place (writeInPlace) once its rows are staged;
	// with exception handlers, rows are deleted and inserted one group at a
	// time instead.
	inPlace := func(t *node) bool { return t.source && len(exc) == 0 }
	for _, t := range dests {
		if count > analyzeKeys {
			if _, err := t.tx.Exec(ctx, "ANALYZE pg_temp."+keys); err != nil {
				return 0, 0, err
			}
		}
		if inPlace(t) {
			continue
		}
		tag, err := t.tx.Exec(ctx, fmt.Sprintf("DELETE FROM %s t USING pg_temp.%s k WHERE %s", cols.ref(t.Name), keys, on))
		if err != nil {
			return 0, 0, fmt.Errorf("delete changed rows of %s on %s: %w", table, t.Name, err)
		}
		deletes += tag.RowsAffected()
	}
	srcRows := fmt.Sprintf("COPY (SELECT %s FROM %s t JOIN pg_temp.%s k ON %s%s) TO STDOUT%s",
		cols.selectList("t"), cols.ref(s.Name), keyTable, on, where, cols.format())
	// Rows go through pg_temp.gb_rows where an INSERT may fail without
	// breaking the COPY: on sources (see node.source), and everywhere when
	// exception handlers may have to set rows aside.
	staged := func(t *node) bool { return t.source || len(exc) > 0 }
	for _, t := range dests {
		if !staged(t) {
			continue
		}
		for _, st := range []string{"DROP TABLE IF EXISTS pg_temp.gb_rows",
			fmt.Sprintf("CREATE TEMP TABLE gb_rows ON COMMIT DROP AS SELECT %s FROM %s WITH NO DATA", cols.selectList(""), cols.ref(t.Name))} {
			if _, err := t.tx.Exec(ctx, st); err != nil {
				return 0, 0, fmt.Errorf("stage rows of %s on %s: %w", table, t.Name, err)
			}
		}
	}
	counts, err := r.fanOutTo(ctx, table, "copy", count, s.endpoint(), srcRows, dests, func(t *node) string {
		if staged(t) {
			return fmt.Sprintf("COPY pg_temp.gb_rows (%s) FROM STDIN%s", cols.selectList(""), cols.format())
		}
		return cols.copyIn(rel)
	})
	if err != nil {
		return 0, 0, err
	}
	var n int64
	for i, t := range dests {
		if !staged(t) {
			n += counts[i]
			continue
		}
		insert := func(where string) string {
			sql := fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM pg_temp.gb_rows", tbl, cols.selectList(""), cols.selectList("")) + where
			if t.source {
				sql += " ON CONFLICT (" + keyList + ") DO NOTHING"
			}
			return sql
		}
		if inPlace(t) {
			d, got, err := r.writeInPlace(ctx, rel, cols, t, keys, insert(""))
			if err != nil {
				return 0, 0, err
			}
			deletes += d
			n += got
			continue
		}
		if len(exc) > 0 {
			got, err := r.insertHandled(ctx, rel, cols, s, t, insert, counts[i], exc)
			if err != nil {
				return 0, 0, err
			}
			n += got
			continue
		}
		tag, err := t.tx.Exec(ctx, insert(""))
		if err != nil {
			return 0, 0, fmt.Errorf("insert changed rows of %s on %s: %w", table, t.Name, err)
		}
		n += tag.RowsAffected()
	}
	for _, t := range dests {
		if err := r.makeDelta(ctx, rel, t, "SELECT %s FROM pg_temp."+keys); err != nil {
			return 0, 0, err
		}
	}
	return deletes, n, nil
}

// writeInPlace applies the rows staged in pg_temp.gb_rows for the keys of
// pg_temp.<keys> to source t: a row that exists is updated in place, the
// others are inserted (insert, which keeps a row the application wrote
// meanwhile), and a key the winner no longer has is deleted. An
// application UPDATE on t that waits for one of these rows then applies
// on top of it once the run commits, and the next run carries it on;
// after a delete and insert it would find its row deleted and update
// nothing. An update that collides half way with another unique index
// (two rows swapping a value) falls back to delete and insert. An updated
// row counts as one delete and one insert, as before.
func (r *run) writeInPlace(ctx context.Context, rel Relation, cols *columnSet, t *node, keys, insert string) (deletes, inserts int64, err error) {
	table := rel.Display()
	var set []string
	for _, c := range cols.names {
		if !slices.Contains(rel.KeyColumns, c) {
			set = append(set, fmt.Sprintf("%s = r.%s", pg.Ident(c), pg.Ident(c)))
		}
	}
	// Without an in-place update, every key is deleted and its row inserted.
	del := fmt.Sprintf("DELETE FROM %s t USING pg_temp.%s k WHERE %s", cols.ref(t.Name), keys, keyJoin(rel.KeyColumns, "t", "k"))
	if len(set) > 0 {
		updated, ok, err := r.updateInPlace(ctx, t, fmt.Sprintf("UPDATE %s t SET %s FROM pg_temp.gb_rows r WHERE %s",
			cols.ref(t.Name), strings.Join(set, ", "), keyJoin(rel.KeyColumns, "t", "r")))
		if err != nil {
			return 0, 0, fmt.Errorf("update changed rows of %s on %s: %w", table, t.Name, err)
		}
		if ok {
			deletes, inserts = updated, updated
			del += fmt.Sprintf(" AND NOT EXISTS (SELECT FROM pg_temp.gb_rows r WHERE %s)", keyJoin(rel.KeyColumns, "r", "k"))
		}
	}
	tag, err := t.tx.Exec(ctx, del)
	if err != nil {
		return 0, 0, fmt.Errorf("delete changed rows of %s on %s: %w", table, t.Name, err)
	}
	deletes += tag.RowsAffected()
	if tag, err = t.tx.Exec(ctx, insert); err != nil {
		return 0, 0, fmt.Errorf("insert changed rows of %s on %s: %w", table, t.Name, err)
	}
	return deletes, inserts + tag.RowsAffected(), nil
}

// updateInPlace runs update under a savepoint. ok is false, with nothing
// changed, when it broke an integrity constraint (SQLSTATE class 23).
func (r *run) updateInPlace(ctx context.Context, t *node, update string) (updated int64, ok bool, err error) {
	if _, err := t.tx.Exec(ctx, "SAVEPOINT gb_in_place"); err != nil {
		return 0, false, err
	}
	tag, err := t.tx.Exec(ctx, update)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		_, err = t.tx.Exec(ctx, "RELEASE SAVEPOINT gb_in_place")
		return tag.RowsAffected(), err == nil, err
	case errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "23"):
		r.log.Debug("in-place update collided: deleting and inserting instead",
			zap.String("db", t.Name), zap.String("error", pgErr.Message))
		_, err = t.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT gb_in_place")
		return 0, false, err
	default:
		return 0, false, err
	}
}

// makeDelta records, on a db with makedelta, the keys that keysSQL (with
// %s for the key column list) selects as deltas of this sync, so that other
// syncs reading the db carry them on, and kicks those syncs. A db without
// capture of the table has nothing to record into.
func (r *run) makeDelta(ctx context.Context, rel Relation, t *node, keysSQL string) error {
	on := t.MakeDelta
	if rel.MakeDelta != nil {
		on = *rel.MakeDelta
	}
	if !on || len(rel.KeyColumns) == 0 {
		return nil
	}
	delta := pg.Ident("gobucardo", capture.DeltaName(rel.Schema, rel.Name))
	var exists bool
	if err := t.tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", delta).Scan(&exists); err != nil || !exists {
		return err
	}
	keyList := identList(rel.KeyColumns, "")
	if _, err := t.tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s (%s, origin) SELECT %s, $1 FROM (%s) k", delta, keyList, keyList,
		fmt.Sprintf(keysSQL, keyList)), r.s.Name); err != nil {
		return fmt.Errorf("makedelta of %s on %s: %w", rel.Display(), t.Name, err)
	}
	_, err := t.tx.Exec(ctx, `SELECT gobucardo.kick(array(SELECT sync FROM gobucardo.subscription
		WHERE schema_name = $1 AND rel_name = $2 AND autokick AND sync <> $3 ORDER BY sync))`, rel.Schema, rel.Name, r.s.Name)
	if err != nil {
		return fmt.Errorf("kick the syncs reading %s on %s: %w", rel.Display(), t.Name, err)
	}
	return nil
}

func keyJoin(keys []string, a, b string) string {
	var join []string
	for _, k := range keys {
		join = append(join, fmt.Sprintf("%s.%s = %s.%s", a, pg.Ident(k), b, pg.Ident(k)))
	}
	return strings.Join(join, " AND ")
}

// fanOut streams one COPY TO from one database into a COPY FROM on each
// dest at once, reporting progress; it returns the rows inserted over all
// dests. Nothing is held in memory but the copy buffers.
func (r *run) fanOut(ctx context.Context, table, phase string, total int64, from endpoint, srcSQL string, dests []*node, dstSQL string) (int64, error) {
	counts, err := r.fanOutTo(ctx, table, phase, total, from, srcSQL, dests, func(*node) string { return dstSQL })
	var sum int64
	for _, c := range counts {
		sum += c
	}
	return sum, err
}

// fanOutTo is fanOut with a COPY FROM statement per dest; it returns the
// rows each dest took.
func (r *run) fanOutTo(ctx context.Context, table, phase string, total int64, from endpoint, srcSQL string, dests []*node, dstSQL func(*node) string) ([]int64, error) {
	counter := newRowCounter(strings.Contains(srcSQL, "FORMAT binary"))
	writers := []io.Writer{counter}
	readers := make([]*io.PipeReader, len(dests))
	pipes := make([]*io.PipeWriter, len(dests))
	for i := range dests {
		readers[i], pipes[i] = io.Pipe()
		writers = append(writers, pipes[i])
	}
	g, gctx := errgroup.WithContext(ctx)
	counts := make([]int64, len(dests))
	for i, t := range dests {
		g.Go(func() error {
			tag, err := t.conn.PgConn().CopyFrom(gctx, readers[i], dstSQL(t))
			readers[i].CloseWithError(errTargetDone)
			if err != nil {
				return fmt.Errorf("copy %s into %s: %w", table, t.Name, err)
			}
			counts[i] = tag.RowsAffected()
			return nil
		})
	}
	// The progress goroutine is waited for before fanOut returns, so that
	// Options.Progress is never called from two goroutines at once.
	done := make(chan struct{})
	ticker := make(chan struct{})
	go func() {
		defer close(ticker)
		every := r.opts.ProgressEvery
		if every <= 0 {
			every = time.Second
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				r.progress(Progress{Table: table, Phase: phase, Rows: counter.Rows(), Total: total})
			}
		}
	}()
	// pgconn hands CopyTo's writer one row at a time; batching them keeps
	// the goroutine hand-offs and the targets' socket writes per 64 KiB.
	buf := bufio.NewWriterSize(io.MultiWriter(writers...), 64<<10)
	_, srcErr := from.conn.PgConn().CopyTo(gctx, buf, srcSQL)
	if srcErr == nil {
		srcErr = buf.Flush()
	}
	for _, p := range pipes {
		if srcErr != nil {
			p.CloseWithError(srcErr)
		} else {
			p.Close()
		}
	}
	err := g.Wait()
	close(done)
	<-ticker
	if srcErr != nil && !errors.Is(srcErr, errTargetDone) {
		if err != nil {
			return nil, err // the dest's error explains the broken pipe
		}
		return nil, fmt.Errorf("copy %s from %s: %w", table, from.name, srcErr)
	}
	if err != nil {
		return nil, err
	}
	r.progress(Progress{Table: table, Phase: phase, Rows: counter.Rows(), Total: total})
	return counts, nil
}

var errTargetDone = errors.New("target stopped reading")

// analyzeKeys is how many keys a run stages before it analyzes their
// table (see useKeysTable).
const analyzeKeys = 1000

func identList(cols []string, alias string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		if alias != "" {
			out[i] = alias + "." + pg.Ident(c)
		} else {
			out[i] = pg.Ident(c)
		}
	}
	return strings.Join(out, ", ")
}
