package catalog

import (
	"context"
	"errors"
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
	partitioned  bool
	root         string // the root of a partition's tree, for messages
}

func candidates(ctx context.Context, q Querier, kind string) ([]candidate, error) {
	relkinds := []string{"r", "p"}
	if kind == KindSequence {
		relkinds = []string{"S"}
	}
	rows, err := q.Query(ctx, `SELECT c.oid, n.nspname::text, c.relname::text, c.relispartition, c.relkind = 'p',
			coalesce(rn.nspname::text, ''), coalesce(r.relname::text, '')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_class r ON c.relispartition AND r.oid = pg_partition_root(c.oid)
		LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
		WHERE c.relkind::text = ANY($1) AND `+systemSchemaClause+`
		ORDER BY n.nspname, c.relname`, relkinds)
	if err != nil {
		return nil, fmt.Errorf("list %ss: %w", kind, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (candidate, error) {
		c := candidate{kind: kind}
		var rootSchema, rootName string
		err := r.Scan(&c.oid, &c.schema, &c.name, &c.isPartition, &c.partitioned, &rootSchema, &rootName)
		if c.isPartition {
			c.root = DisplayName(rootSchema, rootName)
		}
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
			if h.isPartition {
				return nil, Invalidf("table %s of db %q is a partition of %s: add %s instead (mcp add table %s db=%s), which replicates "+
					"every partition, those created later included; to replicate this partition on its own, detach it first (ALTER TABLE %s DETACH PARTITION %s)",
					DisplayName(h.schema, h.name), dbName, h.root, h.root, h.root, dbName, h.root, DisplayName(h.schema, h.name))
			}
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
	for i, c := range cs {
		if c.partitioned && len(out[i].KeyColumns) == 0 {
			if err := partitionedWithoutKey(ctx, q, c); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// partitionedWithoutKey explains why the partitioned table c has no key
// when its partitions suggest it should have one: a unique index of the
// root left invalid by a partition without its index, or partitions with
// keys of their own that the root lacks. A partitioned table whose
// partitions have no key either is a keyless table like any other.
func partitionedWithoutKey(ctx context.Context, q Querier, c candidate) error {
	table := DisplayName(c.schema, c.name)
	var index, partition string
	err := q.QueryRow(ctx, `SELECT i.indexrelid::regclass::text, p.relid::regclass::text
		FROM pg_index i CROSS JOIN LATERAL pg_partition_tree(i.indrelid) p
		WHERE i.indrelid = $1 AND i.indisunique AND NOT i.indisvalid AND p.level = 1
		  AND NOT EXISTS (SELECT 1 FROM pg_inherits h JOIN pg_index pi ON pi.indexrelid = h.inhrelid
		                  WHERE h.inhparent = i.indexrelid AND pi.indrelid = p.relid)
		ORDER BY 1, 2 LIMIT 1`, c.oid).Scan(&index, &partition)
	switch {
	case err == nil:
		return Invalidf("partitioned table %s has no usable key: its unique index %s is not valid because partition %s has no index attached to it: "+
			"create the same unique index on %s and ALTER INDEX %s ATTACH PARTITION it, then add the table again", table, index, partition, partition, index)
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("look at the indexes of %s: %w", table, err)
	}
	err = q.QueryRow(ctx, `SELECT p.relid::regclass::text, i.indexrelid::regclass::text
		FROM pg_partition_tree($1) p JOIN pg_index i ON i.indrelid = p.relid
		WHERE p.level > 0 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
		ORDER BY p.level, 1, 2 LIMIT 1`, c.oid).Scan(&partition, &index)
	switch {
	case err == nil:
		return Invalidf("partitioned table %s has no primary key or unique index of its own, though its partition %s has one (%s): "+
			"rows are replicated through the root, so give the root a key that every partition shares "+
			"(ALTER TABLE %s ADD PRIMARY KEY (...), with the partition key's columns among them), then add the table again",
			table, partition, index, table)
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("look at the partitions of %s: %w", table, err)
	}
	return nil
}
