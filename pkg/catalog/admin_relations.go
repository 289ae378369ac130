package catalog

import "context"

// MissingRelations returns the relations of rels that do not exist on the
// replicated database q is connected to: a table must be there as a table
// or a partitioned table, a sequence as a sequence.
func MissingRelations(ctx context.Context, q Querier, rels []Relation) ([]Relation, error) {
	var missing []Relation
	for _, r := range rels {
		var ok bool
		relkinds := []string{"r", "p"}
		if r.Kind == KindSequence {
			relkinds = []string{"S"}
		}
		err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind::text = ANY($3))`, r.Schema, r.Name, relkinds).Scan(&ok)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, r)
		}
	}
	return missing, nil
}
