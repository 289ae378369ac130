package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/ipc"
	"github.com/gobucardo/gobucardo/pkg/ipc/ctlpb"
	"github.com/gobucardo/gobucardo/pkg/ipc/kidcodec"
	"github.com/gobucardo/gobucardo/pkg/ipc/kidpb"
	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/proc"
	"github.com/gobucardo/gobucardo/pkg/replicate"
	"github.com/gobucardo/gobucardo/pkg/runs"
)

// probeTimeout bounds one try to reach a held target.
const probeTimeout = 2 * time.Second

// loop performs what step decides; only its goroutine touches it.
type loop struct {
	*Server
	cfg    *ctlpb.Config
	kidOut func([]byte)
	host   string
	st     state

	main    catalog.Conn
	sources map[string]*pgx.Conn

	kid       *ipc.Child
	kidClient kidpb.KidClient

	probes     chan probed
	probers    sync.WaitGroup // the tries' goroutines, waited for at shutdown
	stopProbes chan struct{}  // closed at shutdown: a try's outcome is dropped
}

func (l *loop) run(ctx context.Context) error {
	l.host, _ = os.Hostname()
	l.sources = map[string]*pgx.Conn{}
	l.probes, l.stopProbes = make(chan probed), make(chan struct{})
	defer l.shutdown()
	ev := event{kind: evStart}
	for {
		if ctx.Err() != nil {
			return nil
		}
		ev.probes = append(ev.probes, l.takeProbes()...)
		var acts []action
		var wake time.Time
		l.st, acts, wake = step(l.st, ev, time.Now())
		next, done, err := l.perform(ctx, acts)
		if done {
			return err
		}
		if next != nil {
			ev = *next
			continue
		}
		ev = l.wait(ctx, wake)
	}
}

// perform does the actions in order; an action whose outcome is an event
// returns it, and an action that ends the loop returns done.
func (l *loop) perform(ctx context.Context, acts []action) (next *event, done bool, err error) {
	for _, a := range acts {
		var ev *event
		switch a.kind {
		case actLoad:
			ev = l.load(ctx)
		case actBoard:
			l.board.set(0, a.state, a.detail)
		case actLog:
			l.log.Log(a.level, a.msg, a.fields...)
		case actProbe:
			l.probe(ctx, a.db)
		case actRun:
			l.log.Debug("run", zap.String("reason", a.reason))
			ev = l.execute(ctx, a)
		case actStopKid:
			l.stopKid(a.reason)
		case actArm:
			ev = l.arm(ctx, a.dbs)
		case actCheckSettled:
			ev = l.checkSettled(ctx, a.checks)
		case actStop:
			if a.reason != "" {
				l.log.Info("stopping", zap.String("reason", a.reason))
			}
			return nil, true, nil
		case actExit:
			select {
			case reason := <-l.stops:
				// Asked to stop meanwhile (the sync deactivated, say):
				// a pending kick is not run.
				l.log.Info("stopping", zap.String("reason", reason))
				return nil, true, nil
			default:
			}
			if reason, pending := l.closeKicks(); pending {
				l.log.Debug("not exiting: a kick came in", zap.String("exit", a.reason), zap.String("kick", reason))
				return &event{kind: evKick, reason: reason}, false, nil
			}
			l.log.Info("exiting: " + a.reason)
			return nil, true, fmt.Errorf("%w: %s", errExit, a.reason)
		}
		if ev != nil {
			next = ev
		}
	}
	return next, false, nil
}

// wait blocks until an event or until (when not zero).
func (l *loop) wait(ctx context.Context, until time.Time) event {
	var timer <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
		return event{kind: evStop, reason: "the MCP went away"}
	case reason := <-l.stops:
		return event{kind: evStop, reason: reason}
	case r := <-l.kicks:
		return event{kind: evKick, reason: r}
	case <-l.reloads:
		return event{kind: evReload}
	case p := <-l.probes:
		return event{kind: evProbed, probes: []probed{p}}
	case <-timer:
		return event{kind: evWake}
	}
}

// probe tries, in a goroutine of its own, to reach a held target; the
// outcome comes back on l.probes.
func (l *loop) probe(ctx context.Context, db catalog.DB) {
	connString := db.ConnString()
	l.probers.Add(1)
	go func() {
		defer l.probers.Done()
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		conn, err := pg.Connect(pctx, connString)
		if err == nil {
			_ = conn.Close(pctx)
		}
		select {
		case l.probes <- probed{db: db.Name, err: err}:
		case <-l.stopProbes:
		}
	}()
}

// takeProbes takes the outcomes of the tries that are in, without
// waiting: a loop kept busy by runs back to back does not reach wait.
func (l *loop) takeProbes() []probed {
	var out []probed
	for {
		select {
		case p := <-l.probes:
			out = append(out, p)
		default:
			return out
		}
	}
}

// load reads the sync from the catalog.
func (l *loop) load(ctx context.Context) *event {
	conn, err := l.catalog(ctx)
	if err != nil {
		return &event{kind: evLoadFailed, err: err}
	}
	d, err := catalog.LoadSync(ctx, conn, l.sync)
	if err != nil {
		l.dropCatalog(err)
		return &event{kind: evLoadFailed, err: err}
	}
	paused, reason, err := catalog.Paused(ctx, conn, l.sync)
	if err != nil {
		l.dropCatalog(err)
		return &event{kind: evLoadFailed, err: err}
	}
	if paused && reason == "" {
		reason = "paused"
	}
	settings, err := catalog.LoadSettings(ctx, conn)
	if err != nil {
		l.dropCatalog(err)
		return &event{kind: evLoadFailed, err: err}
	}
	l.setLevel(settings.LogLevel)
	return &event{kind: evLoaded, detail: d, paused: reason, settings: settings}
}

// setLevel applies the log_level setting, unless the MCP pinned the level
// (Config.LogLevel). The kid takes its level when it starts: one that is up
// (between runs, as load is) is stopped, and the next run starts a new one
// at the new level.
func (l *loop) setLevel(level string) {
	if l.cfg.GetLogLevel() != "" {
		return
	}
	lv, err := zapcore.ParseLevel(level)
	if err != nil || lv == l.level.Level() {
		return
	}
	l.log.Info("log level changed by the log_level setting", zap.String("level", level))
	l.level.SetLevel(lv)
	l.stopKid("log level changed to " + level + "; the next run starts a kid at it")
}

// catalog is the connection to the main database, made when needed.
func (l *loop) catalog(ctx context.Context) (*pgx.Conn, error) {
	conn, err := l.main.Get(ctx)
	if err != nil {
		return nil, fmt.Errorf("main database: %w", err)
	}
	return conn, nil
}

// dropCatalog forgets the catalog connection after an error that broke it.
func (l *loop) dropCatalog(err error) { l.main.Failed(err) }

// execute does the run a in the kid and records it in syncrun.
func (l *loop) execute(ctx context.Context, a action) *event {
	res, err := l.runInKid(ctx, a)
	return &event{kind: evRunDone, result: res, err: err}
}

func (l *loop) runInKid(ctx context.Context, a action) (replicate.Result, error) {
	conn, err := l.catalog(ctx)
	if err != nil {
		return replicate.Result{}, err
	}
	if err := l.ensureKid(ctx); err != nil {
		return replicate.Result{}, err
	}
	id, err := catalog.StartRun(ctx, conn, l.sync, l.kid.Pid(), l.host, "Started ("+a.reason+")")
	var pe *catalog.PausedError
	var be *catalog.BusyError
	switch {
	case errors.As(err, &pe), errors.As(err, &be):
		return replicate.Result{}, err
	case err != nil:
		l.dropCatalog(err)
		return replicate.Result{}, err
	}
	l.board.set(1, catalog.ProcessRunning, a.reason)
	res, calls, runErr := l.stream(ctx, conn, id, a.spec, a.attempts)
	l.board.set(1, catalog.ProcessIdle, "")
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// The passwords are needed to redact a failure only (parsing every
	// DSN at every run took a tenth of the controller's CPU at 5 runs/s).
	var secrets []string
	if runErr != nil {
		secrets = a.spec.Secrets()
	}
	end := runs.End(res, runErr, secrets...)
	end.Forget = a.forgetEmpty && runErr == nil && res.Empty()
	end.PluginCalls = calls
	if err := catalog.FinishRun(bg, conn, l.sync, id, end); err != nil {
		l.log.Warn("cannot record the run", zap.Int64("run", id), zap.Error(err))
		l.dropCatalog(err)
	}
	if runErr == nil {
		// An empty run (a checktime or a kick that found nothing) is not
		// news: only at debug level.
		level := zapcore.InfoLevel
		if res.Empty() {
			level = zapcore.DebugLevel
		}
		l.log.Log(level, "run done", zap.Int64("run", id), zap.String("reason", a.reason), zap.String("result", res.Summary()))
	}
	return res, runErr
}

// stream asks the kid for the run and follows it to its outcome; calls are
// the plugin calls the kid reported meanwhile (also when the run failed).
func (l *loop) stream(ctx context.Context, conn *pgx.Conn, id int64, spec replicate.Sync, attempts int) (
	res replicate.Result, calls []catalog.PluginCalls, err error) {
	st, err := l.kidClient.Run(ctx, &kidpb.RunRequest{Sync: kidcodec.EncodeSync(spec), RunId: id, Attempts: int32(attempts)})
	if err != nil {
		return replicate.Result{}, nil, l.kidFailed(err)
	}
	var lastStatus time.Time
	for {
		ev, err := st.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return replicate.Result{}, calls, errors.New("cancelled: the controller is stopping")
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("no outcome")
			}
			return replicate.Result{}, calls, l.kidFailed(err)
		}
		if res, ok, runErr := kidcodec.DecodeOutcome(ev); ok {
			return res, calls, runErr
		}
		calls = append(calls, kidcodec.DecodePluginCalls(ev)...)
		if p, ok := kidcodec.DecodeProgress(ev); ok {
			line := p.String()
			l.board.set(1, catalog.ProcessRunning, line)
			if time.Since(lastStatus) >= time.Second {
				lastStatus = time.Now()
				if err := catalog.SetRunStatus(ctx, conn, id, line); err != nil {
					l.dropCatalog(err)
				}
			}
		}
		if ps := ev.GetPlugins(); ps != nil {
			l.board.setPlugins(ps.GetPlugins())
		}
	}
}

// kidFailed turns a broken RPC into the run's error, after making sure the
// kid is gone (it is restarted for the next run).
func (l *loop) kidFailed(rpcErr error) error {
	k := l.kid
	l.kid, l.kidClient = nil, nil
	l.board.setKid(0)
	if k == nil {
		return rpcErr
	}
	l.board.kidDied()
	select {
	case <-k.Done():
	case <-time.After(2 * time.Second):
		k.Stop(nil, time.Second)
	}
	if k.Err() != nil {
		return fmt.Errorf("kid %d exited during the run: %w", k.Pid(), k.Err())
	}
	return fmt.Errorf("kid %d stopped answering: %w", k.Pid(), rpcErr)
}

func (l *loop) ensureKid(ctx context.Context) error {
	if l.kid != nil {
		select {
		case <-l.kid.Done():
			l.log.Warn("kid exited between runs", zap.Int("kid", l.kid.Pid()), zap.Error(l.kid.Err()))
			l.kid, l.kidClient = nil, nil
			l.board.setKid(0)
			l.board.kidDied()
		default:
			return nil
		}
	}
	child, err := ipc.Start(proc.Spec{Path: l.cfg.GetKidPath(), Args: []string{"--sync", l.sync}, Stderr: l.kidOut})
	if err != nil {
		return fmt.Errorf("start kid: %w", err)
	}
	client := kidpb.NewKidClient(child.Conn)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := client.Configure(cctx, &kidpb.Config{Sync: l.sync, MainDsn: l.cfg.GetMainDsn(), LogLevel: l.level.String()}); err != nil {
		child.Stop(func() error { return child.Close() }, time.Second)
		return fmt.Errorf("configure kid: %w", err)
	}
	l.kid, l.kidClient = child, client
	l.board.setKid(child.Pid())
	return nil
}

func (l *loop) stopKid(reason string) {
	k, client := l.kid, l.kidClient
	if k == nil {
		return
	}
	l.kid, l.kidClient = nil, nil
	how := k.Stop(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := client.Stop(ctx, &kidpb.StopRequest{Reason: reason})
		return errors.Join(err, k.Close())
	}, 5*time.Second)
	l.board.setKid(0)
	l.log.Debug("kid stopped", zap.Int("kid", k.Pid()), zap.String("how", how))
}

// arm sets the autokick marks on every source, so that the next change
// notifies, with the snapshot of that moment.
func (l *loop) arm(ctx context.Context, dbs []catalog.DB) *event {
	ev := &event{kind: evArmed}
	for _, db := range dbs {
		conn, err := l.source(ctx, db)
		var snap string
		if err == nil {
			snap, err = capture.Arm(ctx, conn, l.sync)
		}
		if err != nil {
			// Without the mark, changes there may not kick: poll by retrying.
			l.dropSource(db.Name)
			ev.unarmed++
			l.log.Warn("cannot arm autokick", zap.String("db", db.Name), zap.Error(err))
			continue
		}
		ev.armed = append(ev.armed, armed{db: db.Name, snapshot: snap})
	}
	return ev
}

// checkSettled returns the sources whose writers of the arming moment have
// not all ended.
func (l *loop) checkSettled(ctx context.Context, checks []settleCheck) *event {
	ev := &event{kind: evSettled}
	for _, c := range checks {
		conn, err := l.source(ctx, c.conn)
		done := false
		if err == nil {
			done, err = capture.Settled(ctx, conn, c.snapshot)
		}
		if err != nil {
			l.dropSource(c.db)
			done = true // run anyway: a failure there is the run's to report
		}
		if !done {
			ev.left = append(ev.left, c.armed)
		}
	}
	return ev
}

func (l *loop) source(ctx context.Context, db catalog.DB) (*pgx.Conn, error) {
	if c := l.sources[db.Name]; c != nil && !c.IsClosed() {
		return c, nil
	}
	c, err := pg.Connect(ctx, db.ConnString())
	if err != nil {
		return nil, fmt.Errorf("db %s: %w", db.Name, err)
	}
	l.sources[db.Name] = c
	return c, nil
}

func (l *loop) dropSource(name string) {
	if c := l.sources[name]; c != nil {
		closeQuietly(c)
		delete(l.sources, name)
	}
}

func (l *loop) shutdown() {
	close(l.stopProbes)
	l.probers.Wait()
	l.stopKid("controller stopping")
	for name := range l.sources {
		l.dropSource(name)
	}
	l.main.Close()
	l.board.set(0, catalog.ProcessStopping, "")
}

func closeQuietly(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}
