package catalog

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// RunSummary is one recorded run of a sync, as mcp status shows it.
type RunSummary struct {
	Started   time.Time     `json:"started"`
	Ended     *time.Time    `json:"ended,omitempty"`
	Duration  time.Duration `json:"duration_ns"` // so far, for a run in progress
	State     string        `json:"state"`
	Status    string        `json:"status"`
	Inserts   int64         `json:"inserts"`
	Deletes   int64         `json:"deletes"`
	Conflicts int64         `json:"conflicts"`
}

// RunFilter chooses the run LastRun returns.
type RunFilter int

// The runs LastRun finds.
const (
	// LastGoodRun is the good or empty run that ended last.
	LastGoodRun RunFilter = iota
	// LastBadRun is the failed run that ended last.
	LastBadRun
	// CurrentRun is the run in progress that started last.
	CurrentRun
)

// lastRunQuery is the condition and order of each RunFilter: constants,
// never input.
var lastRunQuery = map[RunFilter]struct{ where, order string }{
	LastGoodRun: {"state IN ('good', 'empty')", "ended"},
	LastBadRun:  {"state = 'bad'", "ended"},
	CurrentRun:  {"state = 'running'", "started"},
}

// LastRun returns the latest run of sync that which chooses, or nil when
// there is none.
func LastRun(ctx context.Context, q Querier, sync string, which RunFilter) (*RunSummary, error) {
	lq, ok := lastRunQuery[which]
	if !ok {
		return nil, errors.New("catalog.LastRun: unknown RunFilter")
	}
	var r RunSummary
	err := q.QueryRow(ctx, `SELECT started, ended, coalesce(ended, clock_timestamp()) - started, state, status,
			inserts, deletes, conflicts
		FROM gobucardo.syncrun WHERE sync_name = $1 AND `+lq.where+` ORDER BY `+lq.order+` DESC LIMIT 1`, sync).
		Scan(&r.Started, &r.Ended, &r.Duration, &r.State, &r.Status, &r.Inserts, &r.Deletes, &r.Conflicts)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// CountParked returns how many rows of sync an exception handler parked.
func CountParked(ctx context.Context, q Querier, sync string) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, "SELECT count(*) FROM gobucardo.parked WHERE sync_name = $1", sync).Scan(&n)
	return n, err
}

// ClockTimestamp returns the main database's clock now: runs are recorded
// by its clock, so a run's start compares with it, not with the local one.
func ClockTimestamp(ctx context.Context, q Querier) (time.Time, error) {
	var t time.Time
	err := q.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&t)
	return t, err
}

// FirstRunEndedSince returns the state and status of the first run of sync
// started at or after since that is no longer running; ok is false when
// there is none yet.
func FirstRunEndedSince(ctx context.Context, q Querier, sync string, since time.Time) (state, status string, ok bool, err error) {
	err = q.QueryRow(ctx, `SELECT state, status FROM gobucardo.syncrun
			WHERE sync_name = $1 AND started >= $2 AND state <> 'running' ORDER BY started LIMIT 1`, sync, since).Scan(&state, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, err
	}
	return state, status, true, nil
}
