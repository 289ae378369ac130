package mcp

import (
	"context"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/logging"
	"github.com/gobucardo/gobucardo/pkg/metrics"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// DefaultPurgeInterval is how often the MCP purges consumed deltas unless
// the purge_interval setting or Options.PurgeInterval says otherwise.
const DefaultPurgeInterval = time.Minute

// purgeSources returns the dbs the automatic purge visits, name to
// connection string: every source of an active sync that replicates by
// delta (the syncs whose sources have capture), except dbs marked inactive.
func purgeSources(syncs map[string]catalog.SyncDetail) map[string]string {
	out := map[string]string{}
	for _, s := range syncs {
		if s.Status != catalog.StatusActive || !s.HasDeltaRole() {
			continue
		}
		for _, db := range s.Sources() {
			if db.Name == "" || db.Status == catalog.StatusInactive {
				continue
			}
			out[db.Name] = db.ConnString()
		}
	}
	return out
}

// purger is the MCP's automatic purge, Bucardo's VAC, which also keeps the
// capture of partitioned tables in step with their partitions (see
// capture.RefreshPartitions): each pass on a db runs
// in a goroutine of its own, so that a slow or unreachable db neither holds
// up the main loop nor the others; a db whose last pass is still running is
// left out of the next one. cancelPasses cancels the passes in progress and
// prevents new ones; wait waits for them to end.
//
// A pass opens a connection and closes it at the end rather than keeping
// one per db: at one pass a minute the connection costs nothing that
// matters, it holds no session (and no backend slot) on the source between
// passes, a db that was down is simply tried again next time, and a changed
// connection string or password in the catalog is used at once.
type purger struct {
	log     *zap.Logger
	purge   capture.Purger
	metrics *metrics.Daemon // nil: not counted
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu   sync.Mutex
	busy map[string]bool // dbs with a pass in progress
}

func newPurger(ctx context.Context, log *zap.Logger) *purger {
	ctx, cancel := context.WithCancel(ctx)
	return &purger{log: log, ctx: ctx, cancel: cancel, busy: map[string]bool{}}
}

// start begins a pass on each db (name to connection string) that has none
// in progress, and returns at once.
func (p *purger) start(dbs map[string]string) {
	names := make([]string, 0, len(dbs))
	for name := range dbs {
		names = append(names, name)
	}
	sort.Strings(names)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return
	}
	for _, name := range names {
		if p.busy[name] {
			p.log.Debug("purge of the last pass still running; skipped", zap.String(logging.FieldDB, name))
			continue
		}
		p.busy[name] = true
		p.wg.Add(1)
		go func(name, connString string) {
			defer p.wg.Done()
			defer func() {
				p.mu.Lock()
				delete(p.busy, name)
				p.mu.Unlock()
			}()
			p.pass(p.ctx, name, connString)
		}(name, dbs[name])
	}
}

// cancelPasses cancels the passes in progress; no new one starts.
func (p *purger) cancelPasses() {
	p.mu.Lock()
	p.cancel()
	p.mu.Unlock()
}

// wait waits for every pass started to end.
func (p *purger) wait() { p.wg.Wait() }

// pass purges one db. Errors are logged and the next pass tries again.
func (p *purger) pass(ctx context.Context, db, connString string) {
	log := p.log.With(zap.String(logging.FieldDB, db))
	started := time.Now()
	outcome, res := metrics.PurgeOK, capture.PurgeResult{}
	defer func() {
		if ctx.Err() == nil { // a pass cut short by the MCP's stop is not news
			p.metrics.PurgePass(db, outcome, res.Deltas, res.Truncates, time.Since(started).Seconds())
		}
	}()
	cctx, cancel := context.WithTimeout(ctx, pg.DefaultConnectTimeout)
	conn, err := pg.Connect(cctx, connString) // its errors never hold the password
	cancel()
	if err != nil {
		outcome = metrics.PurgeUnreachable
		if ctx.Err() == nil {
			log.Warn("cannot purge consumed deltas: db unreachable; trying again next interval", zap.Error(err))
		}
		return
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if ok, err := capture.Installed(ctx, conn); err != nil || !ok {
		if err != nil {
			outcome = metrics.PurgeFailed
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("cannot purge consumed deltas; trying again next interval", zap.Error(err))
		}
		return
	}
	res, err = p.purge.Purge(ctx, conn)
	if err != nil {
		outcome = metrics.PurgeFailed
	}
	if err != nil && ctx.Err() == nil {
		log.Warn("cannot purge consumed deltas; trying again next interval", zap.Int64("rows", res.Deltas), zap.Error(err))
	}
	if len(res.Busy) > 0 {
		log.Info("delta tables locked by another session; left for the next purge", zap.Strings("tables", res.Busy))
	}
	if res.Deltas > 0 || res.Truncates > 0 {
		log.Info("purged consumed deltas", zap.Int64("rows", res.Deltas), zap.Int64("truncates", res.Truncates),
			zap.Int("transactions", res.Batches), zap.Duration("duration", time.Since(started)))
	}
	// New partitions get their truncate trigger; attached and detached ones
	// are noted for mcp status and mcp validate.
	done, err := capture.RefreshPartitions(ctx, conn)
	if err != nil && ctx.Err() == nil {
		log.Warn("cannot bring the capture of partitioned tables in step; trying again next interval", zap.Error(err))
	}
	for _, d := range done {
		log.Info("capture of a partitioned table: " + d)
	}
}
