package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/logging"
	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/version"
)

// Exit statuses.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// UsageError is a command line that does not follow a command's syntax.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Run runs mcp with args (args[0] is the program name) and returns the exit
// status. Output goes to stdout, errors to stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	var notFound string
	app.CommandNotFound = func(_ *cli.Context, name string) { notFound = name }
	err := app.RunContext(ctx, reorder(app, args))
	if notFound != "" && err == nil {
		err = usagef("unknown command %q: mcp --help lists the commands", notFound)
	}
	if err == nil {
		return ExitOK
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		// Its message is the whole output (ping's "CRITICAL: ...").
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(stderr, "mcp: "+message(err))
	var ue *UsageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	return ExitError
}

func message(err error) string {
	return catalog.Message(err)
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:    "mcp",
		Usage:   "asynchronous multi-master replication for PostgreSQL",
		Version: version.Version,
		Description: "mcp manages gobucardo's catalog in the main database. The main database is found from\n" +
			"--dsn, else GOBUCARDO_DSN, else the libpq environment (PGHOST, PGPORT, PGUSER, PGSERVICE, ...)\n" +
			"with database gobucardo.",
		Writer:    stdout,
		ErrWriter: stderr,
		// Run turns an exit code into the return value: urfave's default
		// handler would os.Exit from inside the command, skipping defers.
		ExitErrHandler: func(*cli.Context, error) {},
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dsn", EnvVars: []string{"GOBUCARDO_DSN"},
				Usage: "main database: libpq key/value string or postgres:// URL"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON document instead of tables"},
			&cli.BoolFlag{Name: "verbose", Usage: "log what mcp does to stderr"},
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usagef("%v: add --help for the syntax", err)
		},
		HideHelpCommand:      false,
		EnableBashCompletion: false,
	}
	app.Commands = []*cli.Command{
		installCommand(),
		addCommand(),
		listCommand(),
		updateCommand(),
		removeCommand(),
		syncCommand(),
		validateCommand(),
		deltaCommand(),
		purgeCommand(),
		uninstallCommand(),
		conflictsCommand(),
		parkedCommand(),
		importCommand(),
	}
	app.Commands = append(app.Commands, daemonCommands()...)
	app.Commands = append(app.Commands, controlCommands()...)
	app.Commands = append(app.Commands, statusCommand(), psCommand())
	app.Commands = append(app.Commands, settingCommands()...)
	setUsageErrors(app.Commands, app.OnUsageError)
	return app
}

// setUsageErrors makes every command report a bad flag as a UsageError
// (exit status 2) instead of printing its help. A command without
// subcommands gets no help subcommand either: urfave/cli would take an
// argument "h" or "help" (a table named h) for it; --help still works.
func setUsageErrors(cmds []*cli.Command, f cli.OnUsageErrorFunc) {
	for _, c := range cmds {
		c.OnUsageError = f
		if len(c.Subcommands) == 0 {
			c.HideHelpCommand = true
		}
		setUsageErrors(c.Subcommands, f)
	}
}

// env is what a command needs besides its arguments.
type env struct {
	c   *cli.Context
	out io.Writer
	log *zap.Logger
}

func newEnv(c *cli.Context) *env {
	level := zapcore.WarnLevel
	if c.Bool("verbose") {
		level = zapcore.DebugLevel
	}
	return &env{c: c, out: c.App.Writer, log: logging.NewConsole(c.App.ErrWriter, level)}
}

func (e *env) ctx() context.Context { return e.c.Context }

func (e *env) printf(format string, args ...any) {
	fmt.Fprintf(e.out, format, args...)
}

func (e *env) json() bool { return e.c.Bool("json") }

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints rows under a header, aligned.
func (e *env) table(header []string, rows [][]string) {
	tw := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// mainDSN is the connection string of the main database.
func (e *env) mainDSN() string { return pg.MainDSN(e.c.String("dsn")) }

// connectMain connects to the main database.
func (e *env) connectMain() (*pgx.Conn, error) {
	cfg, err := pg.ParseConfig(e.mainDSN())
	if err != nil {
		return nil, catalog.Invalidf("the main database's connection string (--dsn or GOBUCARDO_DSN) is not valid: %v", err)
	}
	e.log.Debug("connecting to the main database", zap.String("host", cfg.Host), zap.Uint16("port", cfg.Port), zap.String("dbname", cfg.Database))
	conn, err := pg.ConnectConfig(e.ctx(), cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to the main database %q on %s: %w (set --dsn, GOBUCARDO_DSN or PGHOST/PGPORT/PGUSER)",
			cfg.Database, hostPort(cfg), err)
	}
	return conn, nil
}

func hostPort(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("%s port %d", cfg.Host, cfg.Port)
}

// connectCatalog connects to the main database and checks that the catalog
// is installed at the version this mcp needs.
func (e *env) connectCatalog() (*pgx.Conn, error) {
	conn, err := e.connectMain()
	if err != nil {
		return nil, err
	}
	if err := catalog.CheckVersion(e.ctx(), conn); err != nil {
		conn.Close(context.WithoutCancel(e.ctx()))
		return nil, err
	}
	return conn, nil
}

// inCatalog runs fn in one transaction on the main database, after checking
// that the catalog is installed at the right version. fn's error rolls
// everything back, and then nothing fn printed is shown.
func (e *env) inCatalog(fn func(ctx context.Context, tx pgx.Tx) error) error {
	conn, err := e.connectCatalog()
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(e.ctx()))
	// What the command prints is held back until its transaction commits:
	// a refused command must not claim to have added anything.
	out := e.out
	var buf bytes.Buffer
	e.out = &buf
	err = pgx.BeginFunc(e.ctx(), conn, func(tx pgx.Tx) error { return fn(e.ctx(), tx) })
	e.out = out
	if err != nil {
		return err
	}
	_, err = buf.WriteTo(out)
	return err
}

// changeCatalog is inCatalog for commands that change what the daemon
// runs: the running MCP is told to reload when the transaction commits.
func (e *env) changeCatalog(fn func(ctx context.Context, tx pgx.Tx) error) error {
	return e.inCatalog(func(ctx context.Context, tx pgx.Tx) error {
		if err := fn(ctx, tx); err != nil {
			return err
		}
		return catalog.NotifyMCP(ctx, tx, catalog.AdminRequest{Verb: catalog.AdminReload, Syncs: []string{catalog.ReloadEverySync}})
	})
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// reorder lets flags follow positional arguments, as in
// `mcp list dbs --json` or `mcp add all tables db=A -n public`: flags of
// the app move before the command words, other flags right after them, and
// positional arguments last. Everything after -- stays positional.
func reorder(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	global := flagArity(app.Flags)
	var globals, path, flags, pos []string
	takeFlag := func(dst *[]string, arity map[string]bool, i int) int {
		*dst = append(*dst, args[i])
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if arity[name] && !hasValue && i+1 < len(args) {
			i++
			*dst = append(*dst, args[i])
		}
		return i
	}
	i := 1
	for ; i < len(args) && isFlag(args[i]); i++ {
		i = takeFlag(&globals, global, i)
	}
	cmds := app.Commands
	var leaf *cli.Command
	for ; i < len(args); i++ {
		c := findCommand(cmds, args[i])
		if c == nil {
			break
		}
		path = append(path, args[i])
		leaf, cmds = c, c.Subcommands
	}
	if leaf == nil {
		return args
	}
	local := flagArity(leaf.Flags)
	local["help"], local["h"] = false, false
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if _, ok := global[name]; ok && isFlag(a) {
			i = takeFlag(&globals, global, i)
			continue
		}
		if isFlag(a) {
			// The command's flags, and unknown ones for urfave/cli to refuse.
			i = takeFlag(&flags, local, i)
			continue
		}
		pos = append(pos, a)
	}
	out := append([]string{args[0]}, globals...)
	out = append(out, path...)
	out = append(out, flags...)
	if len(pos) > 0 && strings.HasPrefix(pos[0], "-") {
		out = append(out, "--") // positional arguments given after --
	}
	return append(out, pos...)
}

func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' && a != "--" }

// flagArity maps each flag name and alias to whether it takes a value.
func flagArity(fs []cli.Flag) map[string]bool {
	m := map[string]bool{}
	for _, f := range fs {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			m[n] = !isBool
		}
	}
	return m
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
