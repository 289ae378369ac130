package catalog

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Found is a relation found on a replicated database, with its key.
type Found struct {
	OID        uint32
	Schema     string
	Name       string
	Kind       string // KindTable or KindSequence
	KeyColumns []string
	KeyTypes   []string
	KeyKind    string // "primary key", "unique index" or "" (none)
	KeyIndex   string
}

// Relation returns f as a catalog relation of db.
func (f Found) Relation(db string) Relation {
	return Relation{DB: db, Schema: f.Schema, Name: f.Name, Kind: f.Kind,
		KeyColumns: f.KeyColumns, KeyTypes: f.KeyTypes, KeyKind: f.KeyKind, KeyIndex: f.KeyIndex}
}

// Filter chooses relations on a replicated database, as `mcp add all
// tables -n/-N/-t/-T` does. Empty include lists include everything.
type Filter struct {
	Schemas, ExcludeSchemas []string // patterns on the schema name
	Tables, ExcludeTables   []string // patterns on NAME or SCHEMA.NAME
}

// systemSchemas are never replicated.
const systemSchemaClause = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'gobucardo', 'pg_toast')
	AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'`

type candidate struct {
	oid          uint32
	schema, name string
	kind         string
	isPartition  bool
}

func candidates(ctx context.Context, q Querier, kind string) ([]candidate, error) {
	relkinds := []string{"r", "p"}
	if kind == KindSequence {
		relkinds = []string{"S"}
	}
	rows, err := q.Query(ctx, `SELECT c.oid, n.nspname::text, c.relname::text, c.relispartition
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind::text = ANY($1) AND `+systemSchemaClause+`
		ORDER BY n.nspname, c.relname`, relkinds)
	if err != nil {
		return nil, fmt.Errorf("list %ss: %w", kind, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (candidate, error) {
		c := candidate{kind: kind}
		err := r.Scan(&c.oid, &c.schema, &c.name, &c.isPartition)
		return c, err
	})
}

// FindRelations returns the relations of kind on the replicated database
// behind q that the name patterns choose (see NamePattern). An exact name
// must match exactly one relation. dbName is used in messages.
func FindRelations(ctx context.Context, q Querier, dbName, kind string, patterns []string) ([]Found, error) {
	all, err := candidates(ctx, q, kind)
	if err != nil {
		return nil, err
	}
	var chosen []candidate
	seen := map[uint32]bool{}
	for _, p := range patterns {
		np, err := ParseNamePattern(p)
		if err != nil {
			return nil, err
		}
		var hits []candidate
		for _, c := range all {
			if np.Match(c.schema, c.name) && !(np.IsGlob() && c.isPartition) {
				hits = append(hits, c)
			}
		}
		switch {
		case len(hits) == 0 && np.IsGlob():
			return nil, Invalidf("no %s on db %q matches %q", kind, dbName, p)
		case len(hits) == 0:
			return nil, Invalidf("%s %q does not exist on db %q: check the name (names are case-sensitive; write SCHEMA.NAME, quoting parts with spaces or dots)", kind, p, dbName)
		case len(hits) > 1 && !np.IsGlob():
			var where []string
			for _, h := range hits {
				where = append(where, DisplayName(h.schema, h.name))
			}
			return nil, Invalidf("%s %q exists in several schemas of db %q (%s): write SCHEMA.NAME", kind, p, dbName, strings.Join(where, ", "))
		}
		for _, h := range hits {
			if !seen[h.oid] {
				seen[h.oid] = true
				chosen = append(chosen, h)
			}
		}
	}
	return withKeys(ctx, q, chosen)
}

// FindAll returns every relation of kind on the database behind q that the
// filter chooses (partitions are left to their parent).
func FindAll(ctx context.Context, q Querier, kind string, f Filter) ([]Found, error) {
	all, err := candidates(ctx, q, kind)
	if err != nil {
		return nil, err
	}
	parse := func(ps []string) ([]NamePattern, error) {
		var out []NamePattern
		for _, p := range ps {
			np, err := ParseNamePattern(p)
			if err != nil {
				return nil, err
			}
			out = append(out, np)
		}
		return out, nil
	}
	schemas, err := parse(f.Schemas)
	if err != nil {
		return nil, err
	}
	exSchemas, err := parse(f.ExcludeSchemas)
	if err != nil {
		return nil, err
	}
	tables, err := parse(f.Tables)
	if err != nil {
		return nil, err
	}
	exTables, err := parse(f.ExcludeTables)
	if err != nil {
		return nil, err
	}
	schemaMatch := func(ps []NamePattern, s string) bool {
		for _, p := range ps {
			if p.Name.match(s) {
				return true
			}
		}
		return false
	}
	tableMatch := func(ps []NamePattern, c candidate) bool {
		for _, p := range ps {
			if p.Match(c.schema, c.name) {
				return true
			}
		}
		return false
	}
	var chosen []candidate
	for _, c := range all {
		switch {
		case c.isPartition:
		case len(schemas) > 0 && !schemaMatch(schemas, c.schema):
		case schemaMatch(exSchemas, c.schema):
		case len(tables) > 0 && !tableMatch(tables, c):
		case tableMatch(exTables, c):
		default:
			chosen = append(chosen, c)
		}
	}
	return withKeys(ctx, q, chosen)
}

// withKeys looks up, in one query, the key of every table: its primary key,
// else the unique, valid, immediate, non-partial index on plain NOT NULL
// columns with the fewest columns (then by name).
func withKeys(ctx context.Context, q Querier, cs []candidate) ([]Found, error) {
	out := make([]Found, len(cs))
	var oids []uint32
	byOID := map[uint32]int{}
	for i, c := range cs {
		out[i] = Found{OID: c.oid, Schema: c.schema, Name: c.name, Kind: c.kind}
		if c.kind == KindTable {
			oids = append(oids, c.oid)
			byOID[c.oid] = i
		}
	}
	if len(oids) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT DISTINCT ON (i.indrelid) i.indrelid, i.indexrelid::regclass::text, i.indisprimary,
			array_agg(a.attname::text ORDER BY k.ord), array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord)
		FROM pg_index i
		CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = ANY($1) AND k.ord <= i.indnkeyatts
		  AND i.indisunique AND i.indisvalid AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL
		GROUP BY i.indrelid, i.indexrelid, i.indisprimary
		HAVING bool_and(a.attnotnull)
		ORDER BY i.indrelid, i.indisprimary DESC, count(*), i.indexrelid::regclass::text`, oids)
	if err != nil {
		return nil, fmt.Errorf("find keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var oid uint32
		var index string
		var primary bool
		var cols, types []string
		if err := rows.Scan(&oid, &index, &primary, &cols, &types); err != nil {
			return nil, fmt.Errorf("find keys: %w", err)
		}
		f := &out[byOID[oid]]
		f.KeyColumns, f.KeyTypes, f.KeyIndex = cols, types, index
		f.KeyKind = "unique index"
		if primary {
			f.KeyKind = "primary key"
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find keys: %w", err)
	}
	return out, nil
}
