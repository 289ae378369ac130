package admin

import (
	"strings"

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
				Usage:     "change a table's conflict_strategy, makedelta or strict_checking",
				ArgsUsage: "[SCHEMA.]NAME [db=DB] [conflict_strategy=S|inherit] [makedelta=on|off|inherit] [strict_checking=true|false|inherit]",
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
