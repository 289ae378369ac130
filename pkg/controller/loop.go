package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/gobucardo/gobucardo/pkg/backoff"
	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/ipc"
	"github.com/gobucardo/gobucardo/pkg/ipc/ctlpb"
	"github.com/gobucardo/gobucardo/pkg/ipc/kidpb"
	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/proc"
	"github.com/gobucardo/gobucardo/pkg/replicate"
)

// Run reasons the loop makes up itself. Empty runs for these are not kept in
// syncrun: they are the bookkeeping of autokick, not news.
const (
	reasonStartup  = "startup"
	reasonMore     = "more changes"
	reasonSettle   = "settle"
	reasonRetry    = "retry"
	reasonChecking = "checktime"
)

// holdPolicy spaces the tries of a target that could not be reached.
var holdPolicy = backoff.Policy{Initial: 500 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2}

// probeTimeout bounds one try to reach a held target.
const probeTimeout = 2 * time.Second

// hold is a target that could not be reached: runs leave it out (without
// waiting on it), while the loop tries to reach it on its own at next,
// and kicks a run, which catches it up, as soon as it answers.
type hold struct {
	tries  int
	next   time.Time // of the next try; zero while one is out
	reason string
}

// probed is the outcome of one try to reach a held target.
type probed struct {
	db  string
	err error
}

// retryPolicy spaces the retries of failed runs.
var retryPolicy = backoff.Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2}

// armed is a source whose mark was set, with the snapshot of that moment.
type armed struct {
	db       string
	snapshot string
}

// loop is the controller's scheduler; only its goroutine touches it.
type loop struct {
	*Server
	cfg    *ctlpb.Config
	kidOut func([]byte)
	host   string

	main    *pgx.Conn
	sources map[string]*pgx.Conn
	detail  catalog.SyncDetail
	loaded  bool
	paused  string // the reason, when paused

	kid       *ipc.Child
	kidClient kidpb.KidClient

	started    time.Time
	kick       string // reason of the pending kick, if any
	kickedRuns int
	busy       bool // the last run changed rows: run again
	failures   int
	retryAt    time.Time
	settling   []armed
	settleWait time.Duration
	settleAt   time.Time
	checkAt    time.Time
	ranOnce    bool
	holds      map[string]*hold // targets left out, by db
	probes     chan probed
	probers    sync.WaitGroup // the tries' goroutines, waited for at shutdown
	stopProbes chan struct{}  // closed at shutdown: a try's outcome is dropped
}

func (l *loop) run(ctx context.Context) error {
	l.started = time.Now()
	l.host, _ = os.Hostname()
	l.sources = map[string]*pgx.Conn{}
	l.kick = reasonStartup // catch up with whatever happened while no controller ran
	defer l.shutdown()
	for {
		if ctx.Err() != nil {
			return nil
		}
		if err := l.load(ctx); err != nil {
			l.failures++
			wait := retryPolicy.Delay(l.failures)
			l.board.set(0, "waiting", fmt.Sprintf("catalog unreachable, retry in %s: %s", wait, oneLine(err.Error())))
			l.log.Warn("cannot read the catalog", zap.Error(err), zap.Duration("retry_in", wait))
			if stop, reason := l.wait(ctx, time.Now().Add(wait)); stop {
				return l.stopped(reason)
			}
			continue
		}
		switch {
		case l.detail.Status != catalog.StatusActive:
			l.board.set(0, "inactive", "")
			if stop, reason := l.wait(ctx, time.Time{}); stop {
				return l.stopped(reason)
			}
			continue
		case l.paused != "":
			l.board.set(0, "paused", l.paused)
			l.kick = ""
			if stop, reason := l.wait(ctx, time.Time{}); stop {
				return l.stopped(reason)
			}
			continue
		case l.inactiveSource() != "":
			// Nothing can be read from it, and its own changes would be
			// missed: the sync waits (its deltas are kept) until it is active.
			db := l.inactiveSource()
			l.board.set(0, "waiting", fmt.Sprintf("source db %s is inactive: mcp update db %s status=active resumes the sync", db, db))
			if stop, reason := l.wait(ctx, time.Time{}); stop {
				return l.stopped(reason)
			}
			continue
		}
		l.takeProbes()
		l.startProbes(ctx)
		if reason := l.due(ctx); reason != "" {
			l.runOnce(ctx, reason)
			continue
		}
		if l.idle() {
			if exit := l.plannedExit(); exit != "" {
				l.log.Info("exiting: " + exit)
				return fmt.Errorf("%w: %s", errExit, exit)
			}
			l.board.set(0, "idle", l.idleDetail())
		}
		if stop, reason := l.wait(ctx, l.nextTimer()); stop {
			return l.stopped(reason)
		}
	}
}

func (l *loop) stopped(reason string) error {
	if reason != "" {
		l.log.Info("stopping", zap.String("reason", reason))
	}
	return nil
}

func (l *loop) idle() bool {
	return !l.busy && len(l.settling) == 0 && l.kick == "" && l.retryAt.IsZero()
}

func (l *loop) idleDetail() string {
	if l.detail.Checktime > 0 && !l.checkAt.IsZero() {
		return "next checktime run in " + time.Until(l.checkAt).Round(time.Second).String()
	}
	return ""
}

// plannedExit says why the controller should exit now that it is idle.
func (l *loop) plannedExit() string {
	switch {
	case l.detail.Lifetime > 0 && time.Since(l.started) >= l.detail.Lifetime:
		return "lifetime " + l.detail.Lifetime.String() + " reached"
	case l.detail.MaxKicks > 0 && l.kickedRuns >= l.detail.MaxKicks:
		return fmt.Sprintf("maxkicks %d reached", l.detail.MaxKicks)
	case !l.detail.Stayalive && l.ranOnce:
		return "stayalive is off"
	}
	return ""
}

// due returns why to run now, or "".
func (l *loop) due(ctx context.Context) string {
	now := time.Now()
	switch {
	case l.kick != "":
		r := l.kick
		l.kick = ""
		if r != reasonStartup {
			l.kickedRuns++
		}
		return r
	case l.busy:
		return reasonMore
	case !l.retryAt.IsZero() && !now.Before(l.retryAt):
		return reasonRetry
	case len(l.settling) > 0 && !now.Before(l.settleAt):
		if l.checkSettled(ctx) {
			return reasonSettle
		}
	case l.detail.Checktime > 0 && !l.checkAt.IsZero() && !now.Before(l.checkAt):
		return reasonChecking
	}
	return ""
}

// nextTimer is when the loop must look again without an event (zero: never).
func (l *loop) nextTimer() time.Time {
	var next time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	earliest(l.retryAt)
	earliest(l.nextProbe())
	if len(l.settling) > 0 {
		earliest(l.settleAt)
	}
	if l.detail.Checktime > 0 {
		earliest(l.checkAt)
	}
	if l.detail.Lifetime > 0 {
		earliest(l.started.Add(l.detail.Lifetime))
	}
	return next
}

// wait blocks until an event or until (when not zero); it reports a stop.
func (l *loop) wait(ctx context.Context, until time.Time) (stop bool, reason string) {
	var timer <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
		return true, "the MCP went away"
	case reason := <-l.stops:
		return true, reason
	case r := <-l.kicks:
		if l.kick == "" || l.kick == reasonStartup {
			l.kick = r
		}
	case <-l.reloads:
		l.loaded = false
	case p := <-l.probes:
		l.probeDone(p)
	case <-timer:
	}
	return false, ""
}

// startProbes tries, each in a goroutine of its own, to reach every held
// target whose next try is due; their outcomes come back on l.probes.
func (l *loop) startProbes(ctx context.Context) {
	if next := l.nextProbe(); next.IsZero() || time.Now().Before(next) {
		return
	}
	if l.probes == nil {
		l.probes, l.stopProbes = make(chan probed), make(chan struct{})
	}
	now := time.Now()
	for name, h := range l.holds {
		if now.Before(h.next) {
			continue
		}
		db, ok := l.detail.DBs[name]
		if !ok { // no longer a db of the sync
			delete(l.holds, name)
			continue
		}
		h.next = time.Time{}
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
			case l.probes <- probed{db: name, err: err}:
			case <-l.stopProbes:
			}
		}()
	}
}

// takeProbes takes the outcomes of the tries that are in, without
// waiting: a loop kept busy by runs back to back does not reach wait.
func (l *loop) takeProbes() {
	for {
		select {
		case p := <-l.probes:
			l.probeDone(p)
		default:
			return
		}
	}
}

// probeDone takes the outcome of a try: a target that answered is no
// longer held, and a run catches it up now; else it is tried later.
func (l *loop) probeDone(p probed) {
	h := l.holds[p.db]
	switch {
	case h == nil:
	case p.err == nil:
		l.log.Info("target reachable again: a run catches it up", zap.String("db", p.db))
		delete(l.holds, p.db)
		if l.kick == "" {
			l.kick = "target " + p.db + " reachable again"
		}
	default:
		h.tries++
		h.next, h.reason = time.Now().Add(holdPolicy.Delay(h.tries)), "unreachable: "+oneLine(p.err.Error())
	}
}

// load reads the sync from the catalog unless it is current.
func (l *loop) load(ctx context.Context) error {
	if l.loaded {
		return nil
	}
	conn, err := l.catalog(ctx)
	if err != nil {
		return err
	}
	d, err := catalog.LoadSync(ctx, conn, l.sync)
	if err != nil {
		l.dropCatalog(err)
		return err
	}
	paused, reason, err := catalog.Paused(ctx, conn, l.sync)
	if err != nil {
		l.dropCatalog(err)
		return err
	}
	if paused && reason == "" {
		reason = "paused"
	}
	held := l.paused != "" || l.detail.Status == catalog.StatusInactive
	back := reactivated(l.detail, d)
	l.detail, l.paused, l.loaded = d, reason, true
	if back != "" && l.kick == "" {
		l.kick = "db " + back + " active again"
	}
	// Settings may have changed: try the targets left out now.
	for _, h := range l.holds {
		if !h.next.IsZero() {
			h.next = time.Now()
		}
	}
	if held && l.paused == "" && l.detail.Status == catalog.StatusActive && l.kick == "" {
		// Kicks were dropped while it was held, and the mark is disarmed.
		l.kick = "resumed"
	}
	if l.detail.Checktime > 0 && l.checkAt.IsZero() {
		l.checkAt = time.Now().Add(l.detail.Checktime)
	}
	return nil
}

// inactiveSource names a source db of the sync whose status is inactive.
func (l *loop) inactiveSource() string {
	for _, m := range l.detail.Members {
		if m.Role == replicate.RoleSource && l.detail.DBs[m.DB].Status == catalog.StatusInactive {
			return m.DB
		}
	}
	return ""
}

// reactivated names a db of the sync that was inactive in before and is
// active in after ("" when none).
func reactivated(before, after catalog.SyncDetail) string {
	for _, m := range after.Members {
		was, ok := before.DBs[m.DB]
		if ok && was.Status == catalog.StatusInactive && after.DBs[m.DB].Status == catalog.StatusActive {
			return m.DB
		}
	}
	return ""
}

// noteTargets updates the holds after a run: a target it could not reach,
// or whose connection broke, is left out of the runs for a while, longer
// each time; one it reached is no longer.
func (l *loop) noteTargets(res replicate.Result, lost []string) {
	now := time.Now()
	if l.holds == nil {
		l.holds = map[string]*hold{}
	}
	skipped := map[string]string{}
	for _, s := range res.Skipped {
		skipped[s.DB] = s.Reason
	}
	unreachable := func(db, reason string) {
		h := l.holds[db]
		if h == nil {
			h = &hold{}
			l.holds[db] = h
			l.log.Warn("target unreachable: runs leave it out, and it catches up once back", zap.String("db", db), zap.String("reason", reason))
		}
		h.tries++
		h.next, h.reason = now.Add(holdPolicy.Delay(h.tries)), reason
	}
	for _, db := range lost {
		unreachable(db, "its connection broke during a run")
	}
	if len(lost) == 0 {
		for _, m := range l.detail.Members {
			if m.Role == replicate.RoleSource {
				continue
			}
			// A held target was left out without a try: its own tries tell.
			if reason, left := skipped[m.DB]; left && l.holds[m.DB] == nil && strings.HasPrefix(reason, "unreachable") {
				unreachable(m.DB, reason)
			}
		}
	}
}

// nextProbe is the earliest due try of a held target (zero when none: no
// target held, or every try out).
func (l *loop) nextProbe() time.Time {
	var next time.Time
	for _, h := range l.holds {
		if !h.next.IsZero() && (next.IsZero() || h.next.Before(next)) {
			next = h.next
		}
	}
	return next
}

// withHolds is the run's specification with the held targets left out:
// the loop's own tries find when they are back.
func (l *loop) withHolds(s replicate.Sync) replicate.Sync {
	for i := range s.DBs {
		h := l.holds[s.DBs[i].Name]
		if h == nil || s.DBs[i].Role == replicate.RoleSource {
			continue
		}
		s.DBs[i].Hold = "not reached lately, tried again every few seconds: " + h.reason
	}
	return s
}

func (l *loop) catalog(ctx context.Context) (*pgx.Conn, error) {
	if l.main != nil && !l.main.IsClosed() {
		return l.main, nil
	}
	conn, err := pg.Connect(ctx, l.cfg.GetMainDsn())
	if err != nil {
		return nil, fmt.Errorf("main database: %w", err)
	}
	l.main = conn
	return conn, nil
}

// dropCatalog forgets the catalog connection after an error that broke it.
func (l *loop) dropCatalog(err error) {
	if l.main != nil && (l.main.IsClosed() || pg.IsConnectionError(err)) {
		closeQuietly(l.main)
		l.main = nil
	}
}

// runOnce does one run through the kid and records it.
func (l *loop) runOnce(ctx context.Context, reason string) {
	l.ranOnce = true
	l.log.Debug("run", zap.String("reason", reason))
	l.board.set(0, "running", reason)
	res, kind, runErr := l.execute(ctx, reason)
	now := time.Now()
	var lost *replicate.TargetsLostError
	if errors.As(runErr, &lost) {
		l.noteTargets(res, lost.DBs)
	} else if runErr == nil {
		l.noteTargets(res, nil)
	}
	if l.detail.Checktime > 0 {
		l.checkAt = now.Add(l.detail.Checktime)
	}
	if !l.detail.Kidsalive {
		l.stopKid("kidsalive is off")
	}
	var paused *catalog.PausedError
	if errors.As(runErr, &paused) {
		// Paused after the catalog was last read: StartRun refused the run
		// (mcp pause counts on that); wait as a paused sync does.
		l.busy, l.settling, l.kick = false, nil, ""
		l.paused = paused.Reason
		if l.paused == "" {
			l.paused = "paused"
		}
		l.board.set(0, "paused", l.paused)
		return
	}
	if runErr != nil && kind == kidpb.Failure_KIND_CANCELLED {
		// Not a failure: the next kick or checktime runs it again.
		l.busy, l.settling, l.failures, l.retryAt = false, nil, 0, time.Time{}
		l.log.Info("run cancelled", zap.String("reason", reason), zap.String("why", oneLine(runErr.Error())))
		return
	}
	if runErr != nil {
		l.busy, l.settling = false, nil
		l.failures++
		wait := retryPolicy.Delay(l.failures)
		l.retryAt = now.Add(wait)
		msg := oneLine(runErr.Error())
		if kind == kidpb.Failure_KIND_CONFLICT_ABORT {
			l.retryAt = time.Time{}
			l.paused = msg
			l.board.set(0, "paused", msg)
			return
		}
		l.board.set(0, "retrying", fmt.Sprintf("run failed, retry in %s: %s", wait, msg))
		l.log.Warn("run failed", zap.String("reason", reason), zap.String("error", msg), zap.Duration("retry_in", wait))
		return
	}
	l.failures, l.retryAt = 0, time.Time{}
	switch {
	case !l.detail.HasDeltaRole():
		// fullcopy only: each run copies everything, so run only when asked.
		l.busy, l.settling = false, nil
	case !res.Empty():
		l.busy, l.settling = true, nil
	case reason == reasonSettle:
		l.busy, l.settling = false, nil
	default:
		l.busy = false
		if l.detail.Autokick {
			l.arm(ctx)
		}
	}
}

// execute runs the sync once in the kid and records the run in syncrun.
func (l *loop) execute(ctx context.Context, reason string) (replicate.Result, kidpb.Failure_Kind, error) {
	conn, err := l.catalog(ctx)
	if err != nil {
		return replicate.Result{}, kidpb.Failure_KIND_ERROR, err
	}
	if err := l.ensureKid(ctx); err != nil {
		return replicate.Result{}, kidpb.Failure_KIND_ERROR, err
	}
	id, err := catalog.StartRun(ctx, conn, l.sync, l.kid.Pid(), l.host, "Started ("+reason+")")
	var pe *catalog.PausedError
	var be *catalog.BusyError
	switch {
	case errors.As(err, &pe), errors.As(err, &be):
		return replicate.Result{}, kidpb.Failure_KIND_ERROR, err
	case err != nil:
		l.dropCatalog(err)
		return replicate.Result{}, kidpb.Failure_KIND_ERROR, err
	}
	l.board.set(1, "running", reason)
	res, kind, runErr := l.stream(ctx, conn, id)
	l.board.set(1, "idle", "")
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	counts := catalog.RunCounts{Deletes: res.Deletes, Inserts: res.Inserts, Truncates: res.Truncates, Conflicts: res.Conflicts}
	var recErr error
	switch {
	case runErr != nil && kind == kidpb.Failure_KIND_CANCELLED:
		recErr = errors.Join(catalog.ForgetRunRecords(bg, conn, id), catalog.EndRun(bg, conn, id, catalog.RunCancelled, "Cancelled: "+runErr.Error(), counts))
	case runErr != nil:
		msg := "Failed: " + runErr.Error()
		recErr = errors.Join(catalog.ForgetRunRecords(bg, conn, id), catalog.EndRun(bg, conn, id, catalog.RunBad, msg, counts))
		if kind == kidpb.Failure_KIND_CONFLICT_ABORT {
			recErr = errors.Join(recErr, catalog.Pause(bg, conn, l.sync, msg))
		}
	case res.Empty() && (reason == reasonMore || reason == reasonSettle):
		recErr = catalog.ForgetRun(bg, conn, id)
	default:
		state := catalog.RunGood
		if res.Empty() {
			state = catalog.RunEmpty
		}
		recErr = catalog.EndRun(bg, conn, id, state, "Complete: "+res.Summary(), counts)
		if res.OneTimeCopyDone {
			recErr = errors.Join(recErr, catalog.ClearOneTimeCopy(bg, conn, l.sync))
			l.loaded = false
		}
	}
	if recErr == nil {
		recErr = catalog.EndRunLock(bg, conn, l.sync)
	}
	if recErr != nil {
		l.log.Warn("cannot record the run", zap.Int64("run", id), zap.Error(recErr))
		l.dropCatalog(recErr)
	}
	if runErr == nil {
		l.log.Info("run done", zap.Int64("run", id), zap.String("reason", reason), zap.String("result", res.Summary()))
	}
	return res, kind, runErr
}

// stream asks the kid for the run and follows it to its outcome.
func (l *loop) stream(ctx context.Context, conn *pgx.Conn, id int64) (replicate.Result, kidpb.Failure_Kind, error) {
	spec := SyncToProto(l.withHolds(replicate.SyncFrom(l.detail)))
	st, err := l.kidClient.Run(ctx, &kidpb.RunRequest{Sync: spec, RunId: id, Attempts: 5})
	if err != nil {
		return replicate.Result{}, kidpb.Failure_KIND_ERROR, l.kidFailed(err)
	}
	var lastStatus time.Time
	for {
		ev, err := st.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return replicate.Result{}, kidpb.Failure_KIND_ERROR, errors.New("cancelled: the controller is stopping")
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("no outcome")
			}
			return replicate.Result{}, kidpb.Failure_KIND_ERROR, l.kidFailed(err)
		}
		switch e := ev.GetEvent().(type) {
		case *kidpb.RunEvent_Progress:
			p := e.Progress
			line := replicate.Progress{Table: p.GetTable(), Phase: p.GetPhase(), Rows: p.GetRows(), Total: p.GetTotal()}.String()
			l.board.set(1, "running", line)
			if time.Since(lastStatus) >= time.Second {
				lastStatus = time.Now()
				if err := catalog.SetRunStatus(ctx, conn, id, line); err != nil {
					l.dropCatalog(err)
				}
			}
		case *kidpb.RunEvent_Plugins:
			l.board.setPlugins(e.Plugins.GetPlugins())
		case *kidpb.RunEvent_Result:
			return resultFromProto(e.Result), 0, nil
		case *kidpb.RunEvent_Failure:
			err := errors.New(e.Failure.GetMessage())
			if lost := e.Failure.GetLostTargets(); len(lost) > 0 {
				err = &replicate.TargetsLostError{DBs: lost, Err: err}
			}
			return resultFromProto(e.Failure.GetPartial()), e.Failure.GetKind(), err
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
	select {
	case <-k.Done():
	case <-time.After(2 * time.Second):
		k.Stop(nil, time.Second)
	}
	if k.Err() != nil {
		return fmt.Errorf("kid %d exited during the run: %v", k.Pid(), k.Err())
	}
	return fmt.Errorf("kid %d stopped answering: %v", k.Pid(), rpcErr)
}

func (l *loop) ensureKid(ctx context.Context) error {
	if l.kid != nil {
		select {
		case <-l.kid.Done():
			l.log.Warn("kid exited between runs", zap.Int("kid", l.kid.Pid()), zap.Error(l.kid.Err()))
			l.kid, l.kidClient = nil, nil
			l.board.setKid(0)
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
// notifies, and starts waiting for the writers in progress at that moment.
func (l *loop) arm(ctx context.Context) {
	l.settling = nil
	for _, db := range l.detail.Sources() {
		conn, err := l.source(ctx, db)
		var snap string
		if err == nil {
			snap, err = capture.Arm(ctx, conn, l.sync)
		}
		if err != nil {
			// Without the mark, changes there may not kick: poll by retrying.
			l.dropSource(db.Name)
			l.failures++
			l.retryAt = time.Now().Add(retryPolicy.Delay(l.failures))
			l.log.Warn("cannot arm autokick", zap.String("db", db.Name), zap.Error(err))
			continue
		}
		l.settling = append(l.settling, armed{db: db.Name, snapshot: snap})
	}
	l.settleWait = 5 * time.Millisecond
	l.settleAt = time.Now()
}

// checkSettled drops the sources whose writers of the arming moment have
// ended; it reports whether none is left.
func (l *loop) checkSettled(ctx context.Context) bool {
	var left []armed
	for _, a := range l.settling {
		db, ok := l.detail.DBs[a.db]
		if !ok {
			continue
		}
		conn, err := l.source(ctx, db)
		done := false
		if err == nil {
			done, err = capture.Settled(ctx, conn, a.snapshot)
		}
		if err != nil {
			l.dropSource(a.db)
			done = true // run anyway: a failure there is the run's to report
		}
		if !done {
			left = append(left, a)
		}
	}
	l.settling = left
	if len(left) == 0 {
		return true
	}
	l.settleWait = min(l.settleWait*2, time.Second)
	l.settleAt = time.Now().Add(l.settleWait)
	l.board.set(0, "settling", fmt.Sprintf("waiting for transactions in progress on %d db(s)", len(left)))
	return false
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
	if l.stopProbes != nil {
		close(l.stopProbes)
		l.probers.Wait()
	}
	l.stopKid("controller stopping")
	for name := range l.sources {
		l.dropSource(name)
	}
	if l.main != nil {
		closeQuietly(l.main)
		l.main = nil
	}
	l.board.set(0, "stopping", "")
}

func closeQuietly(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

func resultFromProto(r *kidpb.Result) replicate.Result {
	res := replicate.Result{Deletes: r.GetDeletes(), Inserts: r.GetInserts(), Truncates: r.GetTruncates(),
		Conflicts: r.GetConflicts(), Duration: time.Duration(r.GetDurationUs()) * time.Microsecond,
		OneTimeCopyDone: r.GetOneTimeCopyDone(), Parked: r.GetParked(), CaughtUp: r.GetCaughtUp()}
	for _, s := range r.GetSkipped() {
		res.Skipped = append(res.Skipped, replicate.Skipped{DB: s.GetDb(), Reason: s.GetReason()})
	}
	return res
}

// SyncToProto is the run's specification for the kid.
func SyncToProto(s replicate.Sync) *kidpb.Sync {
	p := &kidpb.Sync{Name: s.Name, OneTimeCopy: int32(s.OneTimeCopy), CommitEvery: int32(s.CommitEvery),
		IsolationLevel: s.IsolationLevel, DeleteMethod: s.DeleteMethod, ConflictStrategy: s.ConflictStrategy}
	for _, d := range s.DBs {
		p.Dbs = append(p.Dbs, &kidpb.DB{Name: d.Name, Role: d.Role, ConnString: d.ConnString, MakeDelta: d.MakeDelta, Inactive: d.Inactive,
			Hold: d.Hold})
	}
	for _, r := range s.Relations {
		p.Relations = append(p.Relations, &kidpb.Relation{Schema: r.Schema, Name: r.Name, Sequence: r.Sequence,
			KeyColumns: r.KeyColumns, ConflictStrategy: r.ConflictStrategy, MakeDelta: r.MakeDelta})
	}
	for _, c := range s.CustomCode {
		p.CustomCode = append(p.CustomCode, &kidpb.CustomCode{Name: c.Name, Plugin: c.Plugin, Sha256: c.SHA256, Whenrun: c.WhenRun,
			Priority: int32(c.Priority), Settings: c.Settings, TimeoutMs: c.Timeout.Milliseconds(), Schema: c.Schema, Table: c.Table})
	}
	return p
}
