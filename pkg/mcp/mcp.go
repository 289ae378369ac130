// Package mcp is the daemon behind `mcp run`: it holds the catalog's lock so
// that only one MCP runs, LISTENs on the main database for admin requests and
// on every source db of an autokick sync, keeps one controller process per
// active sync, forwards kicks to them, reconnects to any database that goes
// away, purges the deltas every sync has consumed on their sources, and
// publishes its process tree in gobucardo.process for `mcp ps`.
//
// What to start, stop and reload is decided by plan, a pure function of the
// active syncs and of what runs; a controller being stopped is awaited before
// a new one of the same sync starts.
package mcp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/logging"
	"github.com/gobucardo/gobucardo/pkg/metrics"
	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/pgnotify"
)

// Options configure the daemon.
type Options struct {
	MainDSN        string // never logged
	ControllerPath string
	KidPath        string
	Log            *zap.Logger
	// Level, when set, is Log's level: the log_level setting changes it
	// unless LogLevel pins it.
	Level *zap.AtomicLevel
	// LogLevel pins the level of the MCP and its children (passed to them),
	// over the log_level setting; "": the setting.
	LogLevel string
	LogOut   zapcore.WriteSyncer // where the children's log lines go
	// StopGrace is how long a controller may take to stop; 0: the
	// stop_grace setting.
	StopGrace time.Duration
	// PurgeInterval is how often the consumed deltas and truncate records
	// of every source db of the active syncs are deleted (capture.Purger);
	// 0: the purge_interval setting; negative: never.
	PurgeInterval time.Duration
	// Reload, when set, delivers reload requests (SIGHUP).
	Reload <-chan struct{}
	// MetricsAddr, when not "", is the TCP address (host:port) on which
	// /metrics, /healthz and /readyz are served (pkg/metrics). Run refuses
	// to start when it is taken.
	MetricsAddr string
	// MetricsFollowSetting makes the metrics address follow the
	// metrics_addr setting at every reload (MetricsAddr being its value at
	// start): a new address is bound, an empty one stops the metrics; an
	// address that cannot be bound is logged and the old one kept. False:
	// MetricsAddr pins the address.
	MetricsFollowSetting bool
	// Notify, when set, is told how the daemon stands, for a process
	// manager (systemd's sd_notify, see pkg/sdnotify): PhaseReady once it
	// holds the lock, PhaseAlive every AliveEvery while its main loop
	// turns, PhaseStopping when it begins to stop. It is called from the
	// main loop: it must not block.
	Notify func(Phase)
	// AliveEvery is how often Notify hears PhaseAlive; 0: every second.
	AliveEvery time.Duration
}

// Phase is where the daemon stands, for Options.Notify.
type Phase int

// The phases of a daemon that got its lock; one that did not is never ready.
const (
	PhaseReady    Phase = iota + 1 // it holds the lock and starts the controllers
	PhaseAlive                     // its main loop turns
	PhaseStopping                  // it stops its controllers, then returns
)

// notify tells Options.Notify, when set, of p.
func (d *daemon) notify(p Phase) {
	if d.o.Notify != nil {
		d.o.Notify(p)
	}
}

// ErrAlreadyRunning is returned (wrapped) when another MCP holds the lock.
var ErrAlreadyRunning = errors.New("another MCP is running on this catalog")

// event is something the main loop must act on.
type event struct {
	kind string // reconcile, reload, kick, stop, message; stopped: a controller removed by apply has exited
	arg  string
}

type daemon struct {
	o        Options
	log      *zap.Logger
	childLog *zap.Logger
	host     string
	started  time.Time
	events   chan event

	mu       sync.Mutex
	ctls     map[string]*ctl
	stopping map[string]*ctl               // by sync: controllers stopped by apply whose process has not exited yet
	syncs    map[string]catalog.SyncDetail // active syncs as last read
	listen   map[string]*sourceListener    // by db name
	seen     map[int]time.Time             // pid -> first seen, for ps
	purge    *purger                       // nil until the MCP holds its lock
	settings catalog.Settings              // in effect (settings.go)
	metrics  *metrics.Daemon               // the MCP's own counters, kept whether served or not
	ready    *readiness

	// The metrics server, touched only by Run's goroutine (the main loop
	// applies the settings).
	runCtx  context.Context // Run's, for the servers applySettings starts
	served  *metricsServer  // nil while the metrics are not served
	handler http.Handler    // built at the first server
	coll    *metrics.Catalog
}

type sourceListener struct {
	connString string
	syncs      map[string]bool
	cancel     context.CancelFunc
	done       chan struct{}
}

// Run runs the daemon until ctx is done or an admin `mcp stop` arrives; it
// stops every controller (and so every kid) before it returns.
func Run(ctx context.Context, o Options) error {
	if o.LogOut == nil {
		o.LogOut = logging.Stderr
	}
	ln, err := listenMetrics(o.MetricsAddr)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	d := &daemon{o: o, log: o.Log, host: host, started: time.Now(), events: make(chan event, 256),
		ctls: map[string]*ctl{}, stopping: map[string]*ctl{}, syncs: map[string]catalog.SyncDetail{}, listen: map[string]*sourceListener{},
		seen: map[int]time.Time{}, settings: effectiveSettings(o, catalog.DefaultSettings()),
		ready: &readiness{dsn: o.MainDSN}, metrics: metrics.NewDaemon(), runCtx: ctx}
	d.settings.MetricsAddr = o.MetricsAddr // what is served
	d.childLog = logging.New(o.LogOut, zapcore.DebugLevel, "child")
	if ln != nil {
		d.startMetrics(ln, o.MetricsAddr)
	}
	defer d.closeMetrics()

	// The main session holds the lock and LISTENs; Run of the listener
	// returns only when the lock is lost to someone else or ctx ends.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	locked := make(chan struct{}, 1)
	first := true
	mainListener := &pgnotify.Listener{
		Name: "main", ConnString: o.MainDSN, Channels: []string{catalog.AdminChannel}, Log: o.Log,
		OnConnect: func(ctx context.Context, conn *pgx.Conn) error {
			if err := catalog.CheckVersion(ctx, conn); err != nil {
				return pgnotify.Permanent(err)
			}
			var ok bool
			if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", catalog.MCPLockKey).Scan(&ok); err != nil {
				return err
			}
			if !ok {
				return pgnotify.Permanent(fmt.Errorf("%w (%s); stop it first with mcp stop", ErrAlreadyRunning, holder(ctx, conn)))
			}
			d.ready.pid.Store(conn.PgConn().PID())
			if first {
				first = false
				locked <- struct{}{}
			}
			d.send(event{kind: "reconcile"})
			return nil
		},
		OnNotify: func(n *pgconn.Notification) { d.admin(n.Payload) },
		OnDown:   func(error, time.Duration) { d.ready.pid.Store(0) },
	}
	listenDone := make(chan error, 1)
	go func() { listenDone <- mainListener.Run(lctx) }()
	select {
	case err := <-listenDone:
		if err != nil {
			return err
		}
		return nil
	case <-locked:
	}
	d.log.Info("MCP started", zap.Int(logging.FieldPID, os.Getpid()), zap.String("host", host))
	d.notify(PhaseReady)
	d.purge = newPurger(lctx, o.Log)
	d.purge.metrics = d.metrics

	err = d.loop(lctx, listenDone)
	d.notify(PhaseStopping)
	d.shutdown()
	cancel()
	return err
}

// holder describes who holds the MCP lock, as far as the catalog says.
func holder(ctx context.Context, conn *pgx.Conn) string {
	var pid int
	var host string
	var started time.Time
	err := conn.QueryRow(ctx, `SELECT pid, host, started FROM gobucardo.process WHERE role = 'mcp' ORDER BY updated DESC LIMIT 1`).
		Scan(&pid, &host, &started)
	if err != nil {
		return "holder unknown"
	}
	return fmt.Sprintf("pid %d on host %s since %s", pid, host, started.Format(time.RFC3339))
}

func (d *daemon) send(e event) {
	select {
	case d.events <- e:
	default:
		d.log.Warn("event queue full; dropped", zap.String("event", e.kind))
	}
}

// admin parses a gobucardo_admin notification.
func (d *daemon) admin(payload string) {
	r, err := catalog.ParseAdminRequest(payload)
	if err != nil {
		d.log.Warn("unknown admin request", zap.String("payload", payload))
		return
	}
	arg := r.Text
	if r.Verb == catalog.AdminReload || r.Verb == catalog.AdminKick {
		arg = strings.Join(r.Syncs, " ")
	}
	d.send(event{kind: string(r.Verb), arg: arg})
}

func (d *daemon) loop(ctx context.Context, listenDone <-chan error) error {
	conn := &catalog.Conn{DSN: d.o.MainDSN, ConnectTimeout: 5 * time.Second}
	defer conn.Close()
	var timers tickers // publish and purge, as the settings say
	defer timers.stop()
	d.applySettings(d.settings, &timers)
	d.loadSettings(ctx, conn, &timers)
	reconcile := time.NewTicker(30 * time.Second) // also catch catalog edits made without a reload
	defer reconcile.Stop()
	var alive <-chan time.Time
	if d.o.Notify != nil {
		every := d.o.AliveEvery
		if every <= 0 {
			every = time.Second
		}
		t := time.NewTicker(every)
		defer t.Stop()
		alive = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-listenDone:
			return err
		case <-d.o.Reload:
			d.loadSettings(ctx, conn, &timers)
			d.reconcile(ctx, conn, "*")
		case <-reconcile.C:
			d.reconcile(ctx, conn, "")
		case <-timers.publish.C():
			d.publish(ctx, conn)
		case <-alive:
			d.notify(PhaseAlive)
		case <-timers.purge.C():
			d.mu.Lock()
			dbs := purgeSources(d.syncs)
			d.mu.Unlock()
			d.purge.start(dbs)
		case e := <-d.events:
			switch e.kind {
			case "reconcile":
				d.reconcile(ctx, conn, "")
			case "stopped":
				d.apply(ctx, nil)
			case "reload":
				target := e.arg
				if target == "" {
					target = "*"
				}
				d.loadSettings(ctx, conn, &timers)
				d.reconcile(ctx, conn, target)
			case "kick":
				for _, s := range strings.Fields(e.arg) {
					d.kick(s, "mcp kick")
				}
			case "message":
				d.log.Info("message: " + e.arg)
			case "stop":
				d.log.Info("stop requested", zap.String("reason", e.arg))
				return nil
			}
		}
	}
}

func (d *daemon) kick(sync, reason string) {
	d.mu.Lock()
	c := d.ctls[sync]
	d.mu.Unlock()
	if c == nil {
		d.log.Debug("kick for a sync without controller", zap.String(logging.FieldSync, sync))
		return
	}
	c.Kick(reason)
}

func (d *daemon) stayalive(sync string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.syncs[sync]
	return !ok || s.Stayalive
}

// reconcile makes the controllers and source listeners match the catalog;
// reload names the syncs to reload ("*": all, "": none).
func (d *daemon) reconcile(ctx context.Context, cc *catalog.Conn, reload string) {
	conn, err := cc.Get(ctx)
	if err != nil {
		d.log.Warn("cannot read the catalog; keeping the controllers as they are", zap.Error(err))
		return
	}
	syncs, err := catalog.ListSyncs(ctx, conn)
	if err != nil {
		cc.Failed(err)
		d.log.Warn("cannot read the syncs", zap.Error(err))
		return
	}
	want := map[string]catalog.SyncDetail{}
	for _, s := range syncs {
		if s.Status != catalog.StatusActive {
			continue
		}
		det, err := catalog.LoadSync(ctx, conn, s.Name)
		if err != nil {
			cc.Failed(err)
			d.log.Warn("cannot read a sync", zap.String(logging.FieldSync, s.Name), zap.Error(err))
			return
		}
		want[s.Name] = det
	}
	reloadSet := map[string]bool{}
	for _, s := range strings.Fields(reload) {
		reloadSet[s] = true
	}
	d.mu.Lock()
	d.syncs = want
	d.mu.Unlock()
	d.apply(ctx, reloadSet)
}

// apply makes the controllers and source listeners match the active syncs
// as last read; reload names the controllers to reload ("*": all).
func (d *daemon) apply(ctx context.Context, reload map[string]bool) {
	d.mu.Lock()
	run := running{ctls: map[string]ctlState{}, listeners: map[string]string{}}
	for name := range d.ctls {
		run.ctls[name] = ctlUp
	}
	for name := range d.stopping {
		run.ctls[name] = ctlStopping
	}
	for db, l := range d.listen {
		run.listeners[db] = l.connString
	}
	a := plan(desired{syncs: d.syncs, reload: reload}, run)

	started := make([]*ctl, 0, len(a.start))
	for _, name := range a.start {
		c := newCtl(d, name)
		d.ctls[name] = c
		started = append(started, c)
	}
	for _, name := range a.reload {
		d.ctls[name].Reload()
	}
	stopping := make([]*ctl, 0, len(a.stop))
	for _, name := range a.stop {
		c := d.ctls[name]
		delete(d.ctls, name)
		d.stopping[name] = c
		stopping = append(stopping, c)
	}
	for _, db := range a.listenStop {
		d.listen[db].cancel()
		delete(d.listen, db)
	}
	for db, t := range a.listeners {
		if l, ok := d.listen[db]; ok {
			l.syncs = t.syncs
		}
	}
	for _, db := range a.listenStart {
		t := a.listeners[db]
		l := &sourceListener{connString: t.connString, syncs: t.syncs, done: make(chan struct{})}
		lctx, cancel := context.WithCancel(ctx)
		l.cancel = cancel
		d.listen[db] = l
		go d.runListener(lctx, db, l)
	}
	d.mu.Unlock()

	for _, c := range started {
		d.log.Info("starting controller", zap.String(logging.FieldSync, c.sync))
		go d.supervise(c)
	}
	for _, c := range stopping {
		d.log.Info("stopping controller: sync no longer active", zap.String(logging.FieldSync, c.sync))
		c.Stop("sync no longer active")
	}
	for _, name := range a.await {
		d.log.Info("waiting for the previous controller to exit before starting a new one", zap.String(logging.FieldSync, name))
	}
}

// supervise runs c's supervisor until c is stopped. A controller stopped
// because its sync was no longer active makes way, once its process has
// exited, for a new one of the same sync.
func (d *daemon) supervise(c *ctl) {
	defer close(c.done)
	c.supervise()
	d.mu.Lock()
	removed := d.stopping[c.sync] == c
	if removed {
		delete(d.stopping, c.sync)
	}
	d.mu.Unlock()
	if removed {
		d.send(event{kind: "stopped", arg: c.sync})
	}
}

func (d *daemon) runListener(ctx context.Context, db string, l *sourceListener) {
	defer close(l.done)
	connects := 0
	nl := &pgnotify.Listener{
		Name: "db " + db, ConnString: l.connString, Channels: []string{capture.KickChannel}, Log: d.log,
		OnConnect: func(context.Context, *pgx.Conn) error {
			connects++
			if connects > 1 {
				// Back after an outage: whatever was committed meanwhile may
				// not have notified us.
				for _, s := range d.syncsOf(db) {
					d.kick(s, "db "+db+" reachable again")
				}
			}
			return nil
		},
		OnNotify: func(n *pgconn.Notification) {
			for _, s := range d.syncsOf(db) {
				if s == n.Payload {
					d.kick(s, "autokick db "+db)
				}
			}
		},
	}
	_ = nl.Run(ctx)
}

func (d *daemon) syncsOf(db string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.listen[db]
	if l == nil {
		return nil
	}
	var out []string
	for s := range l.syncs {
		out = append(out, s)
	}
	return out
}

// shutdown stops every controller and purge, waits for them, and clears
// the process table.
func (d *daemon) shutdown() {
	if d.purge != nil {
		d.purge.cancelPasses() // a batch cut short rolls back; nothing is lost
	}
	d.mu.Lock()
	ctls := make([]*ctl, 0, len(d.ctls))
	for _, c := range d.ctls {
		ctls = append(ctls, c)
	}
	d.ctls = map[string]*ctl{}
	removed := make([]*ctl, 0, len(d.stopping))
	for _, c := range d.stopping {
		removed = append(removed, c)
	}
	for _, l := range d.listen {
		l.cancel()
	}
	d.mu.Unlock()
	for _, c := range ctls {
		c.Stop("MCP stopping")
	}
	for _, c := range append(ctls, removed...) {
		<-c.done
	}
	if d.purge != nil {
		d.purge.wait()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if conn, err := pg.Connect(ctx, d.o.MainDSN); err == nil {
		_, _ = conn.Exec(ctx, "DELETE FROM gobucardo.process WHERE host = $1", d.host)
		_ = conn.Close(ctx)
	}
	d.log.Info("MCP stopped")
}
