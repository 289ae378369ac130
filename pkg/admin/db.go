package admin

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// connectDB connects to a catalog db, with an error that names it and the fix.
func connectDB(ctx context.Context, d catalog.DB) (*pgx.Conn, error) {
	conn, err := pg.Connect(ctx, d.ConnString())
	if err != nil {
		return nil, catalog.Invalidf("cannot connect to db %s (%s): %v", d.Name, d.Display(), pg.RedactError(err, d.Password))
	}
	return conn, nil
}

func closeConn(ctx context.Context, conn *pgx.Conn) { conn.Close(context.WithoutCancel(ctx)) }

func addDB(e *env) error {
	kv, err := parseKV(e.c.Args().Slice(), dbKeys)
	if err != nil {
		return err
	}
	if len(kv.pos) != 1 {
		return usagef("usage: mcp add db NAME dsn=URL | dbname=D [host=H] [port=P] [user=U] [pass=P] ...")
	}
	d, err := newDB(kv.pos[0], kv)
	if err != nil {
		return err
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		if _, err := catalog.GetDB(ctx, tx, d.Name); err == nil {
			return &catalog.ExistsError{Kind: catalog.KindDB, Name: d.Name}
		}
		if !e.c.Bool("force") {
			conn, err := connectDB(ctx, d)
			if err != nil {
				return catalog.Invalidf("%v: fix the settings, or add it anyway with --force", err)
			}
			closeConn(ctx, conn)
		}
		if err := catalog.AddDB(ctx, tx, d); err != nil {
			return err
		}
		e.printf("Added db %q (%s)\n", d.Name, d.Display())
		return nil
	})
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
