package admin

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

func addDBGroup(e *env) error {
	args := e.c.Args().Slice()
	if len(args) < 2 {
		return usagef("usage: mcp add dbgroup NAME DB:ROLE [DB:ROLE ...]")
	}
	ms, err := parseMembers(args[1:])
	if err != nil {
		return err
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		if err := catalog.AddDBGroup(ctx, tx, args[0], ms); err != nil {
			return err
		}
		e.printf("Added dbgroup %q: %s\n", args[0], catalog.DescribeMembers(ms))
		return nil
	})
}

func updateDBGroup(e *env) error {
	args := e.c.Args().Slice()
	if len(args) < 2 {
		return usagef("usage: mcp update dbgroup NAME [name=NEW] [DB:ROLE ...] [remove DB ...]")
	}
	name, ch := args[0], parseDBGroupChanges(args[1:])
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		g, err := catalog.GetDBGroup(ctx, tx, name)
		if err != nil {
			return err
		}
		ms, err := changeMembers(name, g.Members, ch)
		if err != nil {
			return err
		}
		if len(ch.set)+len(ch.drop) > 0 {
			if err := catalog.SetMembers(ctx, tx, name, ms); err != nil {
				return err
			}
		}
		if ch.newName != "" {
			if err := catalog.RenameDBGroup(ctx, tx, name, ch.newName); err != nil {
				return err
			}
			name = ch.newName
		}
		if err := problemsOfSyncsUsing(ctx, tx, catalog.KindDBGroup, name); err != nil {
			return err
		}
		e.printf("Changed dbgroup %q: %s\n", name, catalog.DescribeMembers(ms))
		return nil
	})
}
