package admin

import (
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

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
				ArgsUsage: "[SCHEMA.]NAME|PATTERN ... db=DB [relgroup=R] [conflict_strategy=S] [makedelta=on|off] [strict_checking=true|false]",
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
					"   [maxkicks=N] [makedelta=on|off] [commit_every=ROWS] [deletemethod=delete|truncate|truncate_cascade]\n" +
					"   [strict_checking=true|false]",
				Description: "tables= makes (or reuses) a relgroup named after the sync, adding tables from the first\n" +
					"source db when the catalog lacks them. dbs= reuses a dbgroup with exactly those members, or\n" +
					"makes one named after the sync. mcp checks that every table exists on every db of the sync\n" +
					"with columns runs can copy (types that load, no column a target lacks unless\n" +
					"strict_checking=false); --force skips the dbs it cannot reach. A table without a key needs\n" +
					"fullcopy targets.",
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
