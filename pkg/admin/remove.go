package admin

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

func removeCommand() *cli.Command {
	sub := func(kind, usage string) *cli.Command {
		return &cli.Command{
			Name:      kind,
			Usage:     usage,
			ArgsUsage: "NAME ... [--force]",
			Flags:     []cli.Flag{forceFlag},
			Action:    func(c *cli.Context) error { return remove(newEnv(c), kind) },
		}
	}
	return &cli.Command{
		Name:    "remove",
		Aliases: []string{"rm", "delete"},
		Usage:   "remove dbs, dbgroups, tables, sequences, relgroups, syncs or customcode from the catalog",
		Description: "An object that others use is refused; --force removes the syncs that use it too. Removing\n" +
			"never touches the replicated databases (mcp uninstall db does that).",
		Action: func(c *cli.Context) error {
			return usagef("remove what? mcp remove --help lists db, dbgroup, table, sequence, relgroup, sync, customcode")
		},
		Subcommands: []*cli.Command{
			sub(catalog.KindDB, "remove dbs; --force also removes the syncs using them and their relations"),
			sub(catalog.KindDBGroup, "remove dbgroups; --force also removes the syncs using them"),
			withDB(sub(catalog.KindTable, "remove tables from the catalog; --force even if a sync replicates them")),
			withDB(sub(catalog.KindSequence, "remove sequences from the catalog; --force even if a sync replicates them")),
			sub(catalog.KindRelGroup, "remove relgroups (not their relations); --force also removes the syncs using them"),
			sub(catalog.KindSync, "remove syncs (their run history is kept)"),
			sub(catalog.KindCustomCode, "remove customcode"),
		},
	}
}

func withDB(c *cli.Command) *cli.Command {
	c.ArgsUsage = "[SCHEMA.]NAME|PATTERN ... [db=DB] [--force]"
	return c
}

func remove(e *env, kind string) error {
	kv, err := parseKV(e.c.Args().Slice(), dbKey)
	if err != nil {
		return err
	}
	if len(kv.pos) == 0 {
		return usagef("name the %s to remove: mcp remove %s NAME ...", kind, kind)
	}
	if _, ok := kv.get("db"); ok && kind != catalog.KindTable && kind != catalog.KindSequence {
		return usagef("db= applies to remove table and remove sequence only")
	}
	force := e.c.Bool("force")
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		for _, name := range kv.pos {
			var also []string
			var err error
			switch kind {
			case catalog.KindDB:
				also, err = catalog.RemoveDB(ctx, tx, name, force)
			case catalog.KindDBGroup:
				also, err = catalog.RemoveDBGroup(ctx, tx, name, force)
			case catalog.KindRelGroup:
				also, err = catalog.RemoveRelGroup(ctx, tx, name, force)
			case catalog.KindSync:
				var d catalog.SyncDetail
				if d, err = catalog.LoadSync(ctx, tx, name); err == nil {
					if err = catalog.RemoveSync(ctx, tx, name); err == nil {
						forgetCapture(ctx, e, d)
					}
				}
			case catalog.KindCustomCode:
				err = catalog.RemoveCustomCode(ctx, tx, name)
			case catalog.KindTable, catalog.KindSequence:
				err = removeRelations(ctx, e, tx, kind, kv.vals["db"], name, force)
				if err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			msg := "Removed " + kind + " \"" + name + "\""
			if len(also) > 0 {
				msg += " and " + strings.Join(also, ", ")
			}
			e.printf("%s\n", msg)
		}
		return nil
	})
}

func removeRelations(ctx context.Context, e *env, q catalog.Querier, kind, db, pattern string, force bool) error {
	rs, err := catalog.LookupRelations(ctx, q, kind, db, pattern)
	if err != nil {
		return err
	}
	if np, _ := catalog.ParseNamePattern(pattern); !np.IsGlob() && len(rs) > 1 {
		_, err := catalog.LookupRelation(ctx, q, kind, db, pattern)
		return err
	}
	for _, r := range rs {
		if err := catalog.RemoveRelation(ctx, q, r, force); err != nil {
			return err
		}
		e.printf("Removed %s %s of db %q\n", kind, r.Display(), r.DB)
	}
	return nil
}
