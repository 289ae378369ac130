package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Daemon holds the counters the MCP keeps itself, about what it does in its
// own process: restarting controllers, purging deltas, and the kid restarts
// its controllers report. A nil *Daemon
// counts nothing, so that code may call it whether metrics are on or not.
type Daemon struct {
	restarts        *prometheus.CounterVec
	kidRestarts     *prometheus.CounterVec
	purgePasses     *prometheus.CounterVec
	purgedRows      *prometheus.CounterVec
	purgedTruncates *prometheus.CounterVec
	purgeDuration   *prometheus.HistogramVec
}

// Purge outcomes, the outcome label of gobucardo_purge_passes_total.
const (
	PurgeOK          = "ok"
	PurgeUnreachable = "unreachable"
	PurgeFailed      = "failed"
)

// NewDaemon returns the MCP's counters, all at zero.
func NewDaemon() *Daemon {
	return &Daemon{
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gobucardo_controller_restarts_total",
			Help: "Times the MCP restarted the controller of the sync after it failed or died."}, []string{"sync"}),
		kidRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gobucardo_kid_restarts_total",
			Help: "Times the controller of the sync found its kid dead (during a run or between runs) and started another, as its controllers reported them."},
			[]string{"sync"}),
		purgePasses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gobucardo_purge_passes_total",
			Help: "Purge passes of the MCP on the source db, by outcome (ok, unreachable, failed)."}, []string{"db", "outcome"}),
		purgedRows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gobucardo_purge_deleted_rows_total",
			Help: "Consumed delta rows the MCP's purge deleted on the source db."}, []string{"db"}),
		purgedTruncates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gobucardo_purge_deleted_truncates_total",
			Help: "Consumed truncate records the MCP's purge deleted on the source db."}, []string{"db"}),
		purgeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gobucardo_purge_duration_seconds",
			Help:    "How long the MCP's purge passes on the source db took.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300}}, []string{"db"}),
	}
}

// Collectors returns what to register.
func (d *Daemon) Collectors() []prometheus.Collector {
	return []prometheus.Collector{d.restarts, d.kidRestarts, d.purgePasses, d.purgedRows, d.purgedTruncates, d.purgeDuration}
}

// ControllerStarted makes the restarts of sync's controller and kid
// appear, at 0 until the first restart.
func (d *Daemon) ControllerStarted(sync string) {
	if d != nil {
		d.restarts.WithLabelValues(sync)
		d.kidRestarts.WithLabelValues(sync)
	}
}

// KidRestarted counts n restarts of sync's kid.
func (d *Daemon) KidRestarted(sync string, n int64) {
	if d != nil {
		d.kidRestarts.WithLabelValues(sync).Add(float64(n))
	}
}

// ControllerRestarted counts a restart of sync's controller.
func (d *Daemon) ControllerRestarted(sync string) {
	if d != nil {
		d.restarts.WithLabelValues(sync).Inc()
	}
}

// PurgePass counts a purge pass on db with its outcome, what it deleted and
// how long it took.
func (d *Daemon) PurgePass(db, outcome string, rows, truncates int64, seconds float64) {
	if d == nil {
		return
	}
	d.purgePasses.WithLabelValues(db, outcome).Inc()
	d.purgedRows.WithLabelValues(db).Add(float64(rows))
	d.purgedTruncates.WithLabelValues(db).Add(float64(truncates))
	d.purgeDuration.WithLabelValues(db).Observe(seconds)
}
