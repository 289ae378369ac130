package catalog

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gobucardo/gobucardo/schema"
)

// Schema is the PostgreSQL schema that holds the catalog.
const Schema = "gobucardo"

// installLock is the advisory lock key taken while migrating, so that two
// concurrent installs apply each migration once.
const installLock = 0x676f62756361 // "gobuca"

// Querier is what catalog functions need: a *pgx.Conn or a pgx.Tx.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrNotInstalled means the main database has no catalog. Use errors.Is.
var ErrNotInstalled = errors.New("the gobucardo catalog is not installed in this database: run mcp install")

// InstallResult says what Install did.
type InstallResult struct {
	From, To int // catalog version before and after
}

// Install creates or upgrades the catalog in one transaction: it applies, in
// order, every embedded migration newer than the installed version. It is
// idempotent, and refuses a catalog newer than this build knows.
func Install(ctx context.Context, conn *pgx.Conn) (InstallResult, error) {
	migrations, err := schema.Migrations()
	if err != nil {
		return InstallResult{}, err
	}
	latest := migrations[len(migrations)-1].Version
	var res InstallResult
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(installLock)); err != nil {
			return fmt.Errorf("lock catalog: %w", err)
		}
		stmts := []string{
			"SET LOCAL client_min_messages = warning",
			"CREATE SCHEMA IF NOT EXISTS gobucardo",
			`CREATE TABLE IF NOT EXISTS gobucardo.schema_migration (
				version integer PRIMARY KEY,
				name    text NOT NULL,
				applied timestamptz NOT NULL DEFAULT now())`,
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("prepare catalog: %w", err)
			}
		}
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM gobucardo.schema_migration").Scan(&res.From); err != nil {
			return fmt.Errorf("read catalog version: %w", err)
		}
		if res.From > latest {
			return fmt.Errorf("the catalog is at version %d but this mcp knows only up to %d: use a newer mcp", res.From, latest)
		}
		for _, m := range migrations[res.From:] {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("apply migration %04d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO gobucardo.schema_migration (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
				return fmt.Errorf("record migration %d: %w", m.Version, err)
			}
		}
		res.To = latest
		return nil
	})
	return res, err
}

// CheckVersion returns nil when the catalog is installed at the version this
// build expects, ErrNotInstalled when there is none, and an error saying
// what to run otherwise.
func CheckVersion(ctx context.Context, q Querier) error {
	var installed bool
	if err := q.QueryRow(ctx, "SELECT to_regclass('gobucardo.schema_migration') IS NOT NULL").Scan(&installed); err != nil {
		return fmt.Errorf("read catalog version: %w", err)
	}
	if !installed {
		return ErrNotInstalled
	}
	var v *int
	if err := q.QueryRow(ctx, "SELECT max(version) FROM gobucardo.schema_migration").Scan(&v); err != nil {
		return fmt.Errorf("read catalog version: %w", err)
	}
	latest := schema.Latest()
	switch {
	case v == nil:
		return ErrNotInstalled
	case *v < latest:
		return fmt.Errorf("the catalog is at version %d, this mcp needs %d: run mcp install to upgrade it", *v, latest)
	case *v > latest:
		return fmt.Errorf("the catalog is at version %d but this mcp knows only up to %d: use a newer mcp", *v, latest)
	}
	return nil
}
