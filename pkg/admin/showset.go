package admin

// mcp show and mcp set: the settings of the daemons (catalog.SettingDefs),
// Bucardo's show and set.

import (
	"context"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// settingCommands are mcp show and mcp set.
func settingCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "show",
			Usage:     "show the settings (all, or those named): value, whether set or default, what each does",
			ArgsUsage: "[NAME...|all]",
			Action:    func(c *cli.Context) error { return showSettings(newEnv(c)) },
		},
		{
			Name:      "set",
			Usage:     "change settings; the running MCP applies them at once, without a restart",
			ArgsUsage: "NAME=VALUE ...   (VALUE default: back to the default)",
			Description: "Every value is checked before anything is stored, and all are stored in one transaction;\n" +
				"then the running MCP reloads, as on mcp reload or SIGHUP. A run in progress finishes\n" +
				"first. mcp show lists the settings; a flag of mcp run (--log-level, --purge-interval,\n" +
				"--metrics-addr) wins over the setting of the same name.",
			Action: func(c *cli.Context) error { return setSettings(newEnv(c)) },
		},
	}
}

func showSettings(e *env) error {
	names := e.c.Args().Slice()
	if len(names) == 1 && strings.EqualFold(names[0], "all") {
		names = nil
	}
	for _, n := range names {
		if _, ok := catalog.LookupSetting(strings.ToLower(n)); !ok {
			_, err := catalog.ParseSetting(n, "") // the unknown setting's sentence
			return err
		}
	}
	var vals []catalog.SettingValue
	err := e.inCatalog(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		vals, err = catalog.ShowSettings(ctx, tx)
		return err
	})
	if err != nil {
		return err
	}
	if len(names) > 0 {
		vals = slices.DeleteFunc(vals, func(v catalog.SettingValue) bool {
			return !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, v.Name) })
		})
	}
	if e.json() {
		return e.printJSON(vals)
	}
	rows := make([][]string, 0, len(vals))
	for _, v := range vals {
		source := "default"
		if v.Set {
			source = "set " + v.Changed.Local().Format("2006-01-02 15:04")
		}
		rows = append(rows, []string{v.Name, shownValue(v.Value), source, shownValue(v.Default), v.Description})
	}
	e.table([]string{"NAME", "VALUE", "SOURCE", "DEFAULT", "DESCRIPTION"}, rows)
	return nil
}

// shownValue shows an empty value (metrics_addr) so that it can be seen.
func shownValue(v string) string {
	if v == "" {
		return "(none)"
	}
	return v
}

func setSettings(e *env) error {
	args := e.c.Args().Slice()
	if len(args) == 0 {
		return usagef("set what? mcp set NAME=VALUE ..., for one mcp set purge_interval=5m; mcp show lists the settings")
	}
	as := make([]catalog.SettingAssignment, 0, len(args))
	for _, a := range args {
		name, value, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return usagef("%q is not NAME=VALUE: for one, mcp set purge_interval=5m", a)
		}
		as = append(as, catalog.SettingAssignment{Name: name, Value: value})
	}
	// Every value is checked before the catalog is even reached.
	if _, err := catalog.ParseAssignments(as); err != nil {
		return err
	}
	return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
		before, err := catalog.ShowSettings(ctx, tx)
		if err != nil {
			return err
		}
		set, err := catalog.SetSettings(ctx, tx, as)
		if err != nil {
			return err
		}
		after, err := catalog.ShowSettings(ctx, tx)
		if err != nil {
			return err
		}
		if e.json() {
			return e.printJSON(slices.DeleteFunc(after, func(v catalog.SettingValue) bool {
				return !slices.ContainsFunc(set, func(a catalog.SettingAssignment) bool { return a.Name == v.Name })
			}))
		}
		for _, a := range set {
			i := slices.IndexFunc(after, func(v catalog.SettingValue) bool { return v.Name == a.Name })
			j := slices.IndexFunc(before, func(v catalog.SettingValue) bool { return v.Name == a.Name })
			how := ""
			if !after[i].Set {
				how = " (the default)"
			}
			e.printf("%s = %s%s, was %s\n", a.Name, shownValue(after[i].Value), how, shownValue(before[j].Value))
		}
		running, err := catalog.MCPRunning(ctx, tx)
		switch {
		case err != nil:
			return err
		case running:
			e.printf("The running MCP applies them now\n")
		default:
			e.printf("No MCP is running: they apply when it starts\n")
		}
		return nil
	})
}
