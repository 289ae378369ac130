package admin

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/gobucardo/gobucardo/pkg/bucardoimport"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

func importCommand() *cli.Command {
	return &cli.Command{
		Name:  "import",
		Usage: "import another replicator's configuration",
		Action: func(c *cli.Context) error {
			return usagef("import what? use mcp import bucardo --from DSN")
		},
		Subcommands: []*cli.Command{{
			Name:      "bucardo",
			Usage:     "import Bucardo 5's catalog: dbs, dbgroups, tables, sequences, relgroups, syncs",
			ArgsUsage: "--from DSN [--dry-run] [--replace] [--json] | --from DSN --takeover|--rollback SYNC...|all [--timeout D]",
			Description: "Reads the catalog of Bucardo's main database (--from, a libpq string or URL) and creates the\n" +
				"same dbs (with their passwords, never shown), dbgroups, tables and sequences (keys read from\n" +
				"the dbs, as mcp add table does), relgroups in order, and syncs with their options, in one\n" +
				"transaction. Syncs are created inactive and without gobucardo's capture: Bucardo keeps\n" +
				"replicating until the cut-over. --dry-run prints the plan and changes nothing. Every setting\n" +
				"that cannot be carried (Perl customcode, databases other than PostgreSQL, options gobucardo\n" +
				"lacks) is listed with why. Importing again changes nothing; an object that exists with other\n" +
				"settings is refused unless --replace. Bucardo " + strconv.Itoa(bucardoimport.SupportedMajor) + ".x is supported.\n\n" +
				"--takeover SYNC...|all, with Bucardo running, cuts imported syncs over: it installs gobucardo's\n" +
				"capture on their sources, waits until the transactions open at that moment end, drains each\n" +
				"Bucardo sync (kick, and a run that started after it), deactivates it in Bucardo and waits for\n" +
				"its kid to leave, drops Bucardo's triggers of the sync (schema bucardo stays), and activates\n" +
				"gobucardo's sync, whose first run delivers every write since its capture was installed. A\n" +
				"step that fails says so and how to retry; running --takeover again resumes.\n\n" +
				"--rollback SYNC...|all gives taken-over syncs back: Bucardo's triggers are re-created (its\n" +
				"validate_sync), gobucardo's sync is drained through the running MCP and deactivated, and\n" +
				"Bucardo's sync is activated; writes made meanwhile are in Bucardo's deltas, nothing is copied.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "from", Usage: "Bucardo's main database: libpq key/value string or postgres:// URL"},
				&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print the plan, change nothing"},
				&cli.BoolFlag{Name: "replace", Usage: "overwrite objects that exist with other settings"},
				&cli.BoolFlag{Name: "takeover", Usage: "cut the imported syncs named (or all) over from Bucardo to gobucardo"},
				&cli.BoolFlag{Name: "rollback", Usage: "give the syncs named (or all) back to Bucardo"},
				&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "--takeover, --rollback: how long to wait for locks, open transactions and runs"},
			},
			Action: func(c *cli.Context) error {
				if c.Bool("takeover") || c.Bool("rollback") {
					switch {
					case c.Bool("takeover") && c.Bool("rollback"):
						return usagef("--takeover or --rollback: give one")
					case c.String("from") == "":
						return usagef("say where Bucardo's main database is: mcp import bucardo --from DSN --takeover|--rollback SYNC...|all")
					case c.Bool("rollback"):
						return rollbackBucardo(newEnv(c), c.String("from"))
					}
					return takeoverBucardo(newEnv(c), c.String("from"))
				}
				if c.NArg() > 0 {
					return usagef("mcp import bucardo takes --from DSN, not %q (sync names go with --takeover or --rollback)", c.Args().First())
				}
				return importBucardo(newEnv(c))
			},
		}},
	}
}

// readBucardo reads Bucardo's catalog from the database at dsn.
func readBucardo(ctx context.Context, dsn string) (bucardoimport.Catalog, string, error) {
	where := "Bucardo's main database (" + catalog.RedactDSN(dsn) + ")"
	cfg, err := pg.ParseConfig(dsn)
	if err != nil {
		return bucardoimport.Catalog{}, where, catalog.Invalidf("--from is not a valid connection string (%v): give the DSN of Bucardo's main database, e.g. dbname=bucardo host=H", pg.RedactError(err, ""))
	}
	where = fmt.Sprintf("database %q on %s", cfg.Database, hostPort(cfg))
	conn, err := pg.ConnectConfig(ctx, cfg)
	if err != nil {
		return bucardoimport.Catalog{}, where, catalog.Invalidf("cannot connect to Bucardo's main database, %s: %v: check --from", where, pg.RedactError(err, cfg.Password))
	}
	defer closeConn(ctx, conn)
	bc, err := bucardoimport.Read(ctx, conn, where)
	return bc, where, err
}

// existingCatalog is what gobucardo's catalog holds, for the plan.
func existingCatalog(ctx context.Context, q catalog.Querier) (bucardoimport.Existing, error) {
	var x bucardoimport.Existing
	var err error
	if x.DBs, err = catalog.ListDBs(ctx, q); err != nil {
		return x, err
	}
	if x.DBGroups, err = catalog.ListDBGroups(ctx, q); err != nil {
		return x, err
	}
	if x.Relations, err = catalog.ListRelations(ctx, q, ""); err != nil {
		return x, err
	}
	if x.RelGroups, err = catalog.ListRelGroups(ctx, q); err != nil {
		return x, err
	}
	x.Syncs, err = catalog.ListSyncs(ctx, q)
	return x, err
}

func importBucardo(e *env) error {
	from := e.c.String("from")
	if from == "" {
		return usagef("say where Bucardo's main database is: mcp import bucardo --from 'dbname=bucardo host=H user=U'")
	}
	bc, where, err := readBucardo(e.ctx(), from)
	if err != nil {
		return err
	}
	dry := e.c.Bool("dry-run")
	run := e.changeCatalog
	if dry {
		run = e.inCatalog
	}
	return run(func(ctx context.Context, tx pgx.Tx) error {
		have, err := existingCatalog(ctx, tx)
		if err != nil {
			return err
		}
		plan := bucardoimport.Make(bc, have, bucardoimport.Options{Replace: e.c.Bool("replace")})
		if refused := plan.Refused(); len(refused) > 0 {
			parts := make([]string, len(refused))
			for i, a := range refused {
				parts[i] = fmt.Sprintf("%s %q (%s)", a.Kind, a.Name, a.Differs)
			}
			return catalog.Invalidf("objects of Bucardo's catalog exist in gobucardo's with other settings (%s): import with --replace to overwrite them, or see the plan with mcp import bucardo --dry-run",
				strings.Join(parts, ", "))
		}
		if !dry {
			if err := applyImport(ctx, e, tx, plan); err != nil {
				return err
			}
		}
		return printImport(e, plan, where, dry)
	})
}

// dbKV is d as the key=value arguments of mcp add db, so that newDB
// checks an imported db as it checks one added by hand.
func dbKV(d catalog.DB) kvArgs {
	kv := kvArgs{vals: map[string]string{}}
	set := func(k, v string) {
		if v != "" {
			kv.vals[k] = v
			kv.order = append(kv.order, k)
		}
	}
	set("dbname", d.DBName)
	set("host", d.Host)
	if d.Port != 0 {
		set("port", strconv.Itoa(d.Port))
	}
	set("user", d.User)
	set("pass", d.Password)
	set("sslmode", d.SSLMode)
	set("service", d.Service)
	set("status", d.Status)
	set("makedelta", strconv.FormatBool(d.MakeDelta))
	return kv
}

// importer carries out a plan in one catalog transaction.
type importer struct {
	e     *env
	q     catalog.Querier
	conns map[string]*pgx.Conn // replicated dbs, by name
}

func applyImport(ctx context.Context, e *env, q catalog.Querier, plan bucardoimport.Plan) error {
	im := &importer{e: e, q: q, conns: map[string]*pgx.Conn{}}
	defer func() {
		for _, c := range im.conns {
			closeConn(ctx, c)
		}
	}()
	for _, a := range plan.Actions {
		if a.Verb == bucardoimport.Unchanged {
			continue
		}
		replace := a.Verb == bucardoimport.Replace
		var err error
		switch a.Kind {
		case catalog.KindDB:
			err = im.db(ctx, *a.DB, replace)
		case catalog.KindDBGroup:
			err = im.dbGroup(ctx, a.Name, a.Members, replace)
		case catalog.KindTable, catalog.KindSequence:
			err = im.relation(ctx, *a.Relation, replace)
		case catalog.KindRelGroup:
			err = im.relGroup(ctx, a.Name, a.RelGroup, replace)
		case catalog.KindSync:
			err = im.sync(ctx, *a.Sync, replace)
		}
		if err != nil {
			return fmt.Errorf("import %s %s: %w", a.Kind, a.Name, err)
		}
	}
	return nil
}

func (im *importer) db(ctx context.Context, d catalog.DB, replace bool) error {
	checked, err := newDB(d.Name, dbKV(d))
	if err != nil {
		return err
	}
	if replace {
		return catalog.UpdateDB(ctx, im.q, checked)
	}
	return catalog.AddDB(ctx, im.q, checked)
}

func (im *importer) dbGroup(ctx context.Context, name string, ms []catalog.Member, replace bool) error {
	if replace {
		return catalog.SetMembers(ctx, im.q, name, ms)
	}
	return catalog.AddDBGroup(ctx, im.q, name, ms)
}

// conn connects to catalog db name once per import.
func (im *importer) conn(ctx context.Context, name string) (*pgx.Conn, error) {
	if c, ok := im.conns[name]; ok {
		return c, nil
	}
	d, err := catalog.GetDB(ctx, im.q, name)
	if err != nil {
		return nil, err
	}
	c, err := connectDB(ctx, d)
	if err != nil {
		return nil, catalog.Invalidf("%v: mcp reads the keys of its tables from the db, so it must be reachable", err)
	}
	im.conns[name] = c
	return c, nil
}

// relation adds a table or sequence with the key read from its db, as mcp
// add table does, and Bucardo's per-table settings.
func (im *importer) relation(ctx context.Context, r catalog.Relation, replace bool) error {
	if replace {
		have, err := catalog.LookupRelation(ctx, im.q, r.Kind, r.DB, r.Display())
		if err != nil {
			return err
		}
		have.ConflictStrategy, have.MakeDelta, have.StrictChecking = r.ConflictStrategy, r.MakeDelta, r.StrictChecking
		return catalog.UpdateRelation(ctx, im.q, have)
	}
	conn, err := im.conn(ctx, r.DB)
	if err != nil {
		return err
	}
	found, err := catalog.FindRelations(ctx, conn, r.DB, r.Kind, []string{r.Display()})
	if err != nil {
		return err
	}
	nr := found[0].Relation(r.DB)
	nr.ConflictStrategy, nr.MakeDelta, nr.StrictChecking = r.ConflictStrategy, r.MakeDelta, r.StrictChecking
	_, err = catalog.AddRelation(ctx, im.q, nr)
	return err
}

func (im *importer) relGroup(ctx context.Context, name string, rs []catalog.Relation, replace bool) error {
	if replace {
		g, err := catalog.GetRelGroup(ctx, im.q, name)
		if err != nil {
			return err
		}
		for _, r := range g.Relations {
			if err := catalog.RemoveFromRelGroup(ctx, im.q, name, r); err != nil {
				return err
			}
		}
	} else if err := catalog.AddRelGroup(ctx, im.q, name); err != nil {
		return err
	}
	for _, r := range rs {
		have, err := catalog.LookupRelation(ctx, im.q, r.Kind, r.DB, r.Display())
		if err != nil {
			return err
		}
		if err := catalog.AddToRelGroup(ctx, im.q, name, have); err != nil {
			return err
		}
	}
	return nil
}

// sync adds (inactive) or overwrites a sync and checks it as mcp add sync
// does: the catalog's rules, and every relation on every db. It installs
// no capture: that is the cut-over's first step.
func (im *importer) sync(ctx context.Context, s catalog.Sync, replace bool) error {
	add := catalog.AddSync
	if replace {
		add = catalog.UpdateSync
	}
	if err := add(ctx, im.q, s); err != nil {
		return err
	}
	if err := syncProblems(ctx, im.q, s.Name); err != nil {
		return err
	}
	g, err := catalog.GetDBGroup(ctx, im.q, s.DBGroup)
	if err != nil {
		return err
	}
	rg, err := catalog.GetRelGroup(ctx, im.q, s.RelGroup)
	if err != nil {
		return err
	}
	if len(rg.Relations) == 0 {
		return catalog.Invalidf("relgroup %q has no relations: add some in Bucardo, or remove sync %s there, and import again", rg.Name, s.Name)
	}
	return checkSyncDBs(ctx, im.e, im.q, s, g, rg, "")
}

// importReport is mcp import bucardo --json's document.
type importReport struct {
	From   string `json:"from"`
	DryRun bool   `json:"dry_run"`
	bucardoimport.Plan
	SyncsInactive string `json:"syncs"`
}

func printImport(e *env, plan bucardoimport.Plan, where string, dry bool) error {
	if plan.Notes == nil {
		plan.Notes = []bucardoimport.Note{}
	}
	if e.json() {
		return e.printJSON(importReport{From: where, DryRun: dry, Plan: plan, SyncsInactive: bucardoimport.SyncsInactive})
	}
	verbs := map[bucardoimport.Verb][2]string{
		bucardoimport.Create:    {"Added", "Would add"},
		bucardoimport.Unchanged: {"Unchanged", "Unchanged"},
		bucardoimport.Replace:   {"Replaced", "Would replace"},
	}
	mode := "importing"
	if dry {
		mode = "dry run, nothing is changed"
	}
	e.printf("Bucardo %s at %s (%s): %d to add, %d unchanged, %d to replace\n", plan.Version, where, mode,
		plan.Count(bucardoimport.Create), plan.Count(bucardoimport.Unchanged), plan.Count(bucardoimport.Replace))
	for _, a := range plan.Actions {
		v := verbs[a.Verb][0]
		if dry {
			v = verbs[a.Verb][1]
		}
		line := fmt.Sprintf("%s %s %q: %s", v, a.Kind, a.Name, a.Detail)
		if a.Differs != "" {
			line += " (differs: " + a.Differs + ")"
		}
		e.printf("%s\n", line)
	}
	if len(plan.Notes) > 0 {
		e.printf("Not carried (%d):\n", len(plan.Notes))
		for _, n := range plan.Notes {
			e.printf("  %s: %s: %s\n", n.Object, n.Setting, n.Why)
		}
	}
	e.printf("%s.\n", bucardoimport.SyncsInactive)
	return nil
}
