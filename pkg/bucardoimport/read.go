package bucardoimport

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// SupportedMajor is the major version of Bucardo whose catalog this package
// reads (tested with 5.6.0).
const SupportedMajor = 5

// Catalog is what Bucardo's main database holds, as Read found it.
type Catalog struct {
	Version     string
	DBs         []DB
	DBGroups    []DBGroup
	Goats       []Goat
	Herds       []Herd
	Syncs       []Sync
	CustomCodes []CustomCode
	// Config holds bucardo_config's rows for one sync or table (type, item).
	Config []ConfigItem
	// IsolationLevel is bucardo_config's isolation_level: a sync's when it
	// has none of its own.
	IsolationLevel string
}

// DB is a row of bucardo.db. Pass is a password: never show it.
type DB struct {
	Name, DSN, Type, Host, Port, DBName, User, Pass, Conn, Service, PGPass, Status string
	MakeDelta                                                                      bool
}

// Member is a db of a dbgroup (bucardo.dbmap).
type Member struct {
	DB, Role string
	Priority int
}

// DBGroup is a bucardo.dbgroup with its members in Bucardo's order
// (priority, highest first, then name).
type DBGroup struct {
	Name    string
	Members []Member
}

// Goat is a row of bucardo.goat: a table or sequence of one db. Nil
// pointers are NULLs: no per-table override.
type Goat struct {
	ID                              int
	DB, Schema, Name, Kind          string
	PKey, PKeyType                  string
	Autokick                        *bool
	ConflictStrategy, MakeDelta     string
	RebuildIndex                    *int
	Ghost, AnalyzeAfterCopy         bool
	VacuumAfterCopy, StrictChecking bool
	DeltaBypass                     bool
}

// Herd is a bucardo.herd (relgroup) with its goats in Bucardo's order
// (herdmap priority, highest first, then goat id).
type Herd struct {
	Name  string
	Goats []int
}

// Sync is a row of bucardo.sync. Durations are 0 when NULL.
type Sync struct {
	Name, Herd, DBGroup               string
	Stayalive, Kidsalive, Autokick    bool
	ConflictStrategy, CopyExtra       string
	DeleteMethod, Status              string
	Checktime, Overdue, Expired       time.Duration
	Lifetime                          time.Duration
	RebuildIndex, Priority            int
	AnalyzeAfterCopy, VacuumAfterCopy bool
	StrictChecking, TrackRates        bool
	OneTimeCopy, MaxKicks             int
	IsolationLevel                    string
}

// CustomCode is a bucardo.customcode (Perl) with where it is attached.
type CustomCode struct {
	Name, WhenRun, Status string
	Maps                  []CodeMap
}

// CodeMap attaches a customcode to a sync or to a goat (Goat 0: none).
type CodeMap struct {
	Sync string
	Goat int
}

// ConfigItem is a bucardo_config row for one sync or goat.
type ConfigItem struct {
	Name, Setting, Type, Item string
}

// Read checks that conn is to a Bucardo main database of a supported
// version and returns its catalog. name is how to call the database in
// errors (its connection string without password).
func Read(ctx context.Context, conn *pgx.Conn, name string) (Catalog, error) {
	var c Catalog
	var hasConfig, hasSync bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('bucardo.bucardo_config') IS NOT NULL,
		to_regclass('bucardo.sync') IS NOT NULL`).Scan(&hasConfig, &hasSync); err != nil {
		return c, fmt.Errorf("read Bucardo's catalog at %s: %w", name, err)
	}
	if !hasConfig || !hasSync {
		return c, catalog.Invalidf("%s is not a Bucardo main database (it has no bucardo.bucardo_config and bucardo.sync tables): give --from the database bucardo install created, usually dbname=bucardo", name)
	}
	err := conn.QueryRow(ctx, `SELECT coalesce((SELECT setting FROM bucardo.bucardo_config
		WHERE lower(name) = 'bucardo_version' AND item IS NULL), '')`).Scan(&c.Version)
	if err != nil {
		return c, fmt.Errorf("read Bucardo's version at %s: %w", name, err)
	}
	if err := CheckVersion(c.Version, name); err != nil {
		return c, err
	}
	steps := []func(context.Context, *pgx.Conn, *Catalog) error{readDBs, readDBGroups, readGoats, readHerds, readSyncs, readCustomCodes, readConfig}
	for _, step := range steps {
		if err := step(ctx, conn, &c); err != nil {
			return c, fmt.Errorf("read Bucardo's catalog at %s: %w", name, err)
		}
	}
	return c, nil
}

// CheckVersion says, in one sentence, when version is not a Bucardo
// version this package reads.
func CheckVersion(version, where string) error {
	major, _, _ := strings.Cut(version, ".")
	if n, err := strconv.Atoi(major); err != nil || n != SupportedMajor {
		shown := version
		if shown == "" {
			shown = "(none recorded)"
		}
		return catalog.Invalidf("Bucardo version %s at %s is not supported: mcp import bucardo reads Bucardo %d.x catalogs (tested with 5.6.0); upgrade Bucardo to 5.x first (bucardo upgrade)",
			shown, where, SupportedMajor)
	}
	return nil
}

func readDBs(ctx context.Context, conn *pgx.Conn, c *Catalog) error {
	rows, err := conn.Query(ctx, `SELECT name, dbdsn, dbtype, coalesce(dbhost, ''), coalesce(dbport, ''),
		coalesce(dbname, ''), coalesce(dbuser, ''), coalesce(dbpass, ''), dbconn, coalesce(dbservice, ''),
		coalesce(pgpass, ''), status, makedelta FROM bucardo.db ORDER BY name`)
	if err != nil {
		return err
	}
	c.DBs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (DB, error) {
		var d DB
		err := r.Scan(&d.Name, &d.DSN, &d.Type, &d.Host, &d.Port, &d.DBName, &d.User, &d.Pass, &d.Conn,
			&d.Service, &d.PGPass, &d.Status, &d.MakeDelta)
		return d, err
	})
	return err
}

func readDBGroups(ctx context.Context, conn *pgx.Conn, c *Catalog) error {
	rows, err := conn.Query(ctx, `SELECT g.name, m.db, m.role, m.priority FROM bucardo.dbgroup g
		LEFT JOIN bucardo.dbmap m ON m.dbgroup = g.name ORDER BY g.name, m.priority DESC, m.db`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var g string
		var db, role *string
		var prio *int16
		if err := rows.Scan(&g, &db, &role, &prio); err != nil {
			return err
		}
		if len(c.DBGroups) == 0 || c.DBGroups[len(c.DBGroups)-1].Name != g {
			c.DBGroups = append(c.DBGroups, DBGroup{Name: g})
		}
		if db != nil {
			last := &c.DBGroups[len(c.DBGroups)-1]
			last.Members = append(last.Members, Member{DB: *db, Role: *role, Priority: int(*prio)})
		}
	}
	return rows.Err()
}

func readGoats(ctx context.Context, conn *pgx.Conn, c *Catalog) error {
	rows, err := conn.Query(ctx, `SELECT id, db, schemaname, tablename, reltype, coalesce(pkey, ''),
		coalesce(pkeytype, ''), autokick, coalesce(conflict_strategy, ''), coalesce(makedelta, ''),
		rebuild_index::int, ghost, analyze_after_copy, vacuum_after_copy, strict_checking, delta_bypass
		FROM bucardo.goat ORDER BY id`)
	if err != nil {
		return err
	}
	c.Goats, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Goat, error) {
		var g Goat
		err := r.Scan(&g.ID, &g.DB, &g.Schema, &g.Name, &g.Kind, &g.PKey, &g.PKeyType, &g.Autokick,
			&g.ConflictStrategy, &g.MakeDelta, &g.RebuildIndex, &g.Ghost, &g.AnalyzeAfterCopy,
			&g.VacuumAfterCopy, &g.StrictChecking, &g.DeltaBypass)
		return g, err
	})
	return err
}

func readHerds(ctx context.Context, conn *pgx.Conn, c *Catalog) error {
	rows, err := conn.Query(ctx, `SELECT h.name, coalesce(array_agg(m.goat ORDER BY m.priority DESC, m.goat)
		FILTER (WHERE m.goat IS NOT NULL), '{}') FROM bucardo.herd h LEFT JOIN bucardo.herdmap m ON m.herd = h.name
		GROUP BY h.name ORDER BY h.name`)
	if err != nil {
		return err
	}
	c.Herds, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Herd, error) {
		var h Herd
		var ids []int32
		err := r.Scan(&h.Name, &ids)
		for _, id := range ids {
			h.Goats = append(h.Goats, int(id))
		}
		return h, err
	})
	return err
}

func readSyncs(ctx context.Context, conn *pgx.Conn, c *Catalog) error {
	rows, err := conn.Query(ctx, `SELECT name, coalesce(herd, ''), coalesce(dbs, ''), stayalive, kidsalive,
		conflict_strategy, copyextra, deletemethod, autokick, status,
		coalesce(extract(epoch FROM checktime), 0)::float8, coalesce(extract(epoch FROM overdue), 0)::float8,
		coalesce(extract(epoch FROM expired), 0)::float8, coalesce(extract(epoch FROM lifetime), 0)::float8,
		rebuild_index, priority, analyze_after_copy, vacuum_after_copy, strict_checking, track_rates,
		onetimecopy, maxkicks, coalesce(lower(isolation_level), '')
		FROM bucardo.sync ORDER BY name`)
	if err != nil {
		return err
	}
	c.Syncs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Sync, error) {
		var s Sync
		var check, overdue, expired, life float64
		var rebuild, prio, otc int16
		err := r.Scan(&s.Name, &s.Herd, &s.DBGroup, &s.Stayalive, &s.Kidsalive, &s.ConflictStrategy,
			&s.CopyExtra, &s.DeleteMethod, &s.Autokick, &s.Status, &check, &overdue, &expired, &life,
			&rebuild, &prio, &s.AnalyzeAfterCopy, &s.VacuumAfterCopy, &s.StrictChecking, &s.TrackRates,
			&otc, &s.MaxKicks, &s.IsolationLevel)
		s.Checktime, s.Overdue, s.Expired, s.Lifetime = secs(check), secs(overdue), secs(expired), secs(life)
		s.RebuildIndex, s.Priority, s.OneTimeCopy = int(rebuild), int(prio), int(otc)
		return s, err
	})
	return err
}

func secs(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

func readCustomCodes(ctx context.Context, conn *pgx.Conn, c *Catalog) error {
	rows, err := conn.Query(ctx, `SELECT c.name, c.whenrun, c.status, coalesce(m.sync, ''), coalesce(m.goat, 0)
		FROM bucardo.customcode c LEFT JOIN bucardo.customcode_map m ON m.code = c.id
		ORDER BY c.name, m.sync, m.goat`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var cc CustomCode
		var m CodeMap
		if err := rows.Scan(&cc.Name, &cc.WhenRun, &cc.Status, &m.Sync, &m.Goat); err != nil {
			return err
		}
		if n := len(c.CustomCodes); n == 0 || c.CustomCodes[n-1].Name != cc.Name {
			c.CustomCodes = append(c.CustomCodes, cc)
		}
		if m.Sync != "" || m.Goat != 0 {
			last := &c.CustomCodes[len(c.CustomCodes)-1]
			last.Maps = append(last.Maps, m)
		}
	}
	return rows.Err()
}

func readConfig(ctx context.Context, conn *pgx.Conn, c *Catalog) error {
	err := conn.QueryRow(ctx, `SELECT coalesce((SELECT lower(setting) FROM bucardo.bucardo_config
		WHERE lower(name) = 'isolation_level' AND item IS NULL), '')`).Scan(&c.IsolationLevel)
	if err != nil {
		return err
	}
	rows, err := conn.Query(ctx, `SELECT name, setting, type, item FROM bucardo.bucardo_config
		WHERE item IS NOT NULL ORDER BY type, item, name`)
	if err != nil {
		return err
	}
	c.Config, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (ConfigItem, error) {
		var ci ConfigItem
		err := r.Scan(&ci.Name, &ci.Setting, &ci.Type, &ci.Item)
		return ci, err
	})
	return err
}
