package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/logging"
	"github.com/gobucardo/gobucardo/pkg/mcp"
)

// Exit statuses of mcp kick (CLI.md).
const (
	kickTimedOut = 1
	kickFailed   = 2
	kickError    = 3
)

// runDir is where mcp start keeps its pid and log files by default.
func runDir() string {
	if os.Geteuid() == 0 {
		return "/var/run/gobucardo"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "gobucardo")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("gobucardo-%d", os.Geteuid()))
}

var (
	pidFileFlag = &cli.StringFlag{Name: "pid-file", Usage: "write the MCP's pid here (default for mcp start: " + runDir() + "/mcp.pid)"}
	logFileFlag = &cli.StringFlag{Name: "log-file", Usage: "append the logs of every process here instead of stderr"}
	// purgeIntervalFlag sets mcp.Options.PurgeInterval; 0 turns the purge off.
	purgeIntervalFlag = &cli.DurationFlag{Name: "purge-interval", Value: mcp.DefaultPurgeInterval,
		Usage: "delete the deltas every sync has consumed on their sources every `DURATION` (0: never; mcp purge does it by hand)"}
)

func daemonCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:  "run",
			Usage: "run the MCP in the foreground (for systemd, supervisord, runit, ...)",
			Description: "Holds the catalog's lock (a second MCP is refused), starts one controller per active sync,\n" +
				"listens for kicks and admin requests, and restarts whatever dies. SIGTERM or SIGINT stop it\n" +
				"and every process it started; SIGHUP reloads every sync. Logs of every process go to\n" +
				"stderr (or --log-file) as JSON lines with role, sync and pid. Every --purge-interval it\n" +
				"deletes, on each source db of the active syncs, the deltas that every sync reading them has\n" +
				"consumed: a paused, inactive or failing sync keeps what it has not read (mcp status SYNC\n" +
				"shows how much).",
			Flags: []cli.Flag{pidFileFlag, logFileFlag, purgeIntervalFlag,
				&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
				&cli.StringFlag{Name: "controller", Usage: "the controller binary (default: beside mcp)"},
				&cli.StringFlag{Name: "kid", Usage: "the kid binary (default: beside mcp)"},
				&cli.BoolFlag{Name: "dsn-stdin", Hidden: true, Usage: "read the main database's DSN from stdin (mcp start)"},
			},
			Action: func(c *cli.Context) error { return runMCP(newEnv(c)) },
		},
		{
			Name:      "start",
			Usage:     "start the MCP in the background, with a pid file and a log file",
			ArgsUsage: `["reason"]`,
			Flags: []cli.Flag{pidFileFlag, logFileFlag, purgeIntervalFlag,
				&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
				&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "how long to wait for it to be up"}},
			Action: func(c *cli.Context) error { return startMCP(newEnv(c)) },
		},
		{
			Name:      "stop",
			Usage:     "stop the MCP, its controllers and kids, and wait until they are gone",
			ArgsUsage: `["reason"]`,
			Flags:     []cli.Flag{pidFileFlag, &cli.DurationFlag{Name: "timeout", Value: time.Minute, Usage: "how long to wait"}},
			Action:    func(c *cli.Context) error { return stopMCP(newEnv(c), true) },
		},
		{
			Name:  "restart",
			Usage: "stop the MCP, then start it again in the background",
			Flags: []cli.Flag{pidFileFlag, logFileFlag, purgeIntervalFlag,
				&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
				&cli.DurationFlag{Name: "timeout", Value: time.Minute, Usage: "how long to wait for each step"}},
			Action: func(c *cli.Context) error {
				e := newEnv(c)
				if err := stopMCP(e, false); err != nil {
					return err
				}
				return startMCP(e)
			},
		},
		{
			Name:      "reload",
			Usage:     "make the running MCP reread the catalog (and the named syncs, or all)",
			ArgsUsage: "[SYNC...]",
			Action: func(c *cli.Context) error {
				e := newEnv(c)
				return e.tellMCP(c.Args().Slice(), "reload", "Reloaded")
			},
		},
		{
			Name:      "kick",
			Usage:     "ask for a run of syncs now; with --timeout wait for it (exit 0 done, 1 timed out, 2 run failed, 3 error)",
			ArgsUsage: "SYNC...",
			Flags:     []cli.Flag{&cli.DurationFlag{Name: "timeout", Usage: "wait up to `DURATION` for the run (0: as long as it takes)"}},
			Action:    func(c *cli.Context) error { return kick(newEnv(c)) },
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
				return e.tellMCP(nil, "message "+text, "")
			},
		},
		statusCommand(),
		psCommand(),
	}
}

// binaryBeside returns the path of a sibling binary of mcp.
func binaryBeside(name string) string {
	self, err := os.Executable()
	if err != nil {
		return name
	}
	return filepath.Join(filepath.Dir(self), name)
}

func runMCP(e *env) error {
	c := e.c
	dsn := e.mainDSN()
	if c.Bool("dsn-stdin") {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read the DSN from stdin: %w", err)
		}
		dsn = strings.TrimRight(line, "\r\n")
	}
	level, err := zapcore.ParseLevel(c.String("log-level"))
	if err != nil {
		return usagef("--log-level %q: use debug, info, warn or error", c.String("log-level"))
	}
	out := logging.Stderr
	if f := c.String("log-file"); f != "" {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return fmt.Errorf("log file: %w", err)
		}
		lf, err := os.OpenFile(f, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("log file: %w", err)
		}
		defer lf.Close()
		out = zapcore.Lock(lf)
	}
	log := logging.New(out, level, "mcp").With(zap.Int(logging.FieldPID, os.Getpid()))
	if pf := c.String("pid-file"); pf != "" {
		if err := os.MkdirAll(filepath.Dir(pf), 0o755); err != nil {
			return fmt.Errorf("pid file: %w", err)
		}
		if err := os.WriteFile(pf, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return fmt.Errorf("pid file: %w", err)
		}
		defer os.Remove(pf)
	}
	ctrl, kidBin := c.String("controller"), c.String("kid")
	if ctrl == "" {
		ctrl = binaryBeside("controller")
	}
	if kidBin == "" {
		kidBin = binaryBeside("kid")
	}
	for _, b := range []string{ctrl, kidBin} {
		if _, err := os.Stat(b); err != nil {
			return catalog.Invalidf("%v: build it (make build) or name it with --controller/--kid", err)
		}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	purge := c.Duration("purge-interval")
	if purge <= 0 {
		purge = -1 // off
	}
	err = mcp.Run(e.ctx(), mcp.Options{MainDSN: dsn, ControllerPath: ctrl, KidPath: kidBin, Log: log,
		LogLevel: level.String(), LogOut: out, Reload: reload, PurgeInterval: purge})
	if err != nil {
		log.Error("MCP stopped", zap.Error(err))
	}
	return err
}

func (e *env) pidFile() string {
	if f := e.c.String("pid-file"); f != "" {
		return f
	}
	return filepath.Join(runDir(), "mcp.pid")
}

func startMCP(e *env) error {
	conn, err := e.connectCatalog()
	if err != nil {
		return err
	}
	defer closeConn(e.ctx(), conn)
	if running, err := catalog.MCPRunning(e.ctx(), conn); err != nil {
		return err
	} else if running {
		return catalog.Invalidf("an MCP is already running on this catalog: mcp stop it first, or mcp restart")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logFile := e.c.String("log-file")
	if logFile == "" {
		logFile = filepath.Join(runDir(), "mcp.log")
	}
	if err := os.MkdirAll(filepath.Dir(logFile), 0o755); err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	args := []string{"run", "--dsn-stdin", "--pid-file", e.pidFile(), "--log-file", logFile, "--log-level", e.c.String("log-level"),
		"--purge-interval", e.c.Duration("purge-interval").String()}
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the MCP: %w", err)
	}
	// The DSN goes through a pipe, never argv or the environment.
	_, _ = io.WriteString(stdin, e.mainDSN()+"\n")
	_ = stdin.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(e.c.Duration("timeout"))
	for {
		if running, err := catalog.MCPRunning(e.ctx(), conn); err == nil && running {
			break
		}
		select {
		case err := <-exited:
			return fmt.Errorf("the MCP exited at once (%v); its log %s says: %s", err, logFile, tail(logFile, 5))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the MCP (pid %d) is not up after %s; see its log %s", cmd.Process.Pid, e.c.Duration("timeout"), logFile)
		}
	}
	reason := strings.Join(e.c.Args().Slice(), " ")
	if reason != "" {
		_, _ = conn.Exec(e.ctx(), "SELECT pg_notify($1, $2)", catalog.AdminChannel, "message started: "+reason)
	}
	e.printf("MCP started: pid %d, log %s, pid file %s\n", cmd.Process.Pid, logFile, e.pidFile())
	_ = cmd.Process.Release()
	return nil
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func stopMCP(e *env, reasonFromArgs bool) error {
	conn, err := e.connectCatalog()
	if err != nil {
		return err
	}
	defer closeConn(e.ctx(), conn)
	running, err := catalog.MCPRunning(e.ctx(), conn)
	if err != nil {
		return err
	}
	pid := readPid(e.pidFile())
	if !running && pid == 0 {
		e.printf("No MCP is running on this catalog\n")
		return nil
	}
	reason := "mcp stop"
	if reasonFromArgs && e.c.NArg() > 0 {
		reason = strings.Join(e.c.Args().Slice(), " ")
	}
	if running {
		if _, err := conn.Exec(e.ctx(), "SELECT pg_notify($1, $2)", catalog.AdminChannel, "stop "+reason); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(e.c.Duration("timeout"))
	for {
		running, err = catalog.MCPRunning(e.ctx(), conn)
		if err != nil {
			return err
		}
		// The lock goes when the MCP's main session closes, after its
		// children; the pid file names the process, when it is local.
		if !running && (pid == 0 || !alive(pid)) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the MCP is still running after %s: look at its log, or kill it (pid file %s)", e.c.Duration("timeout"), e.pidFile())
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.printf("MCP stopped\n")
	return nil
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// tellMCP sends an admin request to the running MCP; syncs, when given, must
// exist and are appended to the request.
func (e *env) tellMCP(syncs []string, request, done string) error {
	conn, err := e.connectCatalog()
	if err != nil {
		return err
	}
	defer closeConn(e.ctx(), conn)
	for _, s := range syncs {
		if _, err := catalog.GetSync(e.ctx(), conn, s); err != nil {
			return err
		}
	}
	if err := requireMCP(e.ctx(), conn); err != nil {
		return err
	}
	payload := strings.TrimSpace(request + " " + strings.Join(syncs, " "))
	if _, err := conn.Exec(e.ctx(), "SELECT pg_notify($1, $2)", catalog.AdminChannel, payload); err != nil {
		return err
	}
	if done != "" {
		if len(syncs) == 0 {
			e.printf("%s every sync\n", done)
		}
		for _, s := range syncs {
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
	if c.NArg() == 0 {
		return usagef("usage: mcp kick SYNC... [--timeout DURATION]")
	}
	fail := func(err error) error { return cli.Exit(message(err), kickError) }
	conn, err := e.connectCatalog()
	if err != nil {
		return fail(err)
	}
	defer closeConn(e.ctx(), conn)
	ctx := e.ctx()
	for _, name := range c.Args().Slice() {
		s, err := catalog.GetSync(ctx, conn, name)
		if err != nil {
			return fail(err)
		}
		if s.Status != catalog.StatusActive {
			return fail(catalog.Invalidf("sync %s is inactive: mcp activate %s first", name, name))
		}
		if paused, reason, err := catalog.Paused(ctx, conn, name); err != nil {
			return fail(err)
		} else if paused {
			return fail(&catalog.PausedError{Sync: name, Reason: reason})
		}
	}
	if err := requireMCP(ctx, conn); err != nil {
		return fail(err)
	}
	var t0 time.Time
	if err := conn.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&t0); err != nil {
		return fail(err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_notify($1, $2)", catalog.AdminChannel, "kick "+strings.Join(c.Args().Slice(), " ")); err != nil {
		return fail(err)
	}
	if !c.IsSet("timeout") {
		for _, name := range c.Args().Slice() {
			e.printf("Kicked sync %s\n", name)
		}
		return nil
	}
	var deadline time.Time
	if d := c.Duration("timeout"); d > 0 {
		deadline = time.Now().Add(d)
	}
	worst := 0
	for _, name := range c.Args().Slice() {
		state, status, err := waitForRun(ctx, conn, name, t0, deadline)
		switch {
		case err != nil:
			return fail(err)
		case state == "":
			e.printf("Kick %s: timed out after %s\n", name, c.Duration("timeout"))
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

// waitForRun waits for the first run of sync started at or after t0 to end;
// state is "" when the deadline passed first.
func waitForRun(ctx context.Context, conn *pgx.Conn, sync string, t0, deadline time.Time) (state, status string, err error) {
	for {
		err := conn.QueryRow(ctx, `SELECT state, status FROM gobucardo.syncrun
			WHERE sync_name = $1 AND started >= $2 AND state <> 'running' ORDER BY started LIMIT 1`, sync, t0).Scan(&state, &status)
		if err == nil {
			return state, status, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return "", "", err
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
		ArgsUsage: "SYNC...",
		Action: func(c *cli.Context) error {
			e := newEnv(c)
			if c.NArg() == 0 {
				return usagef("usage: mcp %s SYNC...", name)
			}
			return e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
				for _, s := range c.Args().Slice() {
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
		ArgsUsage: "SYNC...",
		Flags:     flags,
		Action: func(c *cli.Context) error {
			e := newEnv(c)
			if c.NArg() == 0 {
				return usagef("usage: mcp %s SYNC...", name)
			}
			syncs := c.Args().Slice()
			err := e.changeCatalog(func(ctx context.Context, tx pgx.Tx) error {
				for _, s := range syncs {
					if _, err := catalog.GetSync(ctx, tx, s); err != nil {
						return err
					}
					var err error
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
