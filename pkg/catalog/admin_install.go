package catalog

import (
	"context"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gobucardo/gobucardo/pkg/pg"
)

// DatabaseExists reports whether the server conn is connected to has a
// database called name. It takes a bare pgconn.PgConn: mcp install
// --create-db asks the server's maintenance database (postgres, else
// template1) before the main database exists.
func DatabaseExists(ctx context.Context, conn *pgconn.PgConn, name string) (bool, error) {
	res, err := conn.ExecParams(ctx, "SELECT 1 FROM pg_database WHERE datname = $1", [][]byte{[]byte(name)}, nil, nil, nil).Close()
	if err != nil {
		return false, err
	}
	return res.RowsAffected() > 0, nil
}

// CreateDatabase creates the database name on the server conn is connected
// to, with the server's defaults.
func CreateDatabase(ctx context.Context, conn *pgconn.PgConn, name string) error {
	_, err := conn.Exec(ctx, "CREATE DATABASE "+pg.Ident(name)).ReadAll()
	return err
}
