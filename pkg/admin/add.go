package admin

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/pluginhost"
	"github.com/gobucardo/gobucardo/pkg/replicate"
)

func sortStrings(s []string) { sort.Strings(s) }

var forceFlag = &cli.BoolFlag{Name: "force", Usage: "do it even if a check fails (see the command's help)"}

func addCommand() *cli.Command {
	return &cli.Command{
		Name:  "add",
		Usage: "add a db, dbgroup, table, sequence, relgroup, sync or customcode to the catalog",
		Action: func(c *cli.Context) error {
			return usagef("add what? mcp add --help lists db, dbgroup, table, sequence, all, relgroup, sync, customcode")
		},
		Subcommands: []*cli.Command{
			{
				Name:      "db",
				Usage:     "add a replicated database",
				ArgsUsage: "NAME dsn=URL | dbname=D [host=H] [port=P] [user=U] [pass=P] [sslmode=M] [service=S] [status=active|inactive] [makedelta=on|off]",
				Description: "Adds a database that syncs can replicate. mcp connects to it first and refuses a db it\n" +
					"cannot reach, unless --force is given. The password is stored in the catalog and never shown.",
				Flags:  []cli.Flag{forceFlag},
				Action: func(c *cli.Context) error { return addDB(newEnv(c)) },
			},
			{
				Name:      "dbgroup",
				Usage:     "add a named set of dbs with roles",
				ArgsUsage: "NAME DB:ROLE [DB:ROLE ...]",
				Description: "Roles are source, target or fullcopy (aliases master=source, replica=target). A db without\n" +
					"a role is a source if it comes first, else a target.",
				Action: func(c *cli.Context) error { return addDBGroup(newEnv(c)) },
			},
			{
				Name:      "table",
				Aliases:   []string{"tables"},
				Usage:     "add tables of a db, by name or pattern",
				ArgsUsage: "[SCHEMA.]NAME|PATTERN ... db=DB [relgroup=R] [conflict_strategy=S] [makedelta=on|off]",
				Description: "Looks the tables up on db (required when the catalog has several dbs) and records each with\n" +
					"its key: the primary key, else the best unique index on NOT NULL columns. A table with\n" +
					"neither can only be copied to fullcopy targets. Patterns use * or %; names are\n" +
					"case-sensitive; quote parts with spaces or dots (public.\"My Table\").",
				Action: func(c *cli.Context) error { return addRelations(newEnv(c), catalog.KindTable) },
			},
			{
				Name:        "sequence",
				Aliases:     []string{"sequences"},
				Usage:       "add sequences of a db, by name or pattern",
				ArgsUsage:   "[SCHEMA.]NAME|PATTERN ... db=DB [relgroup=R]",
				Description: "Sequences are replicated by value: every db takes the highest source value.",
				Action:      func(c *cli.Context) error { return addRelations(newEnv(c), catalog.KindSequence) },
			},
			{
				Name:  "all",
				Usage: "add all tables or all sequences of a db",
				Action: func(c *cli.Context) error {
					return usagef("add all what? use mcp add all tables or mcp add all sequences")
				},
				Subcommands: []*cli.Command{
					addAllCommand("tables", catalog.KindTable),
					addAllCommand("sequences", catalog.KindSequence),
				},
			},
			{
				Name:      "relgroup",
				Aliases:   []string{"herd"},
				Usage:     "add an ordered set of relations",
				ArgsUsage: "NAME [RELATION ...] [db=DB]",
				Description: "The relations must be in the catalog already (mcp add table); they are replicated in the\n" +
					"order given. A relgroup holds the relations of one db.",
				Action: func(c *cli.Context) error { return addRelGroup(newEnv(c)) },
			},
			{
				Name:  "sync",
				Usage: "add a sync: a relgroup replicated over a dbgroup",
				ArgsUsage: "NAME relgroup=R | tables=T1,T2  dbs=A:source,B:source,C:target | dbgroup=G [autokick=true]\n" +
					"   [checktime=DURATION] [conflict_strategy=S] [onetimecopy=0|1|2] [status=active|inactive]\n" +
					"   [stayalive=true] [kidsalive=true] [isolation_level=repeatable read|serializable] [lifetime=DURATION]\n" +
					"   [maxkicks=N] [makedelta=on|off] [commit_every=ROWS] [deletemethod=delete|truncate|truncate_cascade]",
				Description: "tables= makes (or reuses) a relgroup named after the sync, adding tables from the first\n" +
					"source db when the catalog lacks them. dbs= reuses a dbgroup with exactly those members, or\n" +
					"makes one named after the sync. mcp checks that every table exists on every db of the sync;\n" +
					"--force skips the dbs it cannot reach. A table without a key needs fullcopy targets.",
				Flags:  []cli.Flag{forceFlag},
				Action: func(c *cli.Context) error { return addSync(newEnv(c)) },
			},
			{
				Name:      "customcode",
				Usage:     "register a plugin binary at a hook of a sync or table",
				ArgsUsage: "NAME plugin=PATH whenrun=HOOK (sync=S | table=SCHEMA.T [db=DB]) [priority=N] [status=active|inactive] [about=TEXT]",
				Description: "Hooks: " + strings.Join(catalog.Hooks, ", ") + ". The plugin's sha256 is recorded now;\n" +
					"a binary that changes afterwards is refused when it is started.",
				Action: func(c *cli.Context) error { return addCustomCode(newEnv(c)) },
			},
		},
	}
}

func addAllCommand(name, kind string) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     "add every " + kind + " of a db",
		ArgsUsage: "db=DB [relgroup=R]",
		Description: "Skips system schemas, gobucardo's own objects and " + kind + "s already in the catalog.\n" +
			"-n/-N choose and exclude schemas, -t/-T tables (patterns with * or %; repeatable).",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "schema", Aliases: []string{"n"}, Usage: "only schemas matching `PATTERN`"},
			&cli.StringSliceFlag{Name: "exclude-schema", Aliases: []string{"N"}, Usage: "not schemas matching `PATTERN`"},
			&cli.StringSliceFlag{Name: "table", Aliases: []string{"t"}, Usage: "only relations matching `PATTERN`"},
			&cli.StringSliceFlag{Name: "exclude-table", Aliases: []string{"T"}, Usage: "not relations matching `PATTERN`"},
		},
		Action: func(c *cli.Context) error { return addAll(newEnv(c), kind) },
	}
}

var dbKeys = map[string][]string{
	"dsn": {"url"}, "dbname": {"db", "database"}, "host": {"dbhost"}, "port": {"dbport"},
	"user": {"dbuser", "username"}, "pass": {"password", "dbpass"}, "sslmode": nil, "service": {"dbservice"},
	"status": nil, "makedelta": nil,
}

// applyDBSettings sets d's fields from kv and reports whether any setting
// that changes how to connect was given.
func applyDBSettings(d *catalog.DB, kv kvArgs) (connChanged bool, err error) {
	for _, k := range kv.order {
		v := kv.vals[k]
		switch k {
		case "dsn":
			*d = catalog.DB{Name: d.Name, Status: d.Status, MakeDelta: d.MakeDelta, DSN: v}
		case "dbname", "host", "user", "pass", "sslmode", "service":
			if d.DSN != "" && kv.vals["dsn"] == "" {
				d.DSN = "" // switching from a whole dsn to parts
			}
		}
		switch k {
		case "dbname":
			d.DBName = v
		case "host":
			d.Host = v
		case "user":
			d.User = v
		case "pass":
			d.Password = v
		case "sslmode":
			d.SSLMode = strings.ToLower(v)
		case "service":
			d.Service = v
		case "port":
			n, convErr := strconv.Atoi(v)
			if convErr != nil || n < 1 || n > 65535 {
				return false, catalog.Invalidf("db %s: port=%q is not a port number (1-65535)", d.Name, v)
			}
			d.Port = n
		case "status":
			v = strings.ToLower(v)
			if v != catalog.StatusActive && v != catalog.StatusInactive {
				return false, catalog.Invalidf("db %s: status=%q is not valid: use active or inactive", d.Name, v)
			}
			d.Status = v
		case "makedelta":
			b, bErr := catalog.ParseBool(v)
			if bErr != nil {
				return false, catalog.Invalidf("db %s: makedelta=%q is not valid: use on or off", d.Name, v)
			}
			d.MakeDelta = b
		}
		if k != "status" && k != "makedelta" {
			connChanged = true
		}
	}
	if _, ok := kv.vals["dsn"]; ok && len(kv.vals) > 1 {
		for k := range kv.vals {
			if k != "dsn" && k != "status" && k != "makedelta" {
				return false, catalog.Invalidf("db %s: give either dsn= or the parts (dbname=, host=, ...), not both: put %s into the dsn", d.Name, k)
			}
		}
	}
	if d.DSN == "" && d.DBName == "" && d.Service == "" {
		return false, catalog.Invalidf("db %s: say how to reach it: dbname=D [host=H port=P user=U pass=P], service=S, or dsn=URL", d.Name)
	}
	if d.SSLMode != "" {
		switch d.SSLMode {
		case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
		default:
			return false, catalog.Invalidf("db %s: sslmode=%q is not valid: use disable, allow, prefer, require, verify-ca or verify-full", d.Name, d.SSLMode)
		}
	}
	if _, err := pg.ParseConfig(d.ConnString()); err != nil {
		return false, catalog.Invalidf("db %s: the connection settings are not valid (%v): check the dsn's syntax", d.Name, err)
	}
	return connChanged, nil
}

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
	d := catalog.DB{Name: kv.pos[0], Status: catalog.StatusActive}
	if err := catalog.ValidName(catalog.KindDB, d.Name); err != nil {
		return err
	}
	if _, err := applyDBSettings(&d, kv); err != nil {
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

// parseMembers reads DB[:ROLE] items; a db without a role is a source if it
// comes first, else a target (Bucardo's rule).
func parseMembers(items []string) ([]catalog.Member, error) {
	var ms []catalog.Member
	for _, it := range strings.FieldsFunc(strings.Join(items, ","), func(r rune) bool { return r == ',' || r == ' ' }) {
		name, role, hasRole := strings.Cut(it, ":")
		m := catalog.Member{DB: name, Role: catalog.RoleTarget}
		if len(ms) == 0 {
			m.Role = catalog.RoleSource
		}
		if hasRole {
			r, err := catalog.ParseRole(role)
			if err != nil {
				return nil, catalog.Invalidf("%s: %v", it, err)
			}
			m.Role = r
		}
		ms = append(ms, m)
	}
	if len(ms) == 0 {
		return nil, usagef("name the dbs as DB:ROLE, e.g. A:source B:target")
	}
	return ms, nil
}

func describeMembers(ms []catalog.Member) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, m.DB+":"+m.Role)
	}
	return strings.Join(parts, " ")
}

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
		e.printf("Added dbgroup %q: %s\n", args[0], describeMembers(ms))
		return nil
	})
}

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

var relationKeys = map[string][]string{
	"db": {"database"}, "relgroup": {"herd"}, "conflict_strategy": {"conflict", "standard_conflict"}, "makedelta": nil,
}

// relationSettings applies conflict_strategy= and makedelta= to r.
func relationSettings(r *catalog.Relation, kv kvArgs) error {
	if v, ok := kv.get("conflict_strategy"); ok {
		if r.Kind != catalog.KindTable {
			return catalog.Invalidf("conflict_strategy applies to tables, not to %s %s", r.Kind, r.Display())
		}
		if v == "" || strings.EqualFold(v, "inherit") {
			r.ConflictStrategy = "" // as the sync says
		} else {
			s, err := catalog.ParseConflictStrategy(v)
			if err != nil {
				return fmt.Errorf("table %s: %w", r.Display(), err)
			}
			r.ConflictStrategy = s
		}
	}
	if v, ok := kv.get("makedelta"); ok {
		if r.Kind != catalog.KindTable {
			return catalog.Invalidf("makedelta applies to tables, not to %s %s", r.Kind, r.Display())
		}
		switch strings.ToLower(v) {
		case "", "inherit", "db":
			r.MakeDelta = nil
		default:
			b, err := catalog.ParseBool(v)
			if err != nil {
				return catalog.Invalidf("table %s: makedelta=%q is not valid: use on, off or inherit", r.Display(), v)
			}
			r.MakeDelta = &b
		}
	}
	return nil
}

// ensureRelGroup creates relgroup name, and says so, unless it exists.
func ensureRelGroup(e *env, ctx context.Context, q catalog.Querier, name string) error {
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
func storeFound(e *env, ctx context.Context, q catalog.Querier, db string, found []catalog.Found, kv kvArgs, skipKnown bool) (added int, err error) {
	relgroup, _ := kv.get("relgroup")
	if relgroup != "" {
		if err := ensureRelGroup(e, ctx, q, relgroup); err != nil {
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

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
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
		dbName, _ := kv.get("db")
		d, err := pickDB(ctx, tx, dbName, kind+"s")
		if err != nil {
			return err
		}
		conn, err := connectDB(ctx, d)
		if err != nil {
			return catalog.Invalidf("%v: mcp reads the %ss and their keys from the db, so it must be reachable", err, kind)
		}
		defer closeConn(ctx, conn)
		found, err := catalog.FindRelations(ctx, conn, d.Name, kind, kv.pos)
		if err != nil {
			return err
		}
		_, err = storeFound(e, ctx, tx, d.Name, found, kv, false)
		return err
	})
}

func addAll(e *env, kind string) error {
	kv, err := parseKV(e.c.Args().Slice(), map[string][]string{"db": {"database"}, "relgroup": {"herd"}})
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
		dbName, _ := kv.get("db")
		d, err := pickDB(ctx, tx, dbName, kind+"s")
		if err != nil {
			return err
		}
		conn, err := connectDB(ctx, d)
		if err != nil {
			return catalog.Invalidf("%v: mcp reads the %ss from the db, so it must be reachable", err, kind)
		}
		defer closeConn(ctx, conn)
		found, err := catalog.FindAll(ctx, conn, kind, f)
		if err != nil {
			return err
		}
		added, err := storeFound(e, ctx, tx, d.Name, found, kv, true)
		if err != nil {
			return err
		}
		e.printf("Added %s of db %q (%d found, %d already in the catalog)\n", plural(added, kind), d.Name, len(found), len(found)-added)
		return nil
	})
}

func addRelGroup(e *env) error {
	kv, err := parseKV(e.c.Args().Slice(), map[string][]string{"db": {"database"}})
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
		return addToRelGroup(e, ctx, tx, name, db, kv.pos[1:])
	})
}

// addToRelGroup appends the catalog relations that the patterns name.
func addToRelGroup(e *env, ctx context.Context, q catalog.Querier, relgroup, db string, patterns []string) error {
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

var syncKeys = func() map[string][]string {
	m := map[string][]string{
		"relgroup": {"herd"}, "tables": {"table", "relations", "relation"}, "dbs": {"databases", "database"},
		"dbgroup": nil, "conflict_strategy": {"conflict", "standard_conflict"}, "isolation_level": {"txnmode"},
		"autokick": {"ping"}, "commit_every": {"commitevery"},
	}
	for _, o := range catalog.SyncOptions {
		if _, ok := m[o]; !ok {
			m[o] = nil
		}
	}
	return m
}()

// applySyncOptions sets the options of kv other than the structural ones.
func applySyncOptions(s *catalog.Sync, kv kvArgs) error {
	for _, k := range kv.order {
		switch k {
		case "relgroup", "tables", "dbs", "dbgroup":
			continue
		}
		if err := s.Set(k, kv.vals[k]); err != nil {
			return err
		}
	}
	return nil
}

func addSync(e *env) error {
	kv, err := parseKV(e.c.Args().Slice(), syncKeys)
	if err != nil {
		return err
	}
	if len(kv.pos) != 1 {
		return usagef("usage: mcp add sync NAME relgroup=R|tables=T1,T2 dbs=A:source,B:target|dbgroup=G [option=value ...]")
	}
	s := catalog.NewSync(kv.pos[0])
	if err := catalog.ValidName(catalog.KindSync, s.Name); err != nil {
		return err
	}
	if err := applySyncOptions(&s, kv); err != nil {
		return err
	}
	relgroup, hasRG := kv.get("relgroup")
	tables, hasTables := kv.get("tables")
	dbs, hasDBs := kv.get("dbs")
	dbgroup, hasDG := kv.get("dbgroup")
	switch {
	case hasRG == hasTables:
		return usagef("sync %s: give relgroup=R or tables=T1,T2 (one of them)", s.Name)
	case hasDBs == hasDG:
		return usagef("sync %s: give dbs=A:source,B:target or dbgroup=G (one of them)", s.Name)
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		if _, err := catalog.GetSync(ctx, tx, s.Name); err == nil {
			return &catalog.ExistsError{Kind: catalog.KindSync, Name: s.Name}
		}
		// The dbgroup: named, or made from dbs=.
		var g catalog.DBGroup
		if hasDG {
			if g, err = catalog.GetDBGroup(ctx, tx, dbgroup); err != nil {
				return err
			}
		} else {
			ms, err := parseMembers([]string{dbs})
			if err != nil {
				return err
			}
			if g, err = dbGroupFor(e, ctx, tx, s.Name, ms); err != nil {
				return err
			}
		}
		s.DBGroup = g.Name
		// The relgroup: named, or made from tables=.
		if hasRG {
			s.RelGroup = relgroup
		} else {
			if err := relGroupFor(e, ctx, tx, s.Name, g, tables); err != nil {
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
		if err := checkSyncDBs(e, ctx, tx, g, rg); err != nil {
			return err
		}
		d, err := catalog.LoadSync(ctx, tx, s.Name)
		if err != nil {
			return err
		}
		if err := installCapture(e, ctx, d, e.c.Bool("force")); err != nil {
			return err
		}
		e.printf("Added sync %q: relgroup %q (%s) over dbgroup %q (%s)\n",
			s.Name, rg.Name, plural(len(rg.Relations), "relation"), g.Name, describeMembers(g.Members))
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
func dbGroupFor(e *env, ctx context.Context, q catalog.Querier, sync string, ms []catalog.Member) (catalog.DBGroup, error) {
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
		e.printf("Added dbgroup %q: %s\n", sync, describeMembers(ms))
		name = sync
	}
	return catalog.GetDBGroup(ctx, q, name)
}

// relGroupFor makes the relgroup named after the sync from a tables= list,
// adding tables the catalog lacks from the first source db.
func relGroupFor(e *env, ctx context.Context, q catalog.Querier, sync string, g catalog.DBGroup, tables string) error {
	names := strings.FieldsFunc(tables, func(r rune) bool { return r == ',' })
	if len(names) == 0 {
		return usagef("sync %s: tables= lists no tables", sync)
	}
	if err := ensureRelGroup(e, ctx, q, sync); err != nil {
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
		if _, err := storeFound(e, ctx, q, src.Name, found, kvArgs{vals: map[string]string{}}, true); err != nil {
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

// checkSyncDBs connects to every db of the sync and checks that each
// relation exists there. A db that cannot be reached is an error unless
// --force. All problems come in one list.
func checkSyncDBs(e *env, ctx context.Context, q catalog.Querier, g catalog.DBGroup, rg catalog.RelGroup) error {
	var problems []string
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
	switch len(problems) {
	case 0:
		return nil
	case 1:
		return catalog.Invalidf("%s", problems[0])
	}
	return catalog.Invalidf("%d problems:\n  - %s", len(problems), strings.Join(problems, "\n  - "))
}

var customCodeKeys = map[string][]string{
	"plugin": {"src_code", "path"}, "whenrun": nil, "sync": nil, "table": {"relation"}, "db": nil,
	"priority": nil, "status": nil, "about": nil, "timeout": nil,
}

func addCustomCode(e *env) error {
	kv, err := parseKVExtra(e.c.Args().Slice(), customCodeKeys)
	if err != nil {
		return err
	}
	if len(kv.pos) != 1 {
		return usagef("usage: mcp add customcode NAME plugin=PATH whenrun=HOOK (sync=S | table=SCHEMA.T) [priority=N] [timeout=DURATION] [SETTING=VALUE ...]")
	}
	cc := catalog.CustomCode{Name: kv.pos[0], Status: catalog.StatusActive}
	if err := catalog.ValidName(catalog.KindCustomCode, cc.Name); err != nil {
		return err
	}
	if err := applyCustomCode(&cc, kv); err != nil {
		return err
	}
	if cc.Plugin == "" || cc.WhenRun == "" {
		return usagef("customcode %s: plugin=PATH and whenrun=HOOK are required", cc.Name)
	}
	sync, hasSync := kv.get("sync")
	table, hasTable := kv.get("table")
	if hasSync == hasTable {
		return usagef("customcode %s: attach it to sync=S or to table=SCHEMA.T (one of them)", cc.Name)
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		var relID int64
		if hasSync {
			if _, err := catalog.GetSync(ctx, tx, sync); err != nil {
				return err
			}
		} else {
			db, _ := kv.get("db")
			r, err := catalog.LookupRelation(ctx, tx, catalog.KindTable, db, table)
			if err != nil {
				return err
			}
			relID = r.ID
		}
		if err := checkPlugin(e, cc); err != nil {
			return err
		}
		if err := catalog.AddCustomCode(ctx, tx, cc); err != nil {
			return err
		}
		if err := catalog.AttachCustomCode(ctx, tx, cc.Name, sync, relID); err != nil {
			return err
		}
		where := "sync " + sync
		if !hasSync {
			where = "table " + table
		}
		e.printf("Added customcode %q (%s, sha256 %s) at %s of %s\n", cc.Name, cc.Plugin, cc.SHA256[:12], cc.WhenRun, where)
		return nil
	})
}

// checkPlugin starts the plugin of cc, checks that it has the handler its
// whenrun needs and that it takes cc's settings, and stops it: a plugin that
// cannot run is refused when it is registered, not at its first run.
func checkPlugin(e *env, cc catalog.CustomCode) error {
	wait := cc.Timeout
	if wait <= 0 {
		wait = catalog.DefaultPluginTimeout
	}
	ctx, cancel := context.WithTimeout(e.ctx(), pluginhost.StartTimeout+wait)
	defer cancel()
	code := replicate.CustomCode{Name: cc.Name, Plugin: cc.Plugin, SHA256: cc.SHA256, WhenRun: cc.WhenRun, Settings: cc.Settings,
		Timeout: cc.Timeout}
	// go-plugin's own warnings (a plugin killed after a refusal) are noise here.
	client, pc, err := pluginhost.Start(ctx, e.log.WithOptions(zap.IncreaseLevel(zap.ErrorLevel)), code)
	if err != nil {
		return catalog.Invalidf("%v", err)
	}
	defer pc.Kill()
	conflict, exception, hook := client.Capabilities()
	has := map[string]bool{"conflict": conflict, "exception": exception}
	what := map[string]string{"conflict": "conflict handler", "exception": "exception handler"}
	ok, known := has[cc.WhenRun]
	if !known {
		ok, what[cc.WhenRun] = hook, "run hook"
	}
	if !ok {
		var hs []string
		for _, h := range []struct {
			on   bool
			name string
		}{{conflict, "conflict"}, {exception, "exception"}, {hook, "before_sync, after_sync, before_txn, after_txn"}} {
			if h.on {
				hs = append(hs, h.name)
			}
		}
		return catalog.Invalidf("customcode %s: plugin %s has no %s, so it cannot run at whenrun=%s: use whenrun=%s",
			cc.Name, cc.Plugin, what[cc.WhenRun], cc.WhenRun, strings.Join(hs, " or "))
	}
	return nil
}

// applyCustomCode sets plugin (with its checksum), whenrun, priority,
// status, about, timeout and the plugin's settings from kv.
func applyCustomCode(cc *catalog.CustomCode, kv kvArgs) error {
	if len(kv.extra) > 0 {
		if cc.Settings == nil {
			cc.Settings = map[string]string{}
		}
		for k, v := range kv.extra {
			if v == "" {
				delete(cc.Settings, k) // key= removes a setting
			} else {
				cc.Settings[k] = v
			}
		}
	}
	if v, ok := kv.get("timeout"); ok {
		d, err := catalog.ParseDuration(v)
		if err != nil || d <= 0 {
			return catalog.Invalidf("customcode %s: timeout=%q is not a duration such as 30s or 2m", cc.Name, v)
		}
		cc.Timeout = d
	}
	if v, ok := kv.get("plugin"); ok {
		abs, sum, err := catalog.PluginChecksum(v)
		if err != nil {
			return fmt.Errorf("customcode %s: %w", cc.Name, err)
		}
		cc.Plugin, cc.SHA256 = abs, sum
	}
	if v, ok := kv.get("whenrun"); ok {
		h, err := catalog.ParseHook(v)
		if err != nil {
			return fmt.Errorf("customcode %s: %w", cc.Name, err)
		}
		cc.WhenRun = h
	}
	if v, ok := kv.get("priority"); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return catalog.Invalidf("customcode %s: priority=%q is not a whole number", cc.Name, v)
		}
		cc.Priority = n
	}
	if v, ok := kv.get("status"); ok {
		v = strings.ToLower(v)
		if v != catalog.StatusActive && v != catalog.StatusInactive {
			return catalog.Invalidf("customcode %s: status=%q is not valid: use active or inactive", cc.Name, v)
		}
		cc.Status = v
	}
	if v, ok := kv.get("about"); ok {
		cc.About = v
	}
	return nil
}
