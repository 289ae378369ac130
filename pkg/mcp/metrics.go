package mcp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gobucardo/gobucardo/pkg/capture"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/metrics"
)

// listenMetrics opens Options.MetricsAddr, or returns nil when it is "".
// A taken address is an error: an MCP asked for metrics does not run
// without them.
func listenMetrics(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := metrics.Listen(addr)
	if errors.Is(err, metrics.ErrAddrInUse) {
		return nil, addrInUseError{addr: addr, err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot serve metrics on %s (--metrics-addr): %w", addr, err)
	}
	return ln, nil
}

// addrInUseError is a taken metrics address, said in one sentence; it
// unwraps to metrics.ErrAddrInUse.
type addrInUseError struct {
	addr string
	err  error
}

func (e addrInUseError) Error() string {
	return fmt.Sprintf("cannot serve metrics: address %s (--metrics-addr or the metrics_addr setting) is already in use; stop what listens there (another MCP?) or choose another address", e.addr)
}

func (e addrInUseError) Unwrap() error { return e.err }

// metricsServer is the metrics server in use.
type metricsServer struct {
	addr string
	stop context.CancelFunc
	done <-chan struct{} // closed once it has stopped
}

// startMetrics serves /metrics, /healthz and /readyz on ln (bound to addr)
// until stopMetrics or the end of Run. Every server serves the same
// registry: the counters go on across a change of address.
func (d *daemon) startMetrics(ln net.Listener, addr string) {
	if d.handler == nil {
		d.coll = &metrics.Catalog{DSN: d.o.MainDSN, Log: d.log, Lag: d.lags}
		d.handler = metrics.Handler(metrics.NewRegistry(append(d.metrics.Collectors(), d.coll)...), d.ready.check)
	}
	ctx, stop := context.WithCancel(d.runCtx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := metrics.Serve(ctx, ln, d.handler); err != nil {
			d.log.Error("the metrics server stopped", zap.String("addr", addr), zap.Error(err))
		}
	}()
	d.served = &metricsServer{addr: addr, stop: stop, done: done}
}

// stopMetrics stops the metrics server, if one runs, and waits for it.
func (d *daemon) stopMetrics() {
	if d.served != nil {
		d.served.stop()
		<-d.served.done
		d.served = nil
	}
}

// closeMetrics stops the server and closes the connections of its
// collector and readiness check, at the end of Run.
func (d *daemon) closeMetrics() {
	d.stopMetrics()
	if d.coll != nil {
		d.coll.Close()
	}
	d.ready.close()
}

// rebindMetrics moves the metrics from old to want (the metrics_addr
// setting changed) and returns the address now served ("": none). A
// wanted address that cannot be bound is logged and old kept. The old
// listener is closed first only when the new address is taken, perhaps by
// it (0.0.0.0:9187 to 127.0.0.1:9187); old is bound again if the new one
// still fails.
func (d *daemon) rebindMetrics(old, want string) string {
	if want == old {
		return old
	}
	if want == "" {
		d.stopMetrics()
		d.log.Info("metrics no longer served: the metrics_addr setting is empty", zap.String("was", old))
		return ""
	}
	ln, err := listenMetrics(want)
	if errors.Is(err, metrics.ErrAddrInUse) && d.served != nil {
		d.stopMetrics()
		if ln, err = listenMetrics(want); err != nil {
			back, berr := listenMetrics(old)
			if berr != nil {
				d.log.Error("metrics no longer served: the metrics_addr setting's address is taken and the old one cannot be bound again",
					zap.String("addr", want), zap.String("old", old), zap.Error(err), zap.NamedError("old_error", berr))
				return ""
			}
			d.startMetrics(back, old)
		}
	}
	if err != nil {
		d.log.Error("metrics still served on the old address: the metrics_addr setting's cannot be bound",
			zap.String("addr", want), zap.String("old", old), zap.Error(err))
		return old
	}
	d.stopMetrics()
	d.startMetrics(ln, want)
	d.log.Info("metrics served", zap.String("addr", want), zap.String("was", old))
	return want
}

// readiness answers /readyz: the main database is reachable and the
// session of the main listener holds the MCP lock.
type readiness struct {
	dsn string
	pid atomic.Uint32 // backend pid of the main listener's session while it holds the lock; 0: none

	mu   sync.Mutex
	conn catalog.Conn
}

func (r *readiness) check(ctx context.Context) error {
	pid := r.pid.Load()
	if pid == 0 {
		return errors.New("not ready: the MCP does not hold the catalog's lock (the main database is unreachable, or another MCP holds it)")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conn.DSN, r.conn.ConnectTimeout = r.dsn, 2*time.Second
	conn, err := r.conn.Get(ctx)
	if err != nil {
		return fmt.Errorf("not ready: the main database is unreachable: %w", err)
	}
	holder, err := catalog.MCPLockHolder(ctx, conn)
	if err != nil {
		r.conn.Failed(err)
		return fmt.Errorf("not ready: the main database is unreachable: %w", err)
	}
	if holder != int32(pid) {
		return errors.New("not ready: the MCP's session no longer holds the catalog's lock")
	}
	return nil
}

func (r *readiness) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conn.Close()
}

// lagSourceTimeout bounds reaching and reading one source db for the lag
// metrics, so that one down source costs a scrape little.
const lagSourceTimeout = time.Second

// lags is the lag and pending changes of every target of the active syncs,
// for the metrics (the same figures as mcp status, read the same way), and
// whether each of their sources could be read. A sync one of whose sources
// cannot be read has no lag series in that scrape (its source_up says 0);
// its error is in the log.
func (d *daemon) lags(ctx context.Context, q catalog.Querier) (metrics.Lags, error) {
	d.mu.Lock()
	syncs := maps.Clone(d.syncs)
	d.mu.Unlock()
	r := capture.LagReader{Timeout: lagSourceTimeout}
	defer r.Close(ctx)
	var out metrics.Lags
	for _, name := range slices.Sorted(maps.Keys(syncs)) {
		l, err := r.Read(ctx, q, syncs[name])
		if err != nil {
			return out, err
		}
		for _, s := range l.Sources {
			out.Sources = append(out.Sources, metrics.SourceUp{Sync: name, DB: s.DB, Up: s.Error == ""})
			if s.Error != "" {
				d.log.Warn("no lag metrics for the sync: a source cannot be read", zap.String("sync", name),
					zap.String("db", s.DB), zap.String("error", s.Error))
			}
		}
		if l.Unknown {
			continue
		}
		for _, t := range l.Targets {
			out.Targets = append(out.Targets, metrics.SyncLag{Sync: name, DB: t.DB, LagSeconds: t.LagSeconds, PendingRows: float64(t.Pending)})
		}
	}
	return out, nil
}
