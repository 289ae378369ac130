package admin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/pluginhost"
	"github.com/gobucardo/gobucardo/pkg/replicate"
	"github.com/gobucardo/gobucardo/pkg/runs"
)

// installCapture installs or refreshes the sync's capture on every source.
// A source that cannot be reached is an error, or with skipUnreachable a
// warning printed.
func installCapture(ctx context.Context, e *env, d catalog.SyncDetail, skipUnreachable bool) error {
	if !d.HasDeltaRole() {
		return nil
	}
	spec := capture.SyncFrom(d)
	for _, src := range d.Sources() {
		conn, err := connectDB(ctx, src)
		if err != nil {
			if skipUnreachable {
				e.printf("Warning: %v; capture not installed there: run mcp validate %s once it is reachable\n", err, d.Name)
				continue
			}
			return catalog.Invalidf("%v: sync %s needs its capture installed there (or use --force and run mcp validate later)", err, d.Name)
		}
		err = capture.Install(ctx, conn, spec)
		closeConn(ctx, conn)
		if err != nil {
			return fmt.Errorf("install capture of sync %s on db %s: %w", d.Name, src.Name, err)
		}
		e.printf("Installed capture of sync %q on db %q (%s)\n", d.Name, src.Name, plural(len(spec.Tables), "table"))
	}
	return nil
}

// refreshCapture reinstalls the capture of the named syncs after a change,
// warning about sources it cannot reach.
func refreshCapture(ctx context.Context, e *env, q catalog.Querier, syncs ...string) error {
	for _, s := range syncs {
		d, err := catalog.LoadSync(ctx, q, s)
		if err != nil {
			return err
		}
		if err := installCapture(ctx, e, d, true); err != nil {
			return err
		}
	}
	return nil
}

// forgetCapture removes a sync from the capture of its sources.
func forgetCapture(ctx context.Context, e *env, d catalog.SyncDetail) {
	for _, src := range d.Sources() {
		conn, err := connectDB(ctx, src)
		if err != nil {
			e.printf("Warning: %v; its capture of sync %s stays there until mcp uninstall db %s\n", err, d.Name, src.Name)
			continue
		}
		if err := capture.RemoveSync(ctx, conn, d.Name); err != nil {
			e.printf("Warning: removing sync %s from the capture on db %s: %v\n", d.Name, src.Name, err)
		}
		closeConn(ctx, conn)
	}
}

func syncCommand() *cli.Command {
	return &cli.Command{
		Name:  "sync",
		Usage: "work with one sync directly, without the daemon",
		Action: func(c *cli.Context) error {
			return usagef("sync what? use mcp sync run SYNC")
		},
		Subcommands: []*cli.Command{{
			Name:      "run",
			Usage:     "run a sync once in the foreground (cron, debugging)",
			ArgsUsage: "SYNC",
			Description: "Copies what changed on the source since the last run to every target, records the run in\n" +
				"gobucardo.syncrun, and prints rows deleted and inserted and the time. Progress goes to stderr.\n" +
				"Serialization failures and deadlocks are retried with backoff.",
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "attempts", Value: 5, Usage: "tries after serialization failures or deadlocks"},
				&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress on stderr"},
			},
			Action: func(c *cli.Context) error { return syncRun(newEnv(c)) },
		}},
	}
}

func syncRun(e *env) error {
	if e.c.NArg() != 1 {
		return usagef("usage: mcp sync run SYNC")
	}
	name := e.c.Args().First()
	ctx := e.ctx()
	conn, err := e.connectCatalog()
	if err != nil {
		return err
	}
	defer closeConn(ctx, conn)
	d, err := catalog.LoadSync(ctx, conn, name)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	id, err := catalog.StartRun(ctx, conn, name, os.Getpid(), host, "Started (mcp sync run)")
	if err != nil {
		return err
	}
	stderr := e.c.App.ErrWriter
	var lastStatus time.Time
	progress := func(p replicate.Progress) {
		line := p.String()
		if !e.c.Bool("quiet") {
			fmt.Fprintln(stderr, line)
		}
		if time.Since(lastStatus) > time.Second {
			lastStatus = time.Now()
			_ = catalog.SetRunStatus(ctx, conn, id, line)
		}
	}
	// Conflicts are logged table by table as the run resolves them, so that a
	// run with many holds only one table's in memory; a failed run's are
	// forgotten again by FinishRun.
	opts := replicate.Options{Progress: progress, Log: e.log}
	runs.Sink(ctx, func() (*pgx.Conn, error) { return conn, nil }, name, id, &opts)
	spec := replicate.SyncFrom(d)
	plugins := pluginhost.New(e.log)
	defer plugins.Close()
	var runErr error
	var res replicate.Result
	if opts.Handlers, runErr = plugins.Load(ctx, spec.CustomCode); runErr == nil {
		res, runErr = replicate.RunRetrying(ctx, spec, opts, e.c.Int("attempts"))
	}
	end := runs.End(res, runErr, passwords(d)...)
	if err := catalog.FinishRun(context.WithoutCancel(ctx), conn, name, id, end); err != nil {
		return errors.Join(runErr, err)
	}
	switch runs.Classify(runErr).Kind {
	case runs.OK:
	case runs.Cancelled:
		e.printf("Run of sync %q cancelled, nothing changed: %s\n", name, pg.RedactError(runErr, passwords(d)...))
		return nil
	case runs.ConflictAbort:
		return fmt.Errorf("run of sync %s found conflicts under bucardo_abort, changed nothing and paused the sync: %w", name, runErr)
	default:
		return fmt.Errorf("run of sync %s failed: %w", name, pg.RedactError(runErr, passwords(d)...))
	}
	state := end.State
	summary := res.Summary()
	if e.json() {
		return e.printJSON(map[string]any{"sync": name, "state": state, "deletes": res.Deletes, "inserts": res.Inserts,
			"truncates": res.Truncates, "conflicts": res.Conflicts, "seconds": res.Duration.Seconds(), "tables": res.Tables})
	}
	for _, t := range res.Tables {
		if t.Mode == "sequence" || t.Keys+t.Deletes+t.Inserts == 0 && !t.Truncated {
			continue
		}
		extra := ""
		if t.Truncated {
			extra = ", truncated on the source"
		}
		if t.Conflicts > 0 {
			extra += fmt.Sprintf(", %d conflicts", t.Conflicts)
		}
		e.printf("  %s: %s, %d keys, %d deleted, %d inserted%s\n", t.Table, t.Mode, t.Keys, t.Deletes, t.Inserts, extra)
	}
	e.printf("Run of sync %q: %s\n", name, summary)
	return nil
}

func passwords(d catalog.SyncDetail) []string {
	var out []string
	for _, db := range d.DBs {
		out = append(out, db.Password)
	}
	return out
}

func validateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check every db of syncs and repair their capture; exit 1 if a problem remains",
		ArgsUsage: "SYNC...|all",
		Description: "Lists every problem in one go: unreachable dbs, missing tables, sequences or columns,\n" +
			"column types that differ, keys that are gone, missing privileges, capture triggers missing\n" +
			"or stale. It repairs the capture (installing triggers and delta tables) and nothing else.",
		Action: func(c *cli.Context) error { return validate(newEnv(c)) },
	}
}

func syncNames(ctx context.Context, q catalog.Querier, args []string) ([]string, error) {
	if len(args) == 1 && strings.EqualFold(args[0], "all") {
		ss, err := catalog.ListSyncs(ctx, q)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range ss {
			names = append(names, s.Name)
		}
		return names, nil
	}
	for _, a := range args {
		if _, err := catalog.GetSync(ctx, q, a); err != nil {
			return nil, err
		}
	}
	return args, nil
}

// syncValidation is what mcp validate found for one sync.
type syncValidation struct {
	Sync        string                 `json:"sync"`
	Problems    []string               `json:"problems"`
	Differences []replicate.Difference `json:"differences"`
	Repaired    []string               `json:"repaired"`
	Failing     int                    `json:"failing"` // problems and differences that make runs fail
}

func validate(e *env) error {
	if e.c.NArg() == 0 {
		return usagef("usage: mcp validate SYNC...|all")
	}
	ctx := e.ctx()
	conn, err := e.connectCatalog()
	if err != nil {
		return err
	}
	defer closeConn(ctx, conn)
	names, err := syncNames(ctx, conn, e.c.Args().Slice())
	if err != nil {
		return err
	}
	// Progress goes to stderr under --json, so that stdout is one document.
	progress := e.out
	if e.json() {
		progress = e.c.App.ErrWriter
	}
	total := 0
	var all []syncValidation
	for i, name := range names {
		d, err := catalog.LoadSync(ctx, conn, name)
		if err != nil {
			return err
		}
		fmt.Fprintf(progress, "[%d/%d] sync %s: relgroup %s (%s), dbs %s\n", i+1, len(names), name, d.RelGroup,
			plural(len(d.Relations), "relation"), catalog.DescribeMembers(d.Members))
		v, err := validateSync(ctx, conn, d)
		if err != nil {
			return err
		}
		all = append(all, v)
		total += v.Failing
		if e.json() {
			continue
		}
		for _, r := range v.Repaired {
			e.printf("  repaired %s\n", r)
		}
		for _, p := range v.Problems {
			e.printf("  problem: %s\n", p)
		}
		for _, df := range v.Differences {
			if df.Breaks {
				e.printf("  problem: %s\n", df.Explain(name))
			}
		}
		for _, df := range v.Differences {
			if !df.Breaks {
				e.printf("  difference: %s\n", df.Explain(name))
			}
		}
		if v.Failing == 0 {
			e.printf("  OK\n")
		}
	}
	if e.json() {
		if err := e.printJSON(map[string]any{"syncs": all, "failing": total}); err != nil {
			return err
		}
	}
	if total > 0 {
		return catalog.Invalidf("validate found %s", plural(total, "problem"))
	}
	return nil
}

// validateSync checks one sync: the catalog's rules, every db as a run
// uses it, and the capture on its sources, which it repairs.
func validateSync(ctx context.Context, conn *pgx.Conn, d catalog.SyncDetail) (syncValidation, error) {
	v := syncValidation{Sync: d.Name, Problems: []string{}, Differences: []replicate.Difference{}, Repaired: []string{}}
	problems, err := catalog.SyncProblems(ctx, conn, d.Name)
	if err != nil {
		return v, err
	}
	rep, err := replicate.Validate(ctx, replicate.SyncFrom(d))
	if err != nil {
		return v, err
	}
	v.Differences = append(v.Differences, rep.Differences...)
	if d.HasDeltaRole() {
		for _, src := range d.Sources() {
			sconn, err := connectDB(ctx, src)
			if err != nil {
				continue // reported by Validate
			}
			stale, err := capture.Check(ctx, sconn, capture.SyncFrom(d))
			if err == nil && len(stale) > 0 {
				err = capture.Install(ctx, sconn, capture.SyncFrom(d))
				if err == nil {
					for _, s := range stale {
						v.Repaired = append(v.Repaired, fmt.Sprintf("on db %s: %s", src.Name, s))
					}
				}
			}
			if err == nil {
				var notes []capture.PartitionNote
				notes, err = capture.PartitionNotes(ctx, sconn, capture.SyncFrom(d))
				for _, n := range notes {
					problems = append(problems, n.Problem(src.Name, d.Name))
				}
			}
			closeConn(ctx, sconn)
			if err != nil {
				problems = append(problems, fmt.Sprintf("db %s: the capture cannot be installed: %v", src.Name, err))
			}
		}
	}
	v.Problems = append(append(v.Problems, rep.Problems...), problems...)
	v.Failing = len(problems) + rep.Failing()
	return v, nil
}

func deltaCommand() *cli.Command {
	return &cli.Command{
		Name:      "delta",
		Aliases:   []string{"deltas"},
		Usage:     "show pending deltas per db, table and sync",
		ArgsUsage: "[DB...]",
		Action:    func(c *cli.Context) error { return delta(newEnv(c)) },
	}
}

type deltaRow struct {
	DB      string `json:"db"`
	Table   string `json:"table"`
	Sync    string `json:"sync"`
	Pending int64  `json:"pending"`
	Total   int64  `json:"total"`
}

// captureDBs returns the dbs named, or every db that is a source of a
// delta sync.
func captureDBs(ctx context.Context, q catalog.Querier, names []string) ([]catalog.DB, error) {
	var out []catalog.DB
	if len(names) > 0 && !(len(names) == 1 && strings.EqualFold(names[0], "all")) {
		for _, n := range names {
			d, err := catalog.GetDB(ctx, q, n)
			if err != nil {
				return nil, err
			}
			out = append(out, d)
		}
		return out, nil
	}
	dbs, err := catalog.ListDBs(ctx, q)
	if err != nil {
		return nil, err
	}
	for _, d := range dbs {
		syncs, _, err := catalog.DBUsers(ctx, q, d.Name)
		if err != nil {
			return nil, err
		}
		if len(syncs) > 0 {
			out = append(out, d)
		}
	}
	return out, nil
}

func delta(e *env) error {
	return e.inCatalog(func(ctx context.Context, tx pgx.Tx) error {
		dbs, err := captureDBs(ctx, tx, e.c.Args().Slice())
		if err != nil {
			return err
		}
		var out []deltaRow
		var rows [][]string
		for _, d := range dbs {
			conn, err := connectDB(ctx, d)
			if err != nil {
				return err
			}
			ok, err := capture.Installed(ctx, conn)
			if err != nil || !ok {
				closeConn(ctx, conn)
				if err != nil {
					return err
				}
				continue
			}
			backlog, err := capture.Backlog(ctx, conn)
			closeConn(ctx, conn)
			if err != nil {
				return err
			}
			for _, b := range backlog {
				r := deltaRow{DB: d.Name, Table: pg.Display(b.Schema, b.Name), Sync: b.Sync, Pending: b.Pending, Total: b.Total}
				out = append(out, r)
				rows = append(rows, []string{r.DB, r.Table, orDash(r.Sync), fmt.Sprint(r.Pending), fmt.Sprint(r.Total)})
			}
		}
		if e.json() {
			if out == nil {
				out = []deltaRow{}
			}
			return e.printJSON(map[string]any{"deltas": out})
		}
		if len(rows) == 0 {
			e.printf("(no captured tables)\n")
			return nil
		}
		e.table([]string{"DB", "TABLE", "SYNC", "PENDING", "KEPT"}, rows)
		return nil
	})
}

func purgeCommand() *cli.Command {
	return &cli.Command{
		Name:      "purge",
		Usage:     "delete deltas every sync has consumed, now",
		ArgsUsage: "[all|DB...]",
		Action: func(c *cli.Context) error {
			e := newEnv(c)
			return e.inCatalog(func(ctx context.Context, tx pgx.Tx) error {
				dbs, err := captureDBs(ctx, tx, c.Args().Slice())
				if err != nil {
					return err
				}
				for _, d := range dbs {
					conn, err := connectDB(ctx, d)
					if err != nil {
						return err
					}
					ok, err := capture.Installed(ctx, conn)
					var n int64
					if err == nil && ok {
						err = forgetUnknownSyncs(ctx, e, tx, conn, d.Name)
					}
					if err == nil && ok {
						n, err = capture.Purge(ctx, conn)
					}
					closeConn(ctx, conn)
					if err != nil {
						return fmt.Errorf("purge db %s: %w", d.Name, err)
					}
					if ok {
						e.printf("Purged %d consumed deltas on db %q\n", n, d.Name)
					}
				}
				return nil
			})
		},
	}
}

func uninstallCommand() *cli.Command {
	return &cli.Command{
		Name:  "uninstall",
		Usage: "remove gobucardo's triggers and delta tables from a replicated db",
		Action: func(c *cli.Context) error {
			return usagef("uninstall what? use mcp uninstall db NAME")
		},
		Subcommands: []*cli.Command{{
			Name:        "db",
			Usage:       "remove gobucardo's capture (triggers, delta tables, watermarks) from a db",
			ArgsUsage:   "NAME [--force]",
			Description: "Refused while a sync reads the db, unless --force; the catalog is not changed.",
			Flags:       []cli.Flag{forceFlag},
			Action: func(c *cli.Context) error {
				e := newEnv(c)
				if c.NArg() != 1 {
					return usagef("usage: mcp uninstall db NAME")
				}
				return e.inCatalog(func(ctx context.Context, tx pgx.Tx) error {
					d, err := catalog.GetDB(ctx, tx, c.Args().First())
					if err != nil {
						return err
					}
					syncs, _, err := catalog.DBUsers(ctx, tx, d.Name)
					if err != nil {
						return err
					}
					if len(syncs) > 0 && !c.Bool("force") {
						return catalog.Invalidf("db %q is used by syncs %s, which would stop working: remove them first, or use --force",
							d.Name, strings.Join(syncs, ", "))
					}
					conn, err := connectDB(ctx, d)
					if err != nil {
						return err
					}
					defer closeConn(ctx, conn)
					if err := capture.Uninstall(ctx, conn); err != nil {
						return fmt.Errorf("uninstall db %s: %w", d.Name, err)
					}
					e.printf("Removed gobucardo's capture from db %q\n", d.Name)
					return nil
				})
			},
		}},
	}
}

// forgetUnknownSyncs removes from a db's capture the syncs the catalog no
// longer has, whose old watermarks would otherwise keep every delta forever.
func forgetUnknownSyncs(ctx context.Context, e *env, q catalog.Querier, conn *pgx.Conn, db string) error {
	syncs, err := capture.Syncs(ctx, conn)
	if err != nil {
		return err
	}
	for _, s := range syncs {
		if _, err := catalog.GetSync(ctx, q, s); err == nil {
			continue
		}
		if err := capture.RemoveSync(ctx, conn, s); err != nil {
			return err
		}
		e.printf("Removed sync %q, which the catalog no longer has, from the capture on db %q\n", s, db)
	}
	return nil
}

func conflictsCommand() *cli.Command {
	return &cli.Command{
		Name:      "conflicts",
		Usage:     "show recorded conflicts: when, table, key, winner, losing values",
		ArgsUsage: "[SYNC]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "since", Usage: "only the last `DURATION` (e.g. 1h, 30m)"},
			&cli.IntFlag{Name: "limit", Value: 100, Usage: "at most N conflicts, newest first (0: all)"},
		},
		Action: func(c *cli.Context) error {
			e := newEnv(c)
			if c.NArg() > 1 {
				return usagef("usage: mcp conflicts [SYNC] [--since DURATION]")
			}
			var since time.Time
			if v := c.String("since"); v != "" {
				d, err := catalog.ParseDuration(v)
				if err != nil {
					return catalog.Invalidf("--since %q is not valid: %v", v, err)
				}
				since = time.Now().Add(-d)
			}
			return e.inCatalog(func(ctx context.Context, tx pgx.Tx) error {
				sync := c.Args().First()
				if sync != "" {
					if _, err := catalog.GetSync(ctx, tx, sync); err != nil {
						return err
					}
				}
				cs, err := catalog.ListConflicts(ctx, tx, sync, since, c.Int("limit"))
				if err != nil {
					return err
				}
				if e.json() {
					if cs == nil {
						cs = []catalog.ConflictRecord{}
					}
					return e.printJSON(map[string]any{"conflicts": cs})
				}
				if len(cs) == 0 {
					e.printf("(no conflicts)\n")
					return nil
				}
				var rows [][]string
				for _, k := range cs {
					var losing []string
					for _, l := range k.Losers {
						row := "deleted"
						if len(l.Row) > 0 && string(l.Row) != "null" {
							row = string(l.Row)
						}
						losing = append(losing, fmt.Sprintf("%s@%s: %s", l.DB, l.ChangedAt.UTC().Format("15:04:05.000"), row))
					}
					winner := k.Winner
					switch {
					case winner != "":
					case strings.HasSuffix(k.Strategy, ": merged"): // a conflict plugin wrote a merged row everywhere
						winner = "(merged)"
					default:
						winner = "(skipped)"
					}
					rows = append(rows, []string{k.ResolvedAt.Local().Format("2006-01-02 15:04:05"), k.Sync,
						pg.Display(k.Schema, k.Name), string(k.Key), winner, strings.Join(losing, "; ")})
				}
				e.table([]string{"WHEN", "SYNC", "TABLE", "KEY", "WINNER", "LOSING VALUES"}, rows)
				return nil
			})
		},
	}
}
