package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/urfave/cli/v2"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

func installCommand() *cli.Command {
	return &cli.Command{
		Name:  "install",
		Usage: "create or upgrade the catalog in the main database (idempotent)",
		Description: "Creates schema gobucardo in the main database and applies every migration it lacks, in one\n" +
			"transaction. Running it again is harmless. With --create-db the main database is created first\n" +
			"when it does not exist.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "create-db", Usage: "create the main database if it does not exist"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("install takes no arguments")
			}
			return install(newEnv(c), c.Bool("create-db"))
		},
	}
}

func install(e *env, createDB bool) error {
	cfg, err := pg.ParseConfig(e.mainDSN())
	if err != nil {
		return catalog.Invalidf("the main database's connection string (--dsn or GOBUCARDO_DSN) is not valid: %v", err)
	}
	if createDB {
		created, err := createDatabase(e.ctx(), cfg.Config.Copy())
		if err != nil {
			return err
		}
		if created {
			e.printf("Created database %q\n", cfg.Database)
		}
	}
	conn, err := pg.ConnectConfig(e.ctx(), cfg)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "3D000" { // invalid_catalog_name
			return catalog.Invalidf("database %q does not exist on %s: create it, or run mcp install --create-db", cfg.Database, hostPort(cfg))
		}
		return fmt.Errorf("cannot connect to the main database %q on %s: %w", cfg.Database, hostPort(cfg), err)
	}
	defer conn.Close(context.WithoutCancel(e.ctx()))
	res, err := catalog.Install(e.ctx(), conn)
	if err != nil {
		return err
	}
	switch res.From {
	case res.To:
		e.printf("The catalog in database %q is at version %d: nothing to do\n", cfg.Database, res.To)
	case 0:
		e.printf("Installed the gobucardo catalog (version %d) in database %q\n", res.To, cfg.Database)
	default:
		e.printf("Upgraded the catalog in database %q from version %d to %d\n", cfg.Database, res.From, res.To)
	}
	return nil
}

// createDatabase creates cfg.Database, connecting to the same server's
// postgres (else template1) database; it reports whether it created it.
func createDatabase(ctx context.Context, cfg *pgconn.Config) (bool, error) {
	name := cfg.Database
	var lastErr error
	for _, maint := range []string{"postgres", "template1"} {
		c := cfg.Copy()
		c.Database = maint
		conn, err := pgconn.ConnectConfig(ctx, c)
		if err != nil {
			lastErr = err
			continue
		}
		defer conn.Close(context.WithoutCancel(ctx))
		exists, err := catalog.DatabaseExists(ctx, conn, name)
		if err != nil {
			return false, fmt.Errorf("look up database %s: %w", name, err)
		}
		if exists {
			return false, nil
		}
		if err := catalog.CreateDatabase(ctx, conn, name); err != nil {
			return false, fmt.Errorf("create database %s: %w", name, err)
		}
		return true, nil
	}
	return false, fmt.Errorf("cannot connect to the postgres or template1 database to create %q: %w", name, pg.RedactError(lastErr, cfg.Password))
}
