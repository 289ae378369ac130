package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
			Usage: `Nagios check of the MCP and the syncs' lag: OK exit 0, WARNING 1, CRITICAL 2, UNKNOWN 3`,
			Description: "Checks that an MCP is running on this catalog and reporting, then the lag of the sync\n" +
				"named by --sync (or of every active sync): the age of the oldest change not applied to\n" +
				"every db yet, 0 for a sync in step. Prints one line, Nagios-style, with performance data\n" +
				"after |, then a line per sync; exits 0 (OK), 1 (WARNING: a lag at or over --warning, or\n" +
				"one that cannot be measured), 2 (CRITICAL: a lag at or over --critical, no MCP running,\n" +
				"the catalog unreachable) or 3 (UNKNOWN: bad arguments, such as a sync that does not exist).\n" +
				"The thresholds are each sync's overdue and expired options (Bucardo's check_bucardo_sync;\n" +
				"mcp update sync NAME overdue=5m expired=15m). --warning and --critical, when either is\n" +
				"given, replace them for every sync checked (a threshold not given is then off); 0 is none.",
			Flags: []cli.Flag{
				&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, Usage: "give up after `DURATION`"},
				&cli.StringFlag{Name: "sync", Usage: "check the lag of sync `NAME` only (all: every active sync, the default)"},
				&cli.StringFlag{Name: "warning", Aliases: []string{"w", "overdue"}, Usage: "WARNING when a lag reaches `DURATION` (0: never; default: each sync's overdue)"},
				&cli.StringFlag{Name: "critical", Aliases: []string{"c", "expired"}, Usage: "CRITICAL when a lag reaches `DURATION` (0: never; default: each sync's expired)"},
			},
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

// Nagios plugin exit statuses (and the words its first line starts with).
const (
	nagiosOK       = 0
	nagiosWarning  = 1
	nagiosCritical = 2
	nagiosUnknown  = 3
)

var nagiosWords = [...]string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}

// lagThresholds are ping's --warning and --critical; 0 is none.
type lagThresholds struct{ warning, critical time.Duration }

// syncThresholds are the thresholds ping checks sync s against: the flags
// when either was given (given), else the sync's own overdue and expired.
func syncThresholds(s syncStatus, flags lagThresholds, given bool) lagThresholds {
	if given || s.Detail == nil {
		return flags
	}
	return lagThresholds{warning: s.Detail.Overdue, critical: s.Detail.Expired}
}

// parseThresholds reads --warning and --critical.
func parseThresholds(warning, critical string) (lagThresholds, error) {
	var th lagThresholds
	var err error
	if th.warning, err = catalog.ParseDuration(warning); err != nil {
		return th, fmt.Errorf("--warning %q: %w", warning, err)
	}
	if th.critical, err = catalog.ParseDuration(critical); err != nil {
		return th, fmt.Errorf("--critical %q: %w", critical, err)
	}
	if th.warning > 0 && th.critical > 0 && th.warning > th.critical {
		return th, fmt.Errorf("--warning %s is above --critical %s: a lag would be critical before it warns", th.warning, th.critical)
	}
	return th, nil
}

// syncVerdict is the Nagios state of one sync and what to say of it: its
// lag against th (a lag that cannot be measured is a warning), how long
// ago its last good run ended (at now), and why it may not run.
func syncVerdict(s syncStatus, th lagThresholds, now time.Time) (int, string) {
	state := nagiosOK
	var b strings.Builder
	b.WriteString("sync " + s.Name)
	lag := seconds(s.LagSeconds)
	switch {
	case !s.Delta:
		b.WriteString(" copies whole tables (no lag)")
	case s.InStep:
		b.WriteString(" in step")
	case s.Unknown && s.LagSeconds == 0:
		b.WriteString(" lag unknown")
	default:
		fmt.Fprintf(&b, " lag %s", short(lag))
		if s.Unknown {
			b.WriteString(" or more")
		}
	}
	switch {
	case !s.Delta:
	case th.critical > 0 && lag >= th.critical:
		state = nagiosCritical
		fmt.Fprintf(&b, " (critical at %s)", th.critical)
	case th.warning > 0 && lag >= th.warning:
		state = nagiosWarning
		fmt.Fprintf(&b, " (warning at %s)", th.warning)
	}
	if s.Delta && !s.InStep && s.Pending > 0 {
		more := ""
		if s.Capped {
			more = "over "
		}
		fmt.Fprintf(&b, ", %s%s pending", more, plural(int(s.Pending), "change"))
	}
	if s.LastGood != nil && s.LastGood.Ended != nil {
		fmt.Fprintf(&b, ", last good run %s ago", short(now.Sub(*s.LastGood.Ended)))
	} else {
		b.WriteString(", no good run yet")
	}
	for _, src := range s.Sources {
		if src.Error != "" {
			state = max(state, nagiosWarning)
			fmt.Fprintf(&b, "; cannot measure the lag on %s: %s", src.DB, src.Error)
		}
	}
	switch {
	case s.Status != catalog.StatusActive:
		state = max(state, nagiosWarning)
		b.WriteString("; inactive: mcp activate " + s.Name + " runs it")
	case s.Paused:
		b.WriteString("; paused: " + s.PauseReason)
	case s.State == "bad" || strings.Contains(s.State, "("): // its last run failed, or its controller is not well
		b.WriteString("; " + s.State)
	}
	return state, b.String()
}

// perfData is the Nagios performance data of one sync: its lag (with the
// thresholds) and its pending changes.
func perfData(s syncStatus, th lagThresholds) string {
	if !s.Delta {
		return ""
	}
	limit := func(d time.Duration) string {
		if d <= 0 {
			return ""
		}
		return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	}
	return fmt.Sprintf("'%s lag'=%.3fs;%s;%s;0 '%s pending'=%d;;;0", s.Name, s.LagSeconds, limit(th.warning), limit(th.critical), s.Name, s.Pending)
}

// ping is mcp ping: it prints its whole report on stdout, as Nagios reads
// it, and exits with the worst state.
func ping(e *env) error {
	report := func(state int, line string, more ...string) error {
		// Nagios takes the first line for the status: an error of several
		// lines (pgx's, one per address tried) stays on it.
		line = strings.NewReplacer(":\n\t", ": ", "\n\t", "; ", "\n", " ").Replace(line)
		fmt.Fprintf(e.out, "%s: %s\n", nagiosWords[state], line)
		for _, m := range more {
			fmt.Fprintln(e.out, m)
		}
		if state == nagiosOK {
			return nil
		}
		return cli.Exit("", state)
	}
	flags, err := parseThresholds(e.c.String("warning"), e.c.String("critical"))
	given := e.c.IsSet("warning") || e.c.IsSet("critical")
	if err != nil {
		return report(nagiosUnknown, err.Error())
	}
	if e.c.NArg() > 0 {
		return report(nagiosUnknown, fmt.Sprintf("unexpected arguments %q: name a sync with --sync NAME", e.c.Args().Slice()))
	}
	ctx, cancel := context.WithTimeout(e.ctx(), e.c.Duration("timeout"))
	defer cancel()
	critical := func(format string, args ...any) error {
		return report(nagiosCritical, fmt.Sprintf(format, args...))
	}
	e.c.Context = ctx
	conn, err := e.connectCatalog()
	if err != nil {
		return critical("%s", message(err))
	}
	defer closeConn(ctx, conn)
	var names []string
	if n := e.c.String("sync"); n != "" && !strings.EqualFold(n, "all") {
		if _, err := catalog.GetSync(ctx, conn, n); err != nil {
			var nf *catalog.NotFoundError
			if errors.As(err, &nf) {
				return report(nagiosUnknown, fmt.Sprintf("there is no sync %s: mcp list syncs lists them", n))
			}
			return critical("%s", message(err))
		}
		names = []string{n}
	}
	up, err := mcpUp(ctx, conn)
	if err != nil {
		return critical("%s", message(err))
	}
	sts, _, err := loadStatus(ctx, conn, names)
	if err != nil {
		return critical("%s", message(err))
	}
	state, worst, lines, perf := nagiosOK, "", []string(nil), []string(nil)
	checked, bad := 0, 0
	for _, s := range sts {
		if len(names) == 0 && s.Status != catalog.StatusActive {
			continue
		}
		checked++
		th := syncThresholds(s, flags, given)
		st, text := syncVerdict(s, th, time.Now())
		lines = append(lines, nagiosWords[st]+": "+text)
		if st != nagiosOK {
			bad++
		}
		if p := perfData(s, th); p != "" {
			perf = append(perf, p)
		}
		if st > state || worst == "" {
			state, worst = max(state, st), text
		}
	}
	var first string
	switch {
	case len(names) == 1:
		first = worst + "; " + up
		lines = nil
	case state != nagiosOK:
		first = fmt.Sprintf("%s; %d of %s not OK; %s", worst, bad, plural(checked, "active sync"), up)
	default:
		first = up + "; " + plural(checked, "active sync") + " checked"
	}
	if len(perf) > 0 {
		first += " | " + strings.Join(perf, " ")
	}
	return report(state, first, lines...)
}

// mcpUp says that an MCP is running on the catalog and reporting; the error
// is the CRITICAL sentence when not.
func mcpUp(ctx context.Context, conn *pgx.Conn) (string, error) {
	running, err := catalog.MCPRunning(ctx, conn)
	if err != nil {
		return "", err
	}
	if !running {
		return "", errors.New("no MCP is running on this catalog")
	}
	procs, err := catalog.ListProcesses(ctx, conn)
	if err != nil {
		return "", err
	}
	for _, p := range procs {
		if p.Role != catalog.ProcessRoleMCP {
			continue
		}
		if age := time.Since(p.Updated); age > 15*time.Second {
			return "", fmt.Errorf("the MCP (pid %d on %s) has not reported for %s", p.PID, p.Host, age.Round(time.Second))
		}
		controllers := 0
		for _, q := range procs {
			if q.Role == catalog.ProcessRoleController {
				controllers++
			}
		}
		return fmt.Sprintf("MCP pid %d on %s up %s, %s", p.PID, p.Host, time.Since(p.Started).Round(time.Second),
			plural(controllers, "controller")), nil
	}
	return "", errors.New("the MCP holds its lock but has not reported yet")
}
