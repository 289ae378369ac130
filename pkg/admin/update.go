package admin

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

func updateCommand() *cli.Command {
	return &cli.Command{
		Name:  "update",
		Usage: "change a db, dbgroup, table, relgroup, sync or customcode",
		Action: func(c *cli.Context) error {
			return usagef("update what? mcp update --help lists db, dbgroup, table, relgroup, sync, customcode")
		},
		Subcommands: []*cli.Command{
			{
				Name:        "db",
				Usage:       "change how to reach a db, its status or makedelta",
				ArgsUsage:   "NAME key=value ...   (keys as for add db)",
				Description: "A change to the connection settings is tested first, unless --force.",
				Flags:       []cli.Flag{forceFlag},
				Action:      func(c *cli.Context) error { return updateDB(newEnv(c)) },
			},
			{
				Name:      "dbgroup",
				Usage:     "rename a dbgroup, add dbs or change their roles, remove dbs",
				ArgsUsage: "NAME [name=NEW] [DB:ROLE ...] [remove DB ...]",
				Action:    func(c *cli.Context) error { return updateDBGroup(newEnv(c)) },
			},
			{
				Name:      "table",
				Usage:     "change a table's conflict_strategy or makedelta",
				ArgsUsage: "[SCHEMA.]NAME [db=DB] [conflict_strategy=S|inherit] [makedelta=on|off|inherit]",
				Action:    func(c *cli.Context) error { return updateTable(newEnv(c)) },
			},
			{
				Name:      "relgroup",
				Aliases:   []string{"herd"},
				Usage:     "add relations to a relgroup or remove them",
				ArgsUsage: "NAME add|remove RELATION ... [db=DB]",
				Action:    func(c *cli.Context) error { return updateRelGroup(newEnv(c)) },
			},
			{
				Name:  "sync",
				Usage: "change a sync's options, or add/remove tables",
				ArgsUsage: "NAME key=value ...  |  NAME add table T ...  |  NAME remove table T ...\n" +
					"   keys: relgroup, dbgroup, " + strings.Join(catalog.SyncOptions, ", "),
				Action: func(c *cli.Context) error { return updateSync(newEnv(c)) },
			},
			{
				Name:        "customcode",
				Usage:       "change a customcode; plugin=PATH pins the new binary's checksum",
				ArgsUsage:   "NAME [plugin=PATH] [whenrun=HOOK] [priority=N] [status=active|inactive] [about=TEXT]",
				Description: "Give plugin= again after rebuilding a plugin: the checksum is taken from the file now.",
				Action:      func(c *cli.Context) error { return updateCustomCode(newEnv(c)) },
			},
		},
	}
}

func updateDB(e *env) error {
	kv, err := parseKV(e.c.Args().Slice(), dbKeys)
	if err != nil {
		return err
	}
	if len(kv.pos) != 1 || len(kv.vals)+len(kv.extra) == 0 {
		return usagef("usage: mcp update db NAME key=value ...")
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		d, err := catalog.GetDB(ctx, tx, kv.pos[0])
		if err != nil {
			return err
		}
		connChanged, err := applyDBSettings(&d, kv)
		if err != nil {
			return err
		}
		if connChanged && !e.c.Bool("force") {
			conn, err := connectDB(ctx, d)
			if err != nil {
				return catalog.Invalidf("%v: fix the settings, or change them anyway with --force", err)
			}
			closeConn(ctx, conn)
		}
		if err := catalog.UpdateDB(ctx, tx, d); err != nil {
			return err
		}
		e.printf("Changed db %q (%s)\n", d.Name, d.Display())
		return nil
	})
}

func updateDBGroup(e *env) error {
	args := e.c.Args().Slice()
	if len(args) < 2 {
		return usagef("usage: mcp update dbgroup NAME [name=NEW] [DB:ROLE ...] [remove DB ...]")
	}
	name := args[0]
	var newName string
	var set, drop []string
	removing := false
	for _, a := range args[1:] {
		switch {
		case strings.HasPrefix(strings.ToLower(a), "name="):
			newName = a[len("name="):]
		case strings.EqualFold(a, "remove"):
			removing = true
		case strings.EqualFold(a, "add"):
			removing = false
		case removing:
			drop = append(drop, a)
		default:
			set = append(set, a)
		}
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		g, err := catalog.GetDBGroup(ctx, tx, name)
		if err != nil {
			return err
		}
		ms := g.Members
		for _, d := range drop {
			i := memberIndex(ms, d)
			if i < 0 {
				return catalog.Invalidf("db %q is not in dbgroup %q (%s)", d, name, describeMembers(ms))
			}
			ms = append(ms[:i:i], ms[i+1:]...)
		}
		for _, it := range set {
			db, role, ok := strings.Cut(it, ":")
			if !ok {
				return usagef("%q: give DB:ROLE (source, target or fullcopy)", it)
			}
			r, err := catalog.ParseRole(role)
			if err != nil {
				return catalog.Invalidf("%s: %v", it, err)
			}
			if i := memberIndex(ms, db); i >= 0 {
				ms[i].Role = r
			} else {
				ms = append(ms, catalog.Member{DB: db, Role: r})
			}
		}
		if len(set)+len(drop) > 0 {
			if err := catalog.SetMembers(ctx, tx, name, ms); err != nil {
				return err
			}
		}
		if newName != "" {
			if err := catalog.RenameDBGroup(ctx, tx, name, newName); err != nil {
				return err
			}
			name = newName
		}
		if err := problemsOfSyncsUsing(ctx, tx, catalog.KindDBGroup, name); err != nil {
			return err
		}
		e.printf("Changed dbgroup %q: %s\n", name, describeMembers(ms))
		return nil
	})
}

func memberIndex(ms []catalog.Member, db string) int {
	for i, m := range ms {
		if m.DB == db {
			return i
		}
	}
	return -1
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

func updateTable(e *env) error {
	kv, err := parseKV(e.c.Args().Slice(), map[string][]string{
		"db": {"database"}, "conflict_strategy": {"conflict", "standard_conflict"}, "makedelta": nil})
	if err != nil {
		return err
	}
	if len(kv.pos) != 1 || len(kv.vals)+len(kv.extra) == 0 {
		return usagef("usage: mcp update table [SCHEMA.]NAME [db=DB] conflict_strategy=S makedelta=on|off")
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
		e.printf("Changed table %s of db %q (conflict_strategy %s, makedelta %s)\n", r.Display(), r.DB,
			orDash(r.ConflictStrategy), map[bool]string{true: "set", false: "inherit"}[r.MakeDelta != nil])
		return nil
	})
}

func updateRelGroup(e *env) error {
	kv, err := parseKV(e.c.Args().Slice(), map[string][]string{"db": {"database"}})
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
			if err := addToRelGroup(e, ctx, tx, name, db, rels); err != nil {
				return err
			}
		} else if err := removeFromRelGroup(e, ctx, tx, name, db, rels); err != nil {
			return err
		}
		if err := problemsOfSyncsUsing(ctx, tx, catalog.KindRelGroup, name); err != nil {
			return err
		}
		syncs, err := catalog.SyncsUsing(ctx, tx, catalog.KindRelGroup, name)
		if err != nil {
			return err
		}
		return refreshCapture(e, ctx, tx, syncs...)
	})
}

func removeFromRelGroup(e *env, ctx context.Context, q catalog.Querier, relgroup, db string, patterns []string) error {
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
		if err := refreshCapture(e, ctx, tx, s.Name); err != nil {
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
			err = addToRelGroup(e, ctx, tx, s.RelGroup, rg.DB, rest)
		} else {
			err = removeFromRelGroup(e, ctx, tx, s.RelGroup, "", rest)
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
			if err := checkSyncDBs(e, ctx, tx, g, rg); err != nil {
				return err
			}
		}
		if err := problemsOfSyncsUsing(ctx, tx, catalog.KindRelGroup, s.RelGroup); err != nil {
			return err
		}
		return refreshCapture(e, ctx, tx, others...)
	})
}

func updateCustomCode(e *env) error {
	kv, err := parseKVExtra(e.c.Args().Slice(), map[string][]string{
		"plugin": {"src_code", "path"}, "whenrun": nil, "priority": nil, "status": nil, "about": nil, "timeout": nil})
	if err != nil {
		return err
	}
	if len(kv.pos) != 1 || len(kv.vals)+len(kv.extra) == 0 {
		return usagef("usage: mcp update customcode NAME key=value ... (a plugin's own SETTING=VALUE, or SETTING= to remove it)")
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		cc, err := catalog.GetCustomCode(ctx, tx, kv.pos[0])
		if err != nil {
			return err
		}
		if err := applyCustomCode(&cc, kv); err != nil {
			return err
		}
		if err := checkPlugin(e, cc); err != nil {
			return err
		}
		if err := catalog.UpdateCustomCode(ctx, tx, cc); err != nil {
			return err
		}
		e.printf("Changed customcode %q (%s, sha256 %s, %s, priority %d, %s)\n", cc.Name, cc.Plugin, cc.SHA256[:12],
			cc.WhenRun, cc.Priority, cc.Status)
		return nil
	})
}
