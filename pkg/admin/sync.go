package admin

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/replicate"
)

func addSync(e *env) error {
	kv, err := parseKV(e.c.Args().Slice(), syncKeys)
	if err != nil {
		return err
	}
	if len(kv.pos) != 1 {
		return usagef("usage: mcp add sync NAME relgroup=R|tables=T1,T2 dbs=A:source,B:target|dbgroup=G [option=value ...]")
	}
	s, parts, err := newSync(kv.pos[0], kv)
	if err != nil {
		return err
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		if _, err := catalog.GetSync(ctx, tx, s.Name); err == nil {
			return &catalog.ExistsError{Kind: catalog.KindSync, Name: s.Name}
		}
		// The dbgroup: named, or made from dbs=.
		var g catalog.DBGroup
		if parts.hasDBGroup {
			if g, err = catalog.GetDBGroup(ctx, tx, parts.dbgroup); err != nil {
				return err
			}
		} else {
			ms, err := parseMembers([]string{parts.dbs})
			if err != nil {
				return err
			}
			if g, err = dbGroupFor(ctx, e, tx, s.Name, ms); err != nil {
				return err
			}
		}
		s.DBGroup = g.Name
		// The relgroup: named, or made from tables=.
		if parts.hasRelGroup {
			s.RelGroup = parts.relgroup
		} else {
			if err := relGroupFor(ctx, e, tx, s.Name, g, parts.tables); err != nil {
				return err
			}
			s.RelGroup = s.Name
		}
		rg, err := catalog.GetRelGroup(ctx, tx, s.RelGroup)
		if err != nil {
			return err
		}
		if len(rg.Relations) == 0 {
			return catalog.Invalidf("relgroup %q has no relations: add some with mcp update relgroup %s add TABLE", rg.Name, rg.Name)
		}
		if err := catalog.AddSync(ctx, tx, s); err != nil {
			return err
		}
		if err := syncProblems(ctx, tx, s.Name); err != nil {
			return err
		}
		if err := checkSyncDBs(ctx, e, tx, s, g, rg, ""); err != nil {
			return err
		}
		d, err := catalog.LoadSync(ctx, tx, s.Name)
		if err != nil {
			return err
		}
		if err := installCapture(ctx, e, d, e.c.Bool("force")); err != nil {
			return err
		}
		e.printf("Added sync %q: relgroup %q (%s) over dbgroup %q (%s)\n",
			s.Name, rg.Name, plural(len(rg.Relations), "relation"), g.Name, catalog.DescribeMembers(g.Members))
		return nil
	})
}

// syncProblems turns the catalog's list of a sync's problems into one error.
func syncProblems(ctx context.Context, q catalog.Querier, name string) error {
	problems, err := catalog.SyncProblems(ctx, q, name)
	if err != nil {
		return err
	}
	switch len(problems) {
	case 0:
		return nil
	case 1:
		return catalog.Invalidf("%s", problems[0])
	}
	return catalog.Invalidf("sync %s has %d problems:\n  - %s", name, len(problems), strings.Join(problems, "\n  - "))
}

// dbGroupFor reuses a dbgroup with exactly these members or makes one
// named after the sync.
func dbGroupFor(ctx context.Context, e *env, q catalog.Querier, sync string, ms []catalog.Member) (catalog.DBGroup, error) {
	name, err := catalog.FindDBGroup(ctx, q, ms)
	if err != nil {
		return catalog.DBGroup{}, err
	}
	if name == "" {
		if _, err := catalog.GetDBGroup(ctx, q, sync); err == nil {
			return catalog.DBGroup{}, catalog.Invalidf("dbgroup %q exists with other members: name a dbgroup with dbgroup=G, or change it with mcp update dbgroup %s", sync, sync)
		}
		if err := catalog.AddDBGroup(ctx, q, sync, ms); err != nil {
			return catalog.DBGroup{}, err
		}
		e.printf("Added dbgroup %q: %s\n", sync, catalog.DescribeMembers(ms))
		name = sync
	}
	return catalog.GetDBGroup(ctx, q, name)
}

// relGroupFor makes the relgroup named after the sync from a tables= list,
// adding tables the catalog lacks from the first source db.
func relGroupFor(ctx context.Context, e *env, q catalog.Querier, sync string, g catalog.DBGroup, tables string) error {
	names := strings.FieldsFunc(tables, func(r rune) bool { return r == ',' })
	if len(names) == 0 {
		return usagef("sync %s: tables= lists no tables", sync)
	}
	if err := ensureRelGroup(ctx, e, q, sync); err != nil {
		return err
	}
	sources := g.Sources()
	if len(sources) == 0 {
		return catalog.Invalidf("sync %s has no source database: give a db of dbgroup %s the role source", sync, g.Name)
	}
	src, err := catalog.GetDB(ctx, q, sources[0])
	if err != nil {
		return err
	}
	var missing []string
	for _, n := range names {
		if _, err := catalog.LookupRelations(ctx, q, "", src.Name, n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		conn, err := connectDB(ctx, src)
		if err != nil {
			return catalog.Invalidf("%v: tables %s are not in the catalog and must be read from it", err, strings.Join(missing, ", "))
		}
		defer closeConn(ctx, conn)
		found, err := catalog.FindRelations(ctx, conn, src.Name, catalog.KindTable, missing)
		if err != nil {
			return err
		}
		if _, err := storeFound(ctx, e, q, src.Name, found, kvArgs{vals: map[string]string{}}, true); err != nil {
			return err
		}
	}
	rg, err := catalog.GetRelGroup(ctx, q, sync)
	if err != nil {
		return err
	}
	for _, n := range names {
		rs, err := catalog.LookupRelations(ctx, q, "", src.Name, n)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if contains(r.RelGroups, rg.Name) {
				continue
			}
			if err := catalog.AddToRelGroup(ctx, q, rg.Name, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkSyncDBs connects to every db of sync s and checks that each
// relation exists there with columns a run can copy: Compare's
// differences that would fail runs (a type that does not load, a column a
// target lacks under strict_checking, ...) are refused, each in one
// sentence with its repair. A db that cannot be reached is an error unless
// --force. All problems come in one list. explainAs is the sync name the
// fixes may give ("" while the sync is being added).
func checkSyncDBs(ctx context.Context, e *env, q catalog.Querier, s catalog.Sync, g catalog.DBGroup, rg catalog.RelGroup, explainAs string) error {
	var problems []string
	shapes := make([][]replicate.DBShape, len(rg.Relations))
	for _, m := range g.Members {
		d, err := catalog.GetDB(ctx, q, m.DB)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		conn, err := connectDB(cctx, d)
		if err != nil {
			cancel()
			if e.c.Bool("force") {
				e.printf("Warning: %v; not checked (--force)\n", err)
				continue
			}
			problems = append(problems, fmt.Sprintf("%v: start it, or add the sync anyway with --force", err))
			continue
		}
		missing, err := catalog.MissingRelations(cctx, conn, rg.Relations)
		for i, r := range rg.Relations {
			if err != nil {
				break
			}
			var sh replicate.TableShape
			sh, err = replicate.ReadShape(cctx, conn, replicate.RelationFrom(s, r))
			shapes[i] = append(shapes[i], replicate.DBShape{DB: d.Name, Role: m.Role, Shape: sh})
		}
		closeConn(ctx, conn)
		cancel()
		if err != nil {
			return fmt.Errorf("check relations on db %s: %w", d.Name, err)
		}
		for _, r := range missing {
			problems = append(problems, fmt.Sprintf("%s %s is missing on db %q (%s): create it there, or remove it from relgroup %q",
				r.Kind, r.Display(), d.Name, m.Role, rg.Name))
		}
	}
	for i, r := range rg.Relations {
		for _, df := range replicate.Compare(replicate.RelationFrom(s, r), shapes[i]) {
			if df.Breaks && df.Kind != replicate.DiffMissingTable { // missing: said above
				problems = append(problems, df.Explain(explainAs))
			}
		}
	}
	switch len(problems) {
	case 0:
		return nil
	case 1:
		return catalog.Invalidf("%s", problems[0])
	}
	return catalog.Invalidf("%d problems:\n  - %s", len(problems), strings.Join(problems, "\n  - "))
}

// problemsOfSyncsUsing checks every sync that uses the dbgroup or relgroup.
func problemsOfSyncsUsing(ctx context.Context, q catalog.Querier, kind, name string) error {
	syncs, err := catalog.SyncsUsing(ctx, q, kind, name)
	if err != nil {
		return err
	}
	for _, s := range syncs {
		if err := syncProblems(ctx, q, s); err != nil {
			return err
		}
	}
	return nil
}

func updateSync(e *env) error {
	args := e.c.Args().Slice()
	if len(args) >= 3 && (strings.EqualFold(args[1], "add") || strings.EqualFold(args[1], "remove")) {
		return updateSyncTables(e, args)
	}
	kv, err := parseKV(args, syncKeys)
	if err != nil {
		return err
	}
	if len(kv.pos) != 1 || len(kv.vals)+len(kv.extra) == 0 {
		return usagef("usage: mcp update sync NAME key=value ... | NAME add|remove table T ...")
	}
	if _, ok := kv.get("tables"); ok {
		return usagef("to change a sync's tables use mcp update sync %s add table T (or remove table T)", kv.pos[0])
	}
	if _, ok := kv.get("dbs"); ok {
		return usagef("to change a sync's dbs use dbgroup=G, or mcp update dbgroup")
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		s, err := catalog.GetSync(ctx, tx, kv.pos[0])
		if err != nil {
			return err
		}
		if err := applySyncOptions(&s, kv); err != nil {
			return err
		}
		if v, ok := kv.get("relgroup"); ok {
			if _, err := catalog.GetRelGroup(ctx, tx, v); err != nil {
				return err
			}
			s.RelGroup = v
		}
		if v, ok := kv.get("dbgroup"); ok {
			if _, err := catalog.GetDBGroup(ctx, tx, v); err != nil {
				return err
			}
			s.DBGroup = v
		}
		if err := catalog.UpdateSync(ctx, tx, s); err != nil {
			return err
		}
		if err := syncProblems(ctx, tx, s.Name); err != nil {
			return err
		}
		if err := refreshCapture(ctx, e, tx, s.Name); err != nil {
			return err
		}
		var changed []string
		for _, k := range kv.order {
			changed = append(changed, k+"="+kv.vals[k])
		}
		e.printf("Changed sync %q: %s\n", s.Name, strings.Join(changed, " "))
		return nil
	})
}

// updateSyncTables handles `update sync S add|remove table T ...`: the
// tables go into or out of the sync's relgroup.
func updateSyncTables(e *env, args []string) error {
	name, verb, rest := args[0], strings.ToLower(args[1]), args[2:]
	if k := strings.ToLower(rest[0]); k == "table" || k == "tables" || k == "sequence" || k == "sequences" {
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return usagef("usage: mcp update sync NAME %s table T ...", verb)
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		s, err := catalog.GetSync(ctx, tx, name)
		if err != nil {
			return err
		}
		others, err := catalog.SyncsUsing(ctx, tx, catalog.KindRelGroup, s.RelGroup)
		if err != nil {
			return err
		}
		if len(others) > 1 {
			e.printf("Note: relgroup %q is shared by syncs %s; the change applies to all of them\n", s.RelGroup, strings.Join(others, ", "))
		}
		rg, err := catalog.GetRelGroup(ctx, tx, s.RelGroup)
		if err != nil {
			return err
		}
		if verb == "add" {
			err = addToRelGroup(ctx, e, tx, s.RelGroup, rg.DB, rest)
		} else {
			err = removeFromRelGroup(ctx, e, tx, s.RelGroup, "", rest)
		}
		if err != nil {
			return err
		}
		if verb == "add" {
			g, err := catalog.GetDBGroup(ctx, tx, s.DBGroup)
			if err != nil {
				return err
			}
			if rg, err = catalog.GetRelGroup(ctx, tx, s.RelGroup); err != nil {
				return err
			}
			if err := checkSyncDBs(ctx, e, tx, s, g, rg, s.Name); err != nil {
				return err
			}
		}
		if err := problemsOfSyncsUsing(ctx, tx, catalog.KindRelGroup, s.RelGroup); err != nil {
			return err
		}
		return refreshCapture(ctx, e, tx, others...)
	})
}
