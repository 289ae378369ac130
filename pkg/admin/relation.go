package admin

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// pickDB returns the db named by db=, or the only db of the catalog.
func pickDB(ctx context.Context, q catalog.Querier, name, what string) (catalog.DB, error) {
	if name != "" {
		return catalog.GetDB(ctx, q, name)
	}
	dbs, err := catalog.ListDBs(ctx, q)
	if err != nil {
		return catalog.DB{}, err
	}
	if len(dbs) != 1 {
		return catalog.DB{}, usagef("say which db to look %s up on: add db=NAME", what)
	}
	return dbs[0], nil
}

func describeKey(r catalog.Relation) string {
	if r.Kind == catalog.KindSequence {
		return ""
	}
	if len(r.KeyColumns) == 0 {
		return " (no key: only fullcopy targets can take it)"
	}
	var cols []string
	for i := range r.KeyColumns {
		cols = append(cols, r.KeyColumns[i]+" "+r.KeyTypes[i])
	}
	return fmt.Sprintf(" (key: %s, %s)", strings.Join(cols, ", "), r.KeyKind)
}

// ensureRelGroup creates relgroup name, and says so, unless it exists.
func ensureRelGroup(ctx context.Context, e *env, q catalog.Querier, name string) error {
	ok, err := catalog.RelGroupExists(ctx, q, name)
	if err != nil || ok {
		return err
	}
	if err := catalog.AddRelGroup(ctx, q, name); err != nil {
		return err
	}
	e.printf("Added relgroup %q\n", name)
	return nil
}

// storeFound adds found relations to the catalog (skipping, when skipKnown,
// those it has) and to relgroup when given.
func storeFound(ctx context.Context, e *env, q catalog.Querier, db string, found []catalog.Found, kv kvArgs, skipKnown bool) (added int, err error) {
	relgroup, _ := kv.get("relgroup")
	if relgroup != "" {
		if err := ensureRelGroup(ctx, e, q, relgroup); err != nil {
			return 0, err
		}
	}
	known, err := catalog.ListRelations(ctx, q, "")
	if err != nil {
		return 0, err
	}
	byName := map[[2]string]catalog.Relation{}
	for _, r := range known {
		if r.DB == db {
			byName[[2]string{r.Schema, r.Name}] = r
		}
	}
	for _, f := range found {
		r, exists := byName[[2]string{f.Schema, f.Name}]
		switch {
		case exists && relgroup != "":
			// Known already: only put it into the relgroup.
		case exists && skipKnown:
			continue
		case exists:
			return 0, catalog.Invalidf("%s %s of db %q is already in the catalog: see mcp list %ss, or change it with mcp update %s", f.Kind, r.Display(), db, f.Kind, f.Kind)
		default:
			r = f.Relation(db)
			if err := relationSettings(&r, kv); err != nil {
				return 0, err
			}
			if r, err = catalog.AddRelation(ctx, q, r); err != nil {
				return 0, err
			}
			added++
			e.printf("Added %s %s of db %q%s\n", r.Kind, r.Display(), db, describeKey(r))
		}
		if relgroup != "" {
			if exists && contains(r.RelGroups, relgroup) {
				continue
			}
			if err := catalog.AddToRelGroup(ctx, q, relgroup, r); err != nil {
				return 0, err
			}
			e.printf("Added %s %s to relgroup %q\n", r.Kind, r.Display(), relgroup)
		}
	}
	return added, nil
}

func addRelations(e *env, kind string) error {
	kv, err := parseKV(e.c.Args().Slice(), relationKeys)
	if err != nil {
		return err
	}
	if len(kv.pos) == 0 {
		return usagef("name the %ss to add: mcp add %s [SCHEMA.]NAME|PATTERN ... db=DB", kind, kind)
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		d, found, err := findOnDB(ctx, tx, kv, kind, kind+"s and their keys", func(conn *pgx.Conn, d catalog.DB) ([]catalog.Found, error) {
			return catalog.FindRelations(ctx, conn, d.Name, kind, kv.pos)
		})
		if err != nil {
			return err
		}
		_, err = storeFound(ctx, e, tx, d.Name, found, kv, false)
		return err
	})
}

// findOnDB finds relations with find on the db that db= names (or the only
// one); what says in the error what mcp reads there.
func findOnDB(ctx context.Context, q catalog.Querier, kv kvArgs, kind, what string,
	find func(conn *pgx.Conn, d catalog.DB) ([]catalog.Found, error)) (catalog.DB, []catalog.Found, error) {
	dbName, _ := kv.get("db")
	d, err := pickDB(ctx, q, dbName, kind+"s")
	if err != nil {
		return catalog.DB{}, nil, err
	}
	conn, err := connectDB(ctx, d)
	if err != nil {
		return catalog.DB{}, nil, catalog.Invalidf("%v: mcp reads the %s from the db, so it must be reachable", err, what)
	}
	defer closeConn(ctx, conn)
	found, err := find(conn, d)
	return d, found, err
}

func addAll(e *env, kind string) error {
	kv, err := parseKV(e.c.Args().Slice(), addAllKeys)
	if err != nil {
		return err
	}
	if len(kv.pos) > 0 {
		return usagef("mcp add all %ss takes db=DB [relgroup=R] and -n/-N/-t/-T, not %q", kind, kv.pos[0])
	}
	f := catalog.Filter{
		Schemas: e.c.StringSlice("schema"), ExcludeSchemas: e.c.StringSlice("exclude-schema"),
		Tables: e.c.StringSlice("table"), ExcludeTables: e.c.StringSlice("exclude-table"),
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		d, found, err := findOnDB(ctx, tx, kv, kind, kind+"s", func(conn *pgx.Conn, _ catalog.DB) ([]catalog.Found, error) {
			return catalog.FindAll(ctx, conn, kind, f)
		})
		if err != nil {
			return err
		}
		added, err := storeFound(ctx, e, tx, d.Name, found, kv, true)
		if err != nil {
			return err
		}
		e.printf("Added %s of db %q (%d found, %d already in the catalog)\n", plural(added, kind), d.Name, len(found), len(found)-added)
		return nil
	})
}

func addRelGroup(e *env) error {
	kv, err := parseKV(e.c.Args().Slice(), dbKey)
	if err != nil {
		return err
	}
	if len(kv.pos) < 1 {
		return usagef("usage: mcp add relgroup NAME [RELATION ...] [db=DB]")
	}
	name := kv.pos[0]
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		if err := catalog.AddRelGroup(ctx, tx, name); err != nil {
			return err
		}
		e.printf("Added relgroup %q\n", name)
		db, _ := kv.get("db")
		return addToRelGroup(ctx, e, tx, name, db, kv.pos[1:])
	})
}

// addToRelGroup appends the catalog relations that the patterns name.
func addToRelGroup(ctx context.Context, e *env, q catalog.Querier, relgroup, db string, patterns []string) error {
	for _, p := range patterns {
		rs, err := catalog.LookupRelations(ctx, q, "", db, p)
		if err != nil {
			return fmt.Errorf("%w (add it first with mcp add table %s db=DB)", err, p)
		}
		np, _ := catalog.ParseNamePattern(p)
		if len(rs) > 1 && !np.IsGlob() {
			_, err := catalog.LookupRelation(ctx, q, "", db, p)
			return err
		}
		for _, r := range rs {
			if err := catalog.AddToRelGroup(ctx, q, relgroup, r); err != nil {
				return err
			}
			e.printf("Added %s %s of db %q to relgroup %q\n", r.Kind, r.Display(), r.DB, relgroup)
		}
	}
	return nil
}

func updateTable(e *env) error {
	kv, err := parseKV(e.c.Args().Slice(), tableUpdateKeys)
	if err != nil {
		return err
	}
	if len(kv.pos) != 1 || len(kv.vals)+len(kv.extra) == 0 {
		return usagef("usage: mcp update table [SCHEMA.]NAME [db=DB] conflict_strategy=S makedelta=on|off strict_checking=true|false")
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		db, _ := kv.get("db")
		r, err := catalog.LookupRelation(ctx, tx, catalog.KindTable, db, kv.pos[0])
		if err != nil {
			return err
		}
		if err := relationSettings(&r, kv); err != nil {
			return err
		}
		if err := catalog.UpdateRelation(ctx, tx, r); err != nil {
			return err
		}
		for _, g := range r.RelGroups {
			if err := problemsOfSyncsUsing(ctx, tx, catalog.KindRelGroup, g); err != nil {
				return err
			}
		}
		e.printf("Changed table %s of db %q (conflict_strategy %s, makedelta %s, strict_checking %s)\n", r.Display(), r.DB,
			orDash(r.ConflictStrategy), map[bool]string{true: "set", false: "inherit"}[r.MakeDelta != nil], boolOrInherit(r.StrictChecking))
		return nil
	})
}

func updateRelGroup(e *env) error {
	kv, err := parseKV(e.c.Args().Slice(), dbKey)
	if err != nil {
		return err
	}
	if len(kv.pos) < 3 || !(strings.EqualFold(kv.pos[1], "add") || strings.EqualFold(kv.pos[1], "remove")) {
		return usagef("usage: mcp update relgroup NAME add|remove RELATION ...")
	}
	name, verb, rels := kv.pos[0], strings.ToLower(kv.pos[1]), kv.pos[2:]
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		if _, err := catalog.GetRelGroup(ctx, tx, name); err != nil {
			return err
		}
		db, _ := kv.get("db")
		if verb == "add" {
			if err := addToRelGroup(ctx, e, tx, name, db, rels); err != nil {
				return err
			}
		} else if err := removeFromRelGroup(ctx, e, tx, name, db, rels); err != nil {
			return err
		}
		if err := problemsOfSyncsUsing(ctx, tx, catalog.KindRelGroup, name); err != nil {
			return err
		}
		syncs, err := catalog.SyncsUsing(ctx, tx, catalog.KindRelGroup, name)
		if err != nil {
			return err
		}
		return refreshCapture(ctx, e, tx, syncs...)
	})
}

func removeFromRelGroup(ctx context.Context, e *env, q catalog.Querier, relgroup, db string, patterns []string) error {
	g, err := catalog.GetRelGroup(ctx, q, relgroup)
	if err != nil {
		return err
	}
	for _, p := range patterns {
		np, err := catalog.ParseNamePattern(p)
		if err != nil {
			return err
		}
		n := 0
		for _, r := range g.Relations {
			if np.Match(r.Schema, r.Name) && (db == "" || r.DB == db) {
				if err := catalog.RemoveFromRelGroup(ctx, q, relgroup, r); err != nil {
					return err
				}
				e.printf("Removed %s %s from relgroup %q\n", r.Kind, r.Display(), relgroup)
				n++
			}
		}
		if n == 0 {
			return catalog.Invalidf("relgroup %q has no relation %q: mcp list relgroups %s shows its relations", relgroup, p, relgroup)
		}
	}
	return nil
}

// boolOrInherit is a table's own setting, or "inherit".
func boolOrInherit(b *bool) string {
	if b == nil {
		return "inherit"
	}
	return fmt.Sprint(*b)
}
