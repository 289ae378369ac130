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

// serveMetrics serves /metrics, /healthz and /readyz on ln until ctx is
// done; the returned channel closes once the server has stopped.
func (d *daemon) serveMetrics(ctx context.Context, ln net.Listener) <-chan struct{} {
	coll := &metrics.Catalog{DSN: d.o.MainDSN, Log: d.log, Lag: d.lags}
	reg := metrics.NewRegistry(append(d.metrics.Collectors(), coll)...)
	h := metrics.Handler(reg, d.ready.check)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer coll.Close()
		defer d.ready.close()
		if err := metrics.Serve(ctx, ln, h); err != nil {
			d.log.Error("the metrics server stopped", zap.Error(err))
		}
	}()
	return done
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
// for the metrics (the same figures as mcp status, read the same way). A
// sync one of whose sources cannot be read has no lag series in that
// scrape; its error is in the log.
func (d *daemon) lags(ctx context.Context, q catalog.Querier) ([]metrics.SyncLag, error) {
	d.mu.Lock()
	syncs := maps.Clone(d.syncs)
	d.mu.Unlock()
	r := capture.LagReader{Timeout: lagSourceTimeout}
	defer r.Close(ctx)
	var out []metrics.SyncLag
	for _, name := range slices.Sorted(maps.Keys(syncs)) {
		l, err := r.Read(ctx, q, syncs[name])
		if err != nil {
			return out, err
		}
		if l.Unknown {
			for _, s := range l.Sources {
				if s.Error != "" {
					d.log.Warn("no lag metrics for the sync: a source cannot be read", zap.String("sync", name),
						zap.String("db", s.DB), zap.String("error", s.Error))
				}
			}
			continue
		}
		for _, t := range l.Targets {
			out = append(out, metrics.SyncLag{Sync: name, DB: t.DB, LagSeconds: t.LagSeconds, PendingRows: float64(t.Pending)})
		}
	}
	return out, nil
}
