package admin

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// Exit statuses of mcp kick (CLI.md).
const (
	kickTimedOut = 1
	kickFailed   = 2
	kickError    = 3
)

// controlCommands are the commands that ask the running MCP for something or
// change what it runs.
func controlCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "reload",
			Usage:     "make the running MCP reread the catalog (and the named syncs, or all)",
			ArgsUsage: "[SYNC|PATTERN...]",
			Action: func(c *cli.Context) error {
				e := newEnv(c)
				return e.tellMCP(catalog.AdminRequest{Verb: catalog.AdminReload, Syncs: c.Args().Slice()}, "Reloaded")
			},
		},
		{
			Name:      "kick",
			Usage:     "ask for a run of syncs now; with --timeout wait for it (exit 0 done, 1 timed out, 2 run failed, 3 error)",
			ArgsUsage: "SYNC|PATTERN|all... [SECONDS]",
			Description: "SYNC is a sync's name, PATTERN names the syncs it matches (% or * for any characters:\n" +
				"'web%'), all every sync; the inactive or paused syncs a PATTERN or all matches are left out.\n" +
				"A last argument that is a whole number is a timeout in seconds, as in Bucardo: mcp kick\n" +
				"shop 10 is mcp kick shop --timeout 10s (no sync can be named 10: names begin with a letter).",
			Flags:  []cli.Flag{&cli.DurationFlag{Name: "timeout", Usage: "wait up to `DURATION` for the run (0: as long as it takes)"}},
			Action: func(c *cli.Context) error { return kick(newEnv(c)) },
		},
		syncStatusCommand("activate", "make syncs active: the MCP starts their controllers", catalog.StatusActive),
		syncStatusCommand("deactivate", "make syncs inactive: the MCP stops their controllers", catalog.StatusInactive),
		pauseCommand("pause", "stop running syncs until resumed (their controllers stay up); waits for a run in progress", true),
		pauseCommand("resume", "run paused syncs again", false),
		{
			Name:  "ping",
			Usage: `check the MCP is up, Nagios-style: "OK: ..." exit 0, "CRITICAL: ..." exit 2`,
			Flags: []cli.Flag{&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, Usage: "give up after `DURATION`"}},
			Action: func(c *cli.Context) error {
				return ping(newEnv(c))
			},
		},
		{
			Name:      "message",
			Usage:     "write a line into the running MCP's log",
			ArgsUsage: `"text"`,
			Action: func(c *cli.Context) error {
				e := newEnv(c)
				text := strings.Join(c.Args().Slice(), " ")
				if strings.TrimSpace(text) == "" {
					return usagef(`usage: mcp message "text"`)
				}
				if len(text) > 7000 {
					return catalog.Invalidf("the message is %d bytes; at most 7000 fit: shorten it", len(text))
				}
				// The text as always sent: without the spaces it ends with.
				return e.tellMCP(catalog.AdminRequest{Verb: catalog.AdminMessage, Text: strings.TrimRightFunc(text, unicode.IsSpace)}, "")
			},
		},
	}
}

// tellMCP sends r to the running MCP; its syncs must exist (or be
// patterns that match some, see resolveSyncs). done, when
// given, is the verb of the line printed for each sync (or every sync).
func (e *env) tellMCP(r catalog.AdminRequest, done string) error {
	conn, err := e.connectCatalog()
	if err != nil {
		return err
	}
	defer closeConn(e.ctx(), conn)
	if len(r.Syncs) > 0 {
		if r.Syncs, err = syncArgs(e.ctx(), conn, r.Syncs); err != nil {
			return err
		}
	}
	if err := requireMCP(e.ctx(), conn); err != nil {
		return err
	}
	if err := catalog.NotifyMCP(e.ctx(), conn, r); err != nil {
		return err
	}
	if done != "" {
		if len(r.Syncs) == 0 {
			e.printf("%s every sync\n", done)
		}
		for _, s := range r.Syncs {
			e.printf("%s sync %s\n", done, s)
		}
	}
	return nil
}

func requireMCP(ctx context.Context, conn *pgx.Conn) error {
	running, err := catalog.MCPRunning(ctx, conn)
	if err != nil {
		return err
	}
	if !running {
		return catalog.Invalidf("no MCP is running on this catalog: start one with mcp start (or mcp run under a process manager)")
	}
	return nil
}

func kick(e *env) error {
	c := e.c
	args, timeout, bare, err := kickArgs(c.Args().Slice())
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return usagef("usage: mcp kick SYNC... [SECONDS] [--timeout DURATION]")
	}
	if bare && c.IsSet("timeout") {
		return usagef("mcp kick: a timeout of %s and --timeout %s: give one", timeout, c.Duration("timeout"))
	}
	wait := bare || c.IsSet("timeout")
	if !bare {
		timeout = c.Duration("timeout")
	}
	fail := func(err error) error { return cli.Exit(message(err), kickError) }
	conn, err := e.connectCatalog()
	if err != nil {
		return fail(err)
	}
	defer closeConn(e.ctx(), conn)
	ctx := e.ctx()
	matched, err := syncArgs(ctx, conn, args)
	if err != nil {
		return fail(err)
	}
	var names, skipped []string
	for _, name := range matched {
		why, err := unkickable(ctx, conn, name)
		switch {
		case err != nil:
			return fail(err)
		case why == nil:
			names = append(names, name)
		case contains(args, name):
			return fail(why) // named: its state is the user's mistake
		default:
			skipped = append(skipped, "Skipped: "+message(why)+"\n")
		}
	}
	if len(names) == 0 {
		return fail(catalog.Invalidf("no active, unpaused sync matches %s: mcp status shows why", strings.Join(args, " ")))
	}
	if err := requireMCP(ctx, conn); err != nil {
		return fail(err)
	}
	t0, err := catalog.ClockTimestamp(ctx, conn)
	if err != nil {
		return fail(err)
	}
	if err := catalog.NotifyMCP(ctx, conn, catalog.AdminRequest{Verb: catalog.AdminKick, Syncs: names}); err != nil {
		return fail(err)
	}
	for _, s := range skipped {
		e.printf("%s", s)
	}
	if !wait {
		for _, name := range names {
			e.printf("Kicked sync %s\n", name)
		}
		return nil
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	worst := 0
	for _, name := range names {
		state, status, err := waitForRun(ctx, conn, name, t0, deadline)
		switch {
		case err != nil:
			return fail(err)
		case state == "":
			e.printf("Kick %s: timed out after %s\n", name, timeout)
			worst = max(worst, kickTimedOut)
		case state == catalog.RunBad:
			e.printf("Kick %s: run failed: %s\n", name, status)
			worst = kickFailed
		default:
			e.printf("Kick %s: %s\n", name, status)
		}
	}
	if worst != 0 {
		return cli.Exit("", worst)
	}
	return nil
}

// unkickable says why a kick of sync would do nothing (nil: it would run).
func unkickable(ctx context.Context, conn *pgx.Conn, name string) (why, err error) {
	s, err := catalog.GetSync(ctx, conn, name)
	if err != nil {
		return nil, err
	}
	if s.Status != catalog.StatusActive {
		return catalog.Invalidf("sync %s is inactive: mcp activate %s first", name, name), nil
	}
	paused, reason, err := catalog.Paused(ctx, conn, name)
	if err != nil {
		return nil, err
	}
	if paused {
		return &catalog.PausedError{Sync: name, Reason: reason}, nil
	}
	return nil, nil
}

// waitForRun waits for the first run of sync started at or after t0 to end;
// state is "" when the deadline passed first.
func waitForRun(ctx context.Context, conn *pgx.Conn, sync string, t0, deadline time.Time) (state, status string, err error) {
	for {
		state, status, ended, err := catalog.FirstRunEndedSince(ctx, conn, sync, t0)
		if err != nil {
			return "", "", err
		}
		if ended {
			return state, status, nil
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return "", "", nil
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func syncStatusCommand(name, usage, status string) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: "SYNC|PATTERN|all...",
		Action: func(c *cli.Context) error {
			e := newEnv(c)
			if c.NArg() == 0 {
				return usagef("usage: mcp %s SYNC|PATTERN|all...", name)
			}
			return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
				syncs, err := syncArgs(ctx, tx, c.Args().Slice())
				if err != nil {
					return err
				}
				for _, s := range syncs {
					sync, err := catalog.GetSync(ctx, tx, s)
					if err != nil {
						return err
					}
					sync.Status = status
					if err := catalog.UpdateSync(ctx, tx, sync); err != nil {
						return err
					}
					e.printf("Sync %s is %s\n", s, status)
				}
				return nil
			})
		},
	}
}

func pauseCommand(name, usage string, pause bool) *cli.Command {
	flags := []cli.Flag{&cli.StringFlag{Name: "reason", Value: "paused by mcp pause", Usage: "shown by mcp status"}}
	if pause {
		flags = append(flags, &cli.DurationFlag{Name: "timeout", Value: time.Minute,
			Usage: "how long to wait for a run in progress to end (exit 1 when it has not)"})
	}
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: "SYNC|PATTERN|all...",
		Flags:     flags,
		Action: func(c *cli.Context) error {
			e := newEnv(c)
			if c.NArg() == 0 {
				return usagef("usage: mcp %s SYNC|PATTERN|all...", name)
			}
			var syncs []string
			err := e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
				var err error
				if syncs, err = syncArgs(ctx, tx, c.Args().Slice()); err != nil {
					return err
				}
				for _, s := range syncs {
					if pause {
						err = catalog.Pause(ctx, tx, s, c.String("reason"))
					} else {
						err = catalog.Resume(ctx, tx, s)
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil || !pause {
				if err == nil {
					for _, s := range syncs {
						e.printf("Resumed sync %s\n", s)
					}
				}
				return err
			}
			return waitPaused(e, syncs)
		},
	}
}

// waitPaused waits for the runs in progress of the paused syncs to end:
// once mcp pause returns, nothing of those syncs runs until mcp resume.
func waitPaused(e *env, syncs []string) error {
	ctx, cancel := context.WithTimeout(e.ctx(), e.c.Duration("timeout"))
	defer cancel()
	conn, err := e.connectCatalog()
	if err != nil {
		return err
	}
	defer closeConn(context.WithoutCancel(ctx), conn)
	for _, s := range syncs {
		if err := catalog.WaitForRuns(ctx, conn, s); err != nil {
			if ctx.Err() != nil {
				return cli.Exit(fmt.Sprintf("Paused sync %s, but its run in progress has not ended after %s: "+
					"it stops after that run (mcp status %s shows it)", s, e.c.Duration("timeout"), s), 1)
			}
			return err
		}
		e.printf("Paused sync %s\n", s)
	}
	return nil
}

func ping(e *env) error {
	ctx, cancel := context.WithTimeout(e.ctx(), e.c.Duration("timeout"))
	defer cancel()
	critical := func(format string, args ...any) error {
		return cli.Exit("CRITICAL: "+fmt.Sprintf(format, args...), 2)
	}
	e.c.Context = ctx
	conn, err := e.connectCatalog()
	if err != nil {
		return critical("%s", message(err))
	}
	defer closeConn(ctx, conn)
	running, err := catalog.MCPRunning(ctx, conn)
	if err != nil {
		return critical("%v", err)
	}
	if !running {
		return critical("no MCP is running on this catalog")
	}
	procs, err := catalog.ListProcesses(ctx, conn)
	if err != nil {
		return critical("%v", err)
	}
	for _, p := range procs {
		if p.Role != catalog.ProcessRoleMCP {
			continue
		}
		if age := time.Since(p.Updated); age > 15*time.Second {
			return critical("the MCP (pid %d on %s) has not reported for %s", p.PID, p.Host, age.Round(time.Second))
		}
		controllers := 0
		for _, q := range procs {
			if q.Role == catalog.ProcessRoleController {
				controllers++
			}
		}
		fmt.Fprintf(e.out, "OK: MCP pid %d on %s up %s, %d controllers\n", p.PID, p.Host,
			time.Since(p.Started).Round(time.Second), controllers)
		return nil
	}
	return critical("the MCP holds its lock but has not reported yet")
}
