package replicate

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/gobucardo/gobucardo/pkg/pg"
)

// column is a column of a table on one db.
type column struct {
	name    string
	typ     string // format_type
	builtin bool   // the type (and any element type) is built in: same OID everywhere
}

// columnSet is what is copied of a table: the source's columns that are
// not generated, matched by name on every target. Binary COPY is used when
// every column has the same built-in type everywhere; otherwise text COPY,
// which tolerates compatible types (integer to bigint, enums, ...).
type columnSet struct {
	names       []string
	binary      bool
	types       map[string]string
	table       string          // schema.name, quoted
	partitioned map[string]bool // per db name: the table is partitioned there
	// Under strict_checking=false: all is every column of the first source
	// that is copied, missing the columns of all each db lacks (by db
	// name), and names is all but those some source lacks (what every
	// source can be read for). Copies between two dbs take all but what
	// either lacks (between).
	all     []string
	missing map[string]map[string]bool
}

// without is s less the columns that any of dbs lacks; s itself when no
// db lacks any.
func (s *columnSet) without(dbs ...string) *columnSet {
	if len(s.missing) == 0 {
		return s
	}
	out := *s
	out.names = nil
	for _, n := range s.all {
		lacking := false
		for _, d := range dbs {
			lacking = lacking || s.missing[d][n]
		}
		if !lacking {
			out.names = append(out.names, n)
		}
	}
	return &out
}

// colGroup is dests that take the same columns from one source.
type colGroup struct {
	cols  *columnSet
	dests []*node
}

// between splits dests by the columns a copy from db from gives them:
// one group of all dests unless strict_checking=false left columns out.
func (s *columnSet) between(from string, dests []*node) []colGroup {
	if len(s.missing) == 0 {
		return []colGroup{{s, dests}}
	}
	var out []colGroup
	at := map[string]int{}
	for _, t := range dests {
		c := s.without(from, t.Name)
		k := strings.Join(c.names, "\x00")
		i, ok := at[k]
		if !ok {
			i = len(out)
			at[k] = i
			out = append(out, colGroup{cols: c})
		}
		out[i].dests = append(out[i].dests, t)
	}
	return out
}

// ref is how statements on db name the table to read or write all of its
// rows: without ONLY where it is partitioned (its rows live in its
// partitions; ONLY would see none and write nowhere), with ONLY elsewhere
// (a legacy inheritance child is a table of its own).
func (s *columnSet) ref(db string) string {
	if s.partitioned[db] {
		return s.table
	}
	return "ONLY " + s.table
}

const columnsSQL = `SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
		a.atttypid < 16384 AND coalesce((SELECT t.typelem < 16384 FROM pg_type t WHERE t.oid = a.atttypid), true),
		a.attgenerated <> '', (SELECT c.relkind = 'p' FROM pg_class c WHERE c.oid = a.attrelid)
	FROM pg_attribute a
	WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
	ORDER BY a.attnum`

func readColumns(ctx context.Context, q pgx.Tx, name string, rel Relation) (cols []column, generated map[string]bool, partitioned bool, err error) {
	rows, err := q.Query(ctx, columnsSQL, pg.Ident(rel.Schema, rel.Name))
	if err != nil {
		return nil, nil, false, fmt.Errorf("read columns of %s on %s: %w", rel.Display(), name, err)
	}
	defer rows.Close()
	generated = map[string]bool{}
	for rows.Next() {
		var c column
		var gen bool
		if err := rows.Scan(&c.name, &c.typ, &c.builtin, &gen, &partitioned); err != nil {
			return nil, nil, false, err
		}
		if gen {
			generated[c.name] = true
			continue
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, false, err
	}
	if len(cols) == 0 && len(generated) == 0 {
		return nil, nil, false, fmt.Errorf("table %s does not exist on db %s: create it there, or run mcp validate", rel.Display(), name)
	}
	return cols, generated, partitioned, nil
}

// columns matches rel's columns between the source and every target. A
// column of the source that a writer lacks fails the run, or with
// strict_checking=false (rel.Lenient) is left out of the copies into that
// db (and, when a source lacks it, of the copies from it: see between),
// and noted once in the run's result and log.
func (r *run) columns(ctx context.Context, rel Relation) (*columnSet, error) {
	first := r.sources[0]
	src, _, partitioned, err := readColumns(ctx, first.tx, first.Name, rel)
	if err != nil {
		return nil, err
	}
	set := &columnSet{binary: true, types: map[string]string{}, table: pg.Ident(rel.Schema, rel.Name),
		partitioned: map[string]bool{first.Name: partitioned}}
	missing := map[string][]string{} // column -> writers that lack it
	set.missing = map[string]map[string]bool{}
	var sources []string
	for _, t := range r.writers {
		cols, generated, partitioned, err := readColumns(ctx, t.tx, t.Name, rel)
		if err != nil {
			return nil, err
		}
		set.partitioned[t.Name] = partitioned
		if t.source {
			sources = append(sources, t.Name)
		}
		have := map[string]column{}
		for _, c := range cols {
			have[c.name] = c
		}
		for _, c := range src {
			tc, ok := have[c.name]
			switch {
			case generated[c.name]:
				return nil, fmt.Errorf("column %s of %s is generated on db %s but not on %s: make it a plain column there",
					pg.Display(c.name), rel.Display(), t.Name, first.Name)
			case !ok && (!rel.Lenient || slices.Contains(rel.KeyColumns, c.name)):
				return nil, fmt.Errorf("column %s of %s is missing on db %s (it is %s on %s): run ALTER TABLE %s ADD COLUMN %s %s on %s, "+
					"or mcp update sync %s strict_checking=false to leave it out of the copy (mcp validate lists every difference)",
					pg.Display(c.name), rel.Display(), t.Name, c.typ, first.Name, set.table, pg.Ident(c.name), c.typ, t.Name, r.s.Name)
			case !ok:
				if !slices.Contains(missing[c.name], t.Name) {
					missing[c.name] = append(missing[c.name], t.Name)
				}
				if set.missing[t.Name] == nil {
					set.missing[t.Name] = map[string]bool{}
				}
				set.missing[t.Name][c.name] = true
			case tc.typ != c.typ || !tc.builtin:
				set.binary = false
			}
		}
	}
	for _, c := range src {
		set.all = append(set.all, c.name)
		set.types[c.name] = c.typ
		if !c.builtin {
			set.binary = false
		}
		if len(missing[c.name]) > 0 {
			r.omit(rel, c.name, missing[c.name])
		}
	}
	if len(set.missing) == 0 {
		set.missing, set.names = nil, set.all
		return set, nil
	}
	return set.without(sources...), nil
}

// omit notes, once per run, that column of rel is left out of the copies
// into and from dbs, which lack it (strict_checking=false).
func (r *run) omit(rel Relation, column string, dbs []string) {
	note := fmt.Sprintf("column %s of %s (not on %s)", pg.Display(column), rel.Display(), strings.Join(dbs, ", "))
	if slices.Contains(r.res.OmittedColumns, note) {
		return
	}
	r.res.OmittedColumns = append(r.res.OmittedColumns, note)
	r.log.Warn("strict_checking=false: a column some dbs lack is left out of the copies into and from them",
		zap.String("table", rel.Display()), zap.String("column", column), zap.Strings("missing_on", dbs))
}

func (s *columnSet) selectList(alias string) string { return identList(s.names, alias) }

func (s *columnSet) format() string {
	if s.binary {
		return " (FORMAT binary)"
	}
	return ""
}

// keyFormat is the COPY format for the key columns alone.
func (s *columnSet) keyFormat() string {
	if !s.binary {
		return ""
	}
	return " (FORMAT binary)"
}

func (s *columnSet) copyIn(rel Relation) string {
	return fmt.Sprintf("COPY %s (%s) FROM STDIN%s", pg.Ident(rel.Schema, rel.Name), identList(s.names, ""), s.format())
}
