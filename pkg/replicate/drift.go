package replicate

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/pg"
)

// Kinds of Difference.
const (
	DiffMissingTable  = "missing_table"  // the table (or sequence) is not on the db
	DiffMissingColumn = "missing_column" // a column of the reference db is not on the db
	DiffExtraColumn   = "extra_column"   // a column of the db is not on the reference db
	DiffType          = "type"           // a column's type differs
	DiffGenerated     = "generated"      // a column is generated on the db but not on the reference db
	DiffKey           = "key"            // the replicated key is not a unique key on the db
)

// ColumnShape is one column of a table on one db.
type ColumnShape struct {
	Name      string
	Type      string // format_type: "character varying(10)"
	NotNull   bool
	Default   bool // has a default (or is an identity column)
	Generated bool
}

// TableShape is how a table (or sequence) is built on one db, as far as
// replicating it cares: whether it is there, its columns in order, and
// its unique keys on NOT NULL columns (the primary key first).
type TableShape struct {
	Exists     bool
	Columns    []ColumnShape
	Keys       [][]string // each a unique index's columns; PrimaryKey says whether Keys[0] is the primary key
	PrimaryKey bool
}

// column returns the column of that name.
func (s TableShape) column(name string) (ColumnShape, bool) {
	for _, c := range s.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return ColumnShape{}, false
}

// hasKey reports whether cols (in any order) are a unique key of the table.
func (s TableShape) hasKey(cols []string) bool {
	want := slices.Sorted(slices.Values(cols))
	for _, k := range s.Keys {
		if slices.Equal(slices.Sorted(slices.Values(k)), want) {
			return true
		}
	}
	return false
}

// DBShape is a table's shape on one db of a sync, with the db's role.
type DBShape struct {
	DB    string
	Role  string
	Shape TableShape
}

// Difference is one way a table differs between a db of a sync and the
// reference db (the first source that has it), with the statement that
// repairs it.
type Difference struct {
	Kind   string `json:"kind"`
	Table  string `json:"table"` // schema.name
	DB     string `json:"db"`    // where the difference is
	From   string `json:"from"`  // the reference db it is measured against
	Column string `json:"column,omitempty"`
	Want   string `json:"want,omitempty"` // the reference db's type (or key)
	Have   string `json:"have,omitempty"` // this db's type (or key)
	// Repair is the statement that removes the difference, run on RepairOn.
	Repair   string `json:"repair"`
	RepairOn string `json:"repair_on"`
	// Breaks: a run of the sync fails with this difference.
	Breaks bool `json:"breaks_runs"`
	// Tolerable: strict_checking=false would let runs go on (a column the
	// reference db has and this db lacks).
	Tolerable bool   `json:"tolerable,omitempty"`
	Why       string `json:"why"` // what it means for runs, a clause
}

// String is the difference as one sentence naming the db, the object and
// the fix.
func (d Difference) String() string { return d.Explain("") }

// Explain is String for a difference seen in sync (when not ""), whose
// name the fix can then give.
func (d Difference) Explain(sync string) string {
	what := "table " + d.Table
	if d.Column != "" {
		what = fmt.Sprintf("column %s of %s", pg.Display(d.Column), d.Table)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "db %s: %s %s", d.DB, what, d.Why)
	if d.Repair != "" {
		fmt.Fprintf(&b, ": run %s on %s", d.Repair, d.RepairOn)
	}
	if d.Breaks && d.Tolerable {
		if sync != "" {
			fmt.Fprintf(&b, ", or mcp update sync %s strict_checking=false to leave it out of the copy", sync)
		} else {
			b.WriteString(", or set strict_checking=false on the sync or table to leave it out of the copy")
		}
	}
	return b.String()
}

// Compare lists every difference of rel between the dbs of a sync, each
// db measured against the reference db: the first source that has the
// table. A table that no source has is missing on every source. It is
// pure: the shapes are read by ReadShape.
func Compare(rel Relation, shapes []DBShape) []Difference {
	table := rel.Display()
	ref := -1
	for i, s := range shapes {
		if s.Role == RoleSource && s.Shape.Exists {
			ref = i
			break
		}
	}
	if ref < 0 {
		// No source has it: create it on each source from a db that has it.
		var out []Difference
		from := -1
		for i, s := range shapes {
			if s.Shape.Exists {
				from = i
				break
			}
		}
		for _, s := range shapes {
			if s.Role != RoleSource {
				continue
			}
			d := Difference{Kind: DiffMissingTable, Table: table, DB: s.DB, RepairOn: s.DB, Breaks: true,
				Why: "is missing, and a run reads it there: create it, or remove it from the sync's relgroup"}
			if from >= 0 {
				d.From = shapes[from].DB
				d.Repair = createStatement(rel, shapes[from].Shape)
				d.Why = fmt.Sprintf("is missing (it is on %s), and a run reads it there", d.From)
			}
			out = append(out, d)
		}
		return out
	}
	r := shapes[ref]
	var out []Difference
	if !rel.Sequence && len(rel.KeyColumns) > 0 && !r.Shape.hasKey(rel.KeyColumns) {
		why := fmt.Sprintf("has lost its replicated key (%s): no primary key or unique index on NOT NULL columns is on exactly those columns "+
			"(restore it, or run mcp remove table and mcp add table again to take the new key)", strings.Join(rel.KeyColumns, ", "))
		out = append(out, Difference{Kind: DiffKey, Table: table, DB: r.DB, From: r.DB, Want: strings.Join(rel.KeyColumns, ", "),
			Have: keyText(r.Shape), Repair: keyStatement(rel, r.Shape), RepairOn: r.DB, Breaks: true, Why: why})
	}
	for i, s := range shapes {
		if i == ref {
			continue
		}
		out = append(out, compareOne(rel, r, s)...)
	}
	return out
}

// compareOne lists the differences of rel on db s against the reference r.
func compareOne(rel Relation, r, s DBShape) []Difference {
	table := rel.Display()
	base := Difference{Table: table, DB: s.DB, From: r.DB, RepairOn: s.DB}
	if !s.Shape.Exists {
		d := base
		d.Kind, d.Breaks, d.Repair = DiffMissingTable, true, createStatement(rel, r.Shape)
		d.Why = fmt.Sprintf("is missing (it is on %s), and a run writes it there", r.DB)
		if rel.Sequence {
			d.Why = strings.Replace(d.Why, "is missing", "(a sequence) is missing", 1)
		}
		return []Difference{d}
	}
	if rel.Sequence {
		return nil
	}
	ident := pg.Ident(rel.Schema, rel.Name)
	source := s.Role == RoleSource
	var out []Difference
	for _, c := range r.Shape.Columns {
		if c.Generated {
			continue // not copied: each db computes its own
		}
		have, ok := s.Shape.column(c.Name)
		d := base
		d.Column, d.Want = c.Name, c.Type
		switch {
		case !ok:
			d.Kind, d.Tolerable, d.Breaks = DiffMissingColumn, true, !rel.Lenient
			d.Repair = fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", ident, pg.Ident(c.Name), c.Type)
			d.Why = fmt.Sprintf("is missing (it is %s on %s), so runs fail", c.Type, r.DB)
			if rel.Lenient {
				d.Why = fmt.Sprintf("is missing (it is %s on %s): strict_checking=false leaves it out of the copy there", c.Type, r.DB)
			}
		case have.Generated:
			d.Kind, d.Breaks, d.Have = DiffGenerated, true, have.Type+" generated"
			d.Repair = fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s DROP EXPRESSION", ident, pg.Ident(c.Name))
			d.Why = fmt.Sprintf("is generated there but a plain column on %s, so runs cannot write it", r.DB)
		case have.Type != c.Type:
			d.Kind, d.Have = DiffType, have.Type
			fits := compatible(c.Type, have.Type) && (!source || compatible(have.Type, c.Type))
			switch {
			case fits:
				// Both directions load: make them the same at leisure.
				d.Repair = fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s TYPE %s", ident, pg.Ident(c.Name), c.Type)
				d.Why = fmt.Sprintf("is %s there but %s on %s, which loads into it: runs go on", have.Type, c.Type, r.DB)
			case compatible(c.Type, have.Type):
				// A source wider than the reference: its values may not fit
				// there; widen the reference.
				d.Breaks, d.RepairOn = true, r.DB
				d.Repair = fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s TYPE %s", ident, pg.Ident(c.Name), have.Type)
				d.Why = fmt.Sprintf("is %s there but %s on %s, so its values may not fit there and runs can fail", have.Type, c.Type, r.DB)
			case compatible(have.Type, c.Type):
				// The reference is the wider one: widen this db.
				d.Breaks = true
				d.Repair = fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s TYPE %s", ident, pg.Ident(c.Name), c.Type)
				d.Why = fmt.Sprintf("is %s there but %s on %s, which does not fit into it, so runs fail", have.Type, c.Type, r.DB)
			default:
				d.Breaks = true
				d.Repair = fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s TYPE %s USING %s::%s", ident, pg.Ident(c.Name), c.Type,
					pg.Ident(c.Name), c.Type)
				d.Why = fmt.Sprintf("is %s there but %s on %s, whose values it cannot hold, so runs fail", have.Type, c.Type, r.DB)
			}
		default:
			continue
		}
		out = append(out, d)
	}
	for _, c := range s.Shape.Columns {
		if _, ok := r.Shape.column(c.Name); ok || c.Generated {
			continue
		}
		d := base
		d.Kind, d.Column, d.Have = DiffExtraColumn, c.Name, c.Type
		if c.NotNull && !c.Default {
			d.Breaks = true
			d.Repair = fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s DROP NOT NULL", ident, pg.Ident(c.Name))
			d.Why = fmt.Sprintf("is NOT NULL without a default and not on %s, so rows copied there fail (or give it a default)", r.DB)
		} else {
			d.RepairOn = r.DB
			d.Repair = fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", ident, pg.Ident(c.Name), c.Type)
			d.Why = fmt.Sprintf("is not on %s: rows copied there take its default, runs go on (to replicate it, add it to %s)", r.DB, r.DB)
		}
		out = append(out, d)
	}
	if len(rel.KeyColumns) > 0 && !s.Shape.hasKey(rel.KeyColumns) {
		d := base
		d.Kind, d.Want, d.Have, d.Repair = DiffKey, strings.Join(rel.KeyColumns, ", "), keyText(s.Shape), keyStatement(rel, s.Shape)
		d.Why = fmt.Sprintf("has no primary key or unique index on exactly the replicated key (%s)", d.Want)
		if source {
			d.Breaks = true
			d.Why += ", which a source needs for rows from the other sources, so runs fail"
		} else {
			d.Why += ": runs go on, but nothing there stops duplicate keys written by others"
		}
		out = append(out, d)
	}
	return out
}

// keyText is the shape's first key, for messages ("" when it has none).
func keyText(s TableShape) string {
	if len(s.Keys) == 0 {
		return ""
	}
	return strings.Join(s.Keys[0], ", ")
}

// keyStatement makes rel's key columns a key of a table of shape s: a
// primary key when it has none, else NOT NULL columns with a unique
// constraint.
func keyStatement(rel Relation, s TableShape) string {
	cols := identList(rel.KeyColumns, "")
	ident := pg.Ident(rel.Schema, rel.Name)
	if !s.PrimaryKey {
		return fmt.Sprintf("ALTER TABLE %s ADD PRIMARY KEY (%s)", ident, cols)
	}
	var parts []string
	for _, k := range rel.KeyColumns {
		parts = append(parts, fmt.Sprintf("ALTER COLUMN %s SET NOT NULL", pg.Ident(k)))
	}
	return fmt.Sprintf("ALTER TABLE %s %s, ADD UNIQUE (%s)", ident, strings.Join(parts, ", "), cols)
}

// createStatement creates rel as it is on a db of shape s: its columns
// with their types and NOT NULL, and its key. Defaults are left out (they
// may name sequences or functions the db lacks; runs copy every value).
func createStatement(rel Relation, s TableShape) string {
	ident := pg.Ident(rel.Schema, rel.Name)
	if rel.Sequence {
		return "CREATE SEQUENCE " + ident
	}
	var parts []string
	for _, c := range s.Columns {
		if c.Generated {
			continue
		}
		p := pg.Ident(c.Name) + " " + c.Type
		if c.NotNull {
			p += " NOT NULL"
		}
		parts = append(parts, p)
	}
	if len(rel.KeyColumns) > 0 {
		parts = append(parts, fmt.Sprintf("PRIMARY KEY (%s)", identList(rel.KeyColumns, "")))
	}
	return fmt.Sprintf("CREATE TABLE %s (%s)", ident, strings.Join(parts, ", "))
}

// shapeQuerier is what ReadShape needs of a connection or transaction.
type shapeQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ReadShape reads rel's shape on the database behind q. A relation of the
// other kind (a view where a table is expected) reads as missing.
func ReadShape(ctx context.Context, q shapeQuerier, rel Relation) (TableShape, error) {
	var s TableShape
	kinds := []string{"r", "p"}
	if rel.Sequence {
		kinds = []string{"S"}
	}
	ident := pg.Ident(rel.Schema, rel.Name)
	if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass($1) AND relkind::text = ANY($2))",
		ident, kinds).Scan(&s.Exists); err != nil {
		return s, fmt.Errorf("look up %s: %w", rel.Display(), err)
	}
	if !s.Exists || rel.Sequence {
		return s, nil
	}
	rows, err := q.Query(ctx, `SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
			a.atthasdef OR a.attidentity <> '', a.attgenerated <> ''
		FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, ident)
	if err != nil {
		return s, fmt.Errorf("read columns of %s: %w", rel.Display(), err)
	}
	s.Columns, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (ColumnShape, error) {
		var c ColumnShape
		err := r.Scan(&c.Name, &c.Type, &c.NotNull, &c.Default, &c.Generated)
		return c, err
	})
	if err != nil {
		return s, fmt.Errorf("read columns of %s: %w", rel.Display(), err)
	}
	// Unique, valid, whole-table indexes on plain NOT NULL columns.
	rows, err = q.Query(ctx, `SELECT i.indisprimary,
			(SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
			 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum WHERE k.ord <= i.indnkeyatts)
		FROM pg_index i
		WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
		  AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
		                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		                  WHERE k.ord <= i.indnkeyatts AND NOT a.attnotnull)
		ORDER BY i.indisprimary DESC, i.indexrelid`, ident)
	if err != nil {
		return s, fmt.Errorf("read keys of %s: %w", rel.Display(), err)
	}
	defer rows.Close()
	for rows.Next() {
		var primary bool
		var cols []string
		if err := rows.Scan(&primary, &cols); err != nil {
			return s, err
		}
		s.PrimaryKey = s.PrimaryKey || primary
		s.Keys = append(s.Keys, cols)
	}
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("read keys of %s: %w", rel.Display(), err)
	}
	return s, nil
}
