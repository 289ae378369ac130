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

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/logging"
	"github.com/gobucardo/gobucardo/pkg/mcp"
	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/sdnotify"
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
	// Unset, the purge_interval setting applies (mcp set).
	purgeIntervalFlag = &cli.DurationFlag{Name: "purge-interval",
		Usage: "delete the deltas every sync has consumed on their sources every `DURATION` (0: never; mcp purge does it by hand); default: the purge_interval setting, " + catalog.FormatDuration(mcp.DefaultPurgeInterval) + " unless mcp set changes it"}
	// logLevelFlag pins the level of every process; unset, the log_level
	// setting applies, and changes at runtime.
	logLevelFlag = &cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error; default: the log_level setting, info unless mcp set changes it"}
)

// daemonCommands are the commands that run, start and stop the MCP.
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
				logLevelFlag,
				&cli.StringFlag{Name: "controller", Usage: "the controller binary (default: beside mcp)"},
				&cli.StringFlag{Name: "kid", Usage: "the kid binary (default: beside mcp)"},
				&cli.BoolFlag{Name: "dsn-stdin", Hidden: true, Usage: "read the main database's DSN from stdin (mcp start)"},
				&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus /metrics, /healthz and /readyz on `HOST:PORT` (e.g. 127.0.0.1:9187; default: off); a taken address stops the MCP"},
			},
			Action: func(c *cli.Context) error { return runMCP(newEnv(c)) },
		},
		{
			Name:      "start",
			Usage:     "start the MCP in the background, with a pid file and a log file",
			ArgsUsage: `["reason"]`,
			Flags: []cli.Flag{pidFileFlag, logFileFlag, purgeIntervalFlag,
				logLevelFlag,
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
				logLevelFlag,
				&cli.DurationFlag{Name: "timeout", Value: time.Minute, Usage: "how long to wait for each step"}},
			Action: func(c *cli.Context) error {
				e := newEnv(c)
				if err := stopMCP(e, false); err != nil {
					return err
				}
				return startMCP(e)
			},
		},
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
	pinned := "" // the log_level setting applies, unless --log-level is given
	if c.IsSet("log-level") {
		pinned = level.String()
	}
	atomic := zap.NewAtomicLevelAt(level)
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
	log := logging.New(out, atomic, "mcp").With(zap.Int(logging.FieldPID, os.Getpid()))
	if pf := c.String("pid-file"); pf != "" {
		if err := writePidFile(pf, os.Getpid()); err != nil {
			return err
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
	purge := c.Duration("purge-interval") // 0: the purge_interval setting
	if c.IsSet("purge-interval") && purge <= 0 {
		purge = -1 // off
	}
	// The children get the DSN over their pipe; not from the environment
	// (systemd's EnvironmentFile= sets GOBUCARDO_DSN for mcp run).
	_ = os.Unsetenv("GOBUCARDO_DSN")
	sd, err := sdnotify.FromEnv()
	if err != nil {
		log.Warn("systemd's watchdog is off", zap.Error(err))
	}
	metricsAddr := c.String("metrics-addr")
	if !c.IsSet("metrics-addr") {
		metricsAddr = metricsSetting(e.ctx(), dsn, log)
	}
	err = mcp.Run(e.ctx(), mcp.Options{MainDSN: dsn, ControllerPath: ctrl, KidPath: kidBin, Log: log, Level: &atomic,
		LogLevel: pinned, LogOut: out, Reload: reload, PurgeInterval: purge,
		Notify: systemdNotify(sd, log), AliveEvery: sd.WatchdogInterval(), MetricsAddr: metricsAddr,
		MetricsFollowSetting: !c.IsSet("metrics-addr")})
	if err != nil {
		log.Error("MCP stopped", zap.Error(err))
	}
	return err
}

// systemdNotify tells systemd, when mcp run runs under it as Type=notify,
// how the MCP stands: READY=1 once it holds the lock, WATCHDOG=1 each time
// its main loop says it turns (every half WatchdogSec=), STOPPING=1 when it
// begins to stop. nil when not under systemd.
func systemdNotify(n *sdnotify.Notifier, log *zap.Logger) func(mcp.Phase) {
	if n == nil {
		return nil
	}
	watchdog := n.WatchdogInterval() > 0
	return func(p mcp.Phase) {
		var states []string
		switch p {
		case mcp.PhaseReady:
			states = []string{sdnotify.Ready, sdnotify.Status("holding the catalog's lock; running the active syncs")}
		case mcp.PhaseAlive:
			if !watchdog {
				return
			}
			states = []string{sdnotify.Watchdog}
		case mcp.PhaseStopping:
			states = []string{sdnotify.Stopping, sdnotify.Status("stopping the controllers")}
		}
		if err := n.Notify(states...); err != nil {
			log.Warn("cannot notify systemd", zap.Error(err))
		}
	}
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
	args := []string{"run", "--dsn-stdin", "--pid-file", e.pidFile(), "--log-file", logFile}
	// Flags given pin their value; the others leave it to the settings.
	if e.c.IsSet("log-level") {
		args = append(args, "--log-level", e.c.String("log-level"))
	}
	if e.c.IsSet("purge-interval") {
		args = append(args, "--purge-interval", e.c.Duration("purge-interval").String())
	}
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
			return fmt.Errorf("the MCP exited at once (%w); its log %s says: %s", err, logFile, tail(logFile, 5))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the MCP (pid %d) is not up after %s; see its log %s", cmd.Process.Pid, e.c.Duration("timeout"), logFile)
		}
	}
	reason := strings.Join(e.c.Args().Slice(), " ")
	if reason != "" {
		_ = catalog.NotifyMCP(e.ctx(), conn, catalog.AdminRequest{Verb: catalog.AdminMessage, Text: "started: " + reason})
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
		if err := catalog.NotifyMCP(e.ctx(), conn, catalog.AdminRequest{Verb: catalog.AdminStop, Text: reason}); err != nil {
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

// writePidFile writes pid into path, making its directory if need be.
func writePidFile(path string, pid int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// readPid returns the pid in the pid file path, or 0 when there is none.
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

// metricsSetting is the metrics_addr setting, read once as mcp run starts;
// a catalog that cannot be read then leaves the metrics off, said in the log.
func metricsSetting(ctx context.Context, dsn string, log *zap.Logger) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var s catalog.Settings
	conn, err := pg.Connect(ctx, dsn)
	if err == nil {
		s, err = catalog.LoadSettings(ctx, conn)
		closeConn(ctx, conn)
	}
	if err != nil {
		log.Warn("metrics off: the metrics_addr setting could not be read (mcp run --metrics-addr serves them regardless)", zap.Error(err))
	}
	return s.MetricsAddr
}
