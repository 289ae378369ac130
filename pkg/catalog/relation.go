package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Relation is a table or sequence of one db (Bucardo's "goat") with the key
// found for it. A table without KeyColumns can only go to fullcopy targets.
type Relation struct {
	ID               int64    `json:"id"`
	DB               string   `json:"db"`
	Schema           string   `json:"schema"`
	Name             string   `json:"name"`
	Kind             string   `json:"kind"`
	KeyColumns       []string `json:"key_columns,omitempty"`
	KeyTypes         []string `json:"key_types,omitempty"`
	KeyKind          string   `json:"key_kind,omitempty"`
	KeyIndex         string   `json:"key_index,omitempty"`
	ConflictStrategy string   `json:"conflict_strategy,omitempty"`
	MakeDelta        *bool    `json:"makedelta,omitempty"`
	// StrictChecking overrides the sync's strict_checking for this table
	// (nil = as the sync says).
	StrictChecking *bool     `json:"strict_checking,omitempty"`
	RelGroups      []string  `json:"relgroups"`
	Created        time.Time `json:"created"`
}

// Display is schema.name as a user would type it.
func (r *Relation) Display() string { return DisplayName(r.Schema, r.Name) }

const relationColumns = `r.id, r.db, r.schema_name, r.rel_name, r.kind,
	coalesce(r.key_columns, '{}'), coalesce(r.key_types, '{}'), coalesce(r.key_kind, ''), coalesce(r.key_index, ''),
	coalesce(r.conflict_strategy, ''), r.makedelta, r.strict_checking,
	coalesce((SELECT array_agg(m.relgroup ORDER BY m.relgroup) FROM gobucardo.relgroup_member m WHERE m.relation_id = r.id), '{}'),
	r.created`

func scanRelation(row pgx.Row) (Relation, error) {
	var r Relation
	err := row.Scan(&r.ID, &r.DB, &r.Schema, &r.Name, &r.Kind, &r.KeyColumns, &r.KeyTypes, &r.KeyKind,
		&r.KeyIndex, &r.ConflictStrategy, &r.MakeDelta, &r.StrictChecking, &r.RelGroups, &r.Created)
	if len(r.KeyColumns) == 0 {
		r.KeyColumns, r.KeyTypes = nil, nil
	}
	return r, err
}

// AddRelation stores a new relation and returns it with its ID.
func AddRelation(ctx context.Context, q Querier, r Relation) (Relation, error) {
	var keyCols, keyTypes any
	if len(r.KeyColumns) > 0 {
		keyCols, keyTypes = r.KeyColumns, r.KeyTypes
	}
	err := q.QueryRow(ctx, `INSERT INTO gobucardo.relation
		(db, schema_name, rel_name, kind, key_columns, key_types, key_kind, key_index, conflict_strategy, makedelta, strict_checking)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id, created`,
		r.DB, r.Schema, r.Name, r.Kind, keyCols, keyTypes, nullIfEmpty(r.KeyKind), nullIfEmpty(r.KeyIndex),
		nullIfEmpty(r.ConflictStrategy), r.MakeDelta, r.StrictChecking).Scan(&r.ID, &r.Created)
	if err != nil {
		if isUnique(err) {
			return r, Invalidf("%s %s of db %q is already in the catalog: see mcp list %ss", r.Kind, r.Display(), r.DB, r.Kind)
		}
		return r, fmt.Errorf("add %s %s: %w", r.Kind, r.Display(), err)
	}
	return r, nil
}

// UpdateRelation writes the settable fields of r (conflict strategy,
// makedelta, strict_checking).
func UpdateRelation(ctx context.Context, q Querier, r Relation) error {
	_, err := q.Exec(ctx, `UPDATE gobucardo.relation SET conflict_strategy = $2, makedelta = $3, strict_checking = $4 WHERE id = $1`,
		r.ID, nullIfEmpty(r.ConflictStrategy), r.MakeDelta, r.StrictChecking)
	if err != nil {
		return fmt.Errorf("update %s %s: %w", r.Kind, r.Display(), err)
	}
	return nil
}

// ListRelations returns the relations of kind ("" for both), ordered by db,
// schema and name.
func ListRelations(ctx context.Context, q Querier, kind string) ([]Relation, error) {
	rows, err := q.Query(ctx, "SELECT "+relationColumns+` FROM gobucardo.relation r
		WHERE $1 = '' OR r.kind = $1 ORDER BY r.db, r.schema_name, r.rel_name`, kind)
	if err != nil {
		return nil, fmt.Errorf("list relations: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Relation, error) { return scanRelation(row) })
}

// LookupRelations returns the catalog's relations of kind ("" for both)
// that match the pattern, limited to db when db is not "". An exact name
// that matches nothing is a NotFoundError.
func LookupRelations(ctx context.Context, q Querier, kind, db, pattern string) ([]Relation, error) {
	np, err := ParseNamePattern(pattern)
	if err != nil {
		return nil, err
	}
	all, err := ListRelations(ctx, q, kind)
	if err != nil {
		return nil, err
	}
	var out []Relation
	for _, r := range all {
		if (db == "" || r.DB == db) && np.Match(r.Schema, r.Name) {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		k := kind
		if k == "" {
			k = KindTable
		}
		where := ""
		if db != "" {
			where = fmt.Sprintf("of db %q", db)
		}
		return nil, &NotFoundError{Kind: k, Name: pattern, Where: where}
	}
	return out, nil
}

// LookupRelation returns the one relation that pattern names (of db, if
// given); several matches are an error asking to be more precise.
func LookupRelation(ctx context.Context, q Querier, kind, db, pattern string) (Relation, error) {
	rs, err := LookupRelations(ctx, q, kind, db, pattern)
	if err != nil {
		return Relation{}, err
	}
	if len(rs) > 1 {
		var names []string
		for _, r := range rs {
			names = append(names, fmt.Sprintf("%s of db %q", r.Display(), r.DB))
		}
		return Relation{}, Invalidf("%q matches %d relations (%v): name one, with its schema and db=DB", pattern, len(rs), names)
	}
	return rs[0], nil
}

// RemoveRelation removes a relation from the catalog and its relgroups.
// Without force it refuses while a sync replicates it.
func RemoveRelation(ctx context.Context, q Querier, r Relation, force bool) error {
	var syncs []string
	if err := q.QueryRow(ctx, `SELECT coalesce(array_agg(DISTINCT s.name ORDER BY s.name), '{}')
		FROM gobucardo.sync s JOIN gobucardo.relgroup_member m ON m.relgroup = s.relgroup
		WHERE m.relation_id = $1`, r.ID).Scan(&syncs); err != nil {
		return fmt.Errorf("find syncs of %s: %w", r.Display(), err)
	}
	if len(syncs) > 0 && !force {
		var users []string
		for _, s := range syncs {
			users = append(users, fmt.Sprintf("sync %q", s))
		}
		return &InUseError{Kind: r.Kind, Name: r.Display(), Users: users}
	}
	for _, g := range r.RelGroups {
		if err := RemoveFromRelGroup(ctx, q, g, r); err != nil {
			return err
		}
	}
	if _, err := q.Exec(ctx, "DELETE FROM gobucardo.relation WHERE id = $1", r.ID); err != nil {
		return fmt.Errorf("remove %s %s: %w", r.Kind, r.Display(), err)
	}
	return nil
}

// RelGroup is a named, ordered set of relations of one db.
type RelGroup struct {
	Name      string     `json:"name"`
	DB        string     `json:"db,omitempty"`
	Relations []Relation `json:"relations"`
	Created   time.Time  `json:"created"`
}

// AddRelGroup stores a new, empty relgroup.
func AddRelGroup(ctx context.Context, q Querier, name string) error {
	if err := ValidName(KindRelGroup, name); err != nil {
		return err
	}
	if _, err := q.Exec(ctx, "INSERT INTO gobucardo.relgroup (name) VALUES ($1)", name); err != nil {
		return fmt.Errorf("add relgroup %s: %w", name, constraintError(err, KindRelGroup, name))
	}
	return nil
}

// RelGroupExists reports whether a relgroup of that name exists.
func RelGroupExists(ctx context.Context, q Querier, name string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM gobucardo.relgroup WHERE name = $1)", name).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up relgroup %s: %w", name, err)
	}
	return ok, nil
}

// GetRelGroup returns a relgroup with its relations in order.
func GetRelGroup(ctx context.Context, q Querier, name string) (RelGroup, error) {
	var g RelGroup
	err := q.QueryRow(ctx, "SELECT name, coalesce(db, ''), created FROM gobucardo.relgroup WHERE name = $1", name).
		Scan(&g.Name, &g.DB, &g.Created)
	if errors.Is(err, pgx.ErrNoRows) {
		return g, &NotFoundError{Kind: KindRelGroup, Name: name}
	}
	if err != nil {
		return g, fmt.Errorf("read relgroup %s: %w", name, err)
	}
	rows, err := q.Query(ctx, "SELECT "+relationColumns+` FROM gobucardo.relation r
		JOIN gobucardo.relgroup_member m ON m.relation_id = r.id
		WHERE m.relgroup = $1 ORDER BY m.position`, name)
	if err != nil {
		return g, fmt.Errorf("read relgroup %s: %w", name, err)
	}
	g.Relations, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Relation, error) { return scanRelation(row) })
	return g, err
}

// ListRelGroups returns every relgroup with its relations.
func ListRelGroups(ctx context.Context, q Querier) ([]RelGroup, error) {
	rows, err := q.Query(ctx, "SELECT name FROM gobucardo.relgroup ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list relgroups: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list relgroups: %w", err)
	}
	out := make([]RelGroup, 0, len(names))
	for _, n := range names {
		g, err := GetRelGroup(ctx, q, n)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

// AddToRelGroup appends r to the relgroup. A relgroup holds the relations
// of one db; the first relation decides which.
func AddToRelGroup(ctx context.Context, q Querier, relgroup string, r Relation) error {
	g, err := GetRelGroup(ctx, q, relgroup)
	if err != nil {
		return err
	}
	for _, m := range g.Relations {
		if m.ID == r.ID {
			return Invalidf("%s %s is already in relgroup %q", r.Kind, r.Display(), relgroup)
		}
	}
	switch {
	case g.DB == "":
		if _, err := q.Exec(ctx, "UPDATE gobucardo.relgroup SET db = $2 WHERE name = $1", relgroup, r.DB); err != nil {
			return fmt.Errorf("set db of relgroup %s: %w", relgroup, err)
		}
	case g.DB != r.DB:
		return Invalidf("relgroup %q holds relations of db %q, but %s is of db %q: a relgroup holds the relations of one db",
			relgroup, g.DB, r.Display(), r.DB)
	}
	_, err = q.Exec(ctx, `INSERT INTO gobucardo.relgroup_member (relgroup, relation_id, db, position)
		SELECT $1, $2, $3, coalesce(max(position) + 1, 0) FROM gobucardo.relgroup_member WHERE relgroup = $1`,
		relgroup, r.ID, r.DB)
	if err != nil {
		return fmt.Errorf("add %s to relgroup %s: %w", r.Display(), relgroup, err)
	}
	return nil
}

// RemoveFromRelGroup takes r out of the relgroup and closes the gap in the
// order; an emptied relgroup forgets its db.
func RemoveFromRelGroup(ctx context.Context, q Querier, relgroup string, r Relation) error {
	var pos int
	err := q.QueryRow(ctx, `DELETE FROM gobucardo.relgroup_member WHERE relgroup = $1 AND relation_id = $2
		RETURNING position`, relgroup, r.ID).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return Invalidf("%s %s is not in relgroup %q", r.Kind, r.Display(), relgroup)
	}
	if err != nil {
		return fmt.Errorf("remove %s from relgroup %s: %w", r.Display(), relgroup, err)
	}
	stmts := []string{
		"UPDATE gobucardo.relgroup_member SET position = position - 1 WHERE relgroup = $1 AND position > $2",
		`UPDATE gobucardo.relgroup SET db = NULL WHERE name = $1
			AND NOT EXISTS (SELECT 1 FROM gobucardo.relgroup_member WHERE relgroup = $1) AND $2 >= 0`,
	}
	for _, s := range stmts {
		if _, err := q.Exec(ctx, s, relgroup, pos); err != nil {
			return fmt.Errorf("remove %s from relgroup %s: %w", r.Display(), relgroup, err)
		}
	}
	return nil
}

// RemoveRelGroup removes a relgroup (not its relations); with force also
// the syncs that use it.
func RemoveRelGroup(ctx context.Context, q Querier, name string, force bool) ([]string, error) {
	if _, err := GetRelGroup(ctx, q, name); err != nil {
		return nil, err
	}
	return removeUsed(ctx, q, KindRelGroup, name, force, "DELETE FROM gobucardo.relgroup WHERE name = $1")
}
