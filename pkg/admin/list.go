package admin

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// listNouns are what `mcp list` shows, in the order of `mcp list all`.
var listNouns = []string{"dbs", "dbgroups", "tables", "sequences", "relgroups", "syncs", "customcode"}

var listAliases = map[string]string{
	"db": "dbs", "database": "dbs", "databases": "dbs", "dbgroup": "dbgroups", "table": "tables",
	"sequence": "sequences", "relgroup": "relgroups", "herd": "relgroups", "herds": "relgroups",
	"sync": "syncs", "customcodes": "customcode", "all": "all",
}

func listCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Aliases:   []string{"ls"},
		Usage:     "show the catalog: dbs, dbgroups, tables, sequences, relgroups, syncs, customcode or all",
		ArgsUsage: "dbs|dbgroups|tables|sequences|relgroups|syncs|customcode|all [PATTERN]",
		Description: "PATTERN (with * or %) keeps the objects whose name matches; for tables and sequences it\n" +
			"matches SCHEMA.NAME or NAME. --json prints one JSON document keyed by the plural noun.",
		Action: func(c *cli.Context) error { return list(newEnv(c)) },
	}
}

func list(e *env) error {
	args := e.c.Args().Slice()
	if len(args) == 0 || len(args) > 2 {
		return usagef("usage: mcp list dbs|dbgroups|tables|sequences|relgroups|syncs|customcode|all [PATTERN]")
	}
	noun := strings.ToLower(args[0])
	if a, ok := listAliases[noun]; ok {
		noun = a
	}
	if noun != "all" && !contains(listNouns, noun) {
		return usagef("cannot list %q: use dbs, dbgroups, tables, sequences, relgroups, syncs, customcode or all", args[0])
	}
	match := func(string, string) bool { return true }
	if len(args) == 2 {
		np, err := catalog.ParseNamePattern(args[1])
		if err != nil {
			return err
		}
		match = np.Match
	}
	nouns := []string{noun}
	if noun == "all" {
		nouns = listNouns
	}
	return e.inCatalog(func(ctx context.Context, tx pgx.Tx) error {
		doc := map[string]any{}
		for i, n := range nouns {
			if !e.json() && len(nouns) > 1 {
				if i > 0 {
					e.printf("\n")
				}
				e.printf("== %s ==\n", n)
			}
			v, err := listOne(ctx, e, tx, n, match)
			if err != nil {
				return err
			}
			doc[n] = v
		}
		if e.json() {
			return e.printJSON(doc)
		}
		return nil
	})
}

// dbView is a db as shown: the password never appears.
type dbView struct {
	Name       string `json:"name"`
	Connection string `json:"connection"`
	Host       string `json:"host,omitempty"`
	Port       int    `json:"port,omitempty"`
	DBName     string `json:"dbname,omitempty"`
	User       string `json:"user,omitempty"`
	SSLMode    string `json:"sslmode,omitempty"`
	Service    string `json:"service,omitempty"`
	HasPass    bool   `json:"has_password"`
	Status     string `json:"status"`
	MakeDelta  bool   `json:"makedelta"`
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func dur(d interface{ Seconds() float64 }) string {
	if d.Seconds() == 0 {
		return "-"
	}
	return fmt.Sprint(d)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// listOne prints one kind (unless --json) and returns it for JSON.
func listOne(ctx context.Context, e *env, q catalog.Querier, noun string, match func(schema, name string) bool) (any, error) {
	var rows [][]string
	var header []string
	var out any
	switch noun {
	case "dbs":
		dbs, err := catalog.ListDBs(ctx, q)
		if err != nil {
			return nil, err
		}
		views := []dbView{}
		for _, d := range dbs {
			if !match("", d.Name) {
				continue
			}
			views = append(views, dbView{Name: d.Name, Connection: d.Display(), Host: d.Host, Port: d.Port,
				DBName: d.DBName, User: d.User, SSLMode: d.SSLMode, Service: d.Service,
				HasPass: d.Password != "" || strings.Contains(d.Display(), "***"), Status: d.Status, MakeDelta: d.MakeDelta})
			rows = append(rows, []string{d.Name, d.Status, onOff(d.MakeDelta), d.Display()})
		}
		header, out = []string{"NAME", "STATUS", "MAKEDELTA", "CONNECTION"}, views
	case "dbgroups":
		gs, err := catalog.ListDBGroups(ctx, q)
		if err != nil {
			return nil, err
		}
		views := []catalog.DBGroup{}
		for _, g := range gs {
			if match("", g.Name) {
				views = append(views, g)
				rows = append(rows, []string{g.Name, orDash(catalog.DescribeMembers(g.Members))})
			}
		}
		header, out = []string{"NAME", "MEMBERS"}, views
	case "tables", "sequences":
		kind := strings.TrimSuffix(noun, "s")
		rs, err := catalog.ListRelations(ctx, q, kind)
		if err != nil {
			return nil, err
		}
		views := []catalog.Relation{}
		for _, r := range rs {
			if !match(r.Schema, r.Name) {
				continue
			}
			views = append(views, r)
			row := []string{r.DB, r.Display()}
			if kind == catalog.KindTable {
				key := "(none: fullcopy only)"
				if len(r.KeyColumns) > 0 {
					key = strings.Join(r.KeyColumns, ",") + " (" + r.KeyKind + ")"
				}
				md := "-"
				if r.MakeDelta != nil {
					md = onOff(*r.MakeDelta)
				}
				row = append(row, key, orDash(r.ConflictStrategy), md)
			}
			rows = append(rows, append(row, orDash(strings.Join(r.RelGroups, ","))))
		}
		header = []string{"DB", "NAME"}
		if kind == catalog.KindTable {
			header = append(header, "KEY", "CONFLICT", "MAKEDELTA")
		}
		header, out = append(header, "RELGROUPS"), views
	case "relgroups":
		gs, err := catalog.ListRelGroups(ctx, q)
		if err != nil {
			return nil, err
		}
		views := []catalog.RelGroup{}
		for _, g := range gs {
			if !match("", g.Name) {
				continue
			}
			views = append(views, g)
			var names []string
			for _, r := range g.Relations {
				names = append(names, r.Display())
			}
			rows = append(rows, []string{g.Name, orDash(g.DB), orDash(strings.Join(names, ", "))})
		}
		header, out = []string{"NAME", "DB", "RELATIONS (in order)"}, views
	case "syncs":
		ss, err := catalog.ListSyncs(ctx, q)
		if err != nil {
			return nil, err
		}
		views := []catalog.Sync{}
		for _, s := range ss {
			if !match("", s.Name) {
				continue
			}
			views = append(views, s)
			rows = append(rows, []string{s.Name, s.Status, s.RelGroup, s.DBGroup, onOff(s.Autokick), dur(s.Checktime),
				s.ConflictStrategy, strconv.Itoa(s.OneTimeCopy), dur(s.Overdue), dur(s.Expired)})
		}
		header, out = []string{"NAME", "STATUS", "RELGROUP", "DBGROUP", "AUTOKICK", "CHECKTIME", "CONFLICT", "ONETIMECOPY", "OVERDUE", "EXPIRED"}, views
	case "customcode":
		cs, err := catalog.ListCustomCode(ctx, q)
		if err != nil {
			return nil, err
		}
		views := []catalog.CustomCode{}
		for _, c := range cs {
			if !match("", c.Name) {
				continue
			}
			views = append(views, c)
			var at []string
			for _, s := range c.Syncs {
				at = append(at, "sync "+s)
			}
			for _, t := range c.Tables {
				at = append(at, "table "+t)
			}
			rows = append(rows, []string{c.Name, c.WhenRun, strconv.Itoa(c.Priority), c.Status,
				orDash(strings.Join(at, ", ")), c.Plugin, c.SHA256[:12]})
		}
		header, out = []string{"NAME", "WHENRUN", "PRIORITY", "STATUS", "ATTACHED TO", "PLUGIN", "SHA256"}, views
	}
	if !e.json() {
		if len(rows) == 0 {
			e.printf("(no %s)\n", noun)
		} else {
			e.table(header, rows)
		}
	}
	return out, nil
}
