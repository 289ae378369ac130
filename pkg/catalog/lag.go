package catalog

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// How far behind a sync is: the types both mcp status and the metrics
// collector show, what the sources said (SourceLag, read by
// capture.ReadSourceLag) combined by ComputeLag with the rate of the last
// runs (RecentRunRate). capture.LagReader does all of it for one sync.

// RateRuns is the number of good runs RecentRunRate is asked for by
// mcp status and the metrics.
const RateRuns = 5

// TableLag is what a sync has not consumed yet of one table on one source.
type TableLag struct {
	Schema  string `json:"schema"`
	Table   string `json:"table"`
	Pending int64  `json:"pending"`        // delta rows not consumed yet, counted up to the cap
	Capped  bool   `json:"pending_capped"` // there are more than Pending
	// Oldest is changed_at of the oldest of the counted changes (those of
	// the earliest transactions); nil when none is pending.
	Oldest     *time.Time `json:"oldest_pending,omitempty"`
	LagSeconds float64    `json:"lag_seconds"` // the source's clock at reading minus Oldest; 0 when none
}

// TargetBacklog is what a target that missed runs (behind, or inactive) has
// to catch up from one source: its own place there, older than the sync's.
type TargetBacklog struct {
	Target  string     `json:"target"`
	Since   time.Time  `json:"since"`  // when it was first left out
	Reason  string     `json:"reason"` // why it was left out last
	Pending int64      `json:"pending"`
	Capped  bool       `json:"pending_capped"`
	Oldest  *time.Time `json:"oldest_pending,omitempty"`
}

// SourceLag is what a sync has not consumed yet on one source db, read by
// capture.ReadSourceLag; Error says why it is unknown, and then nothing
// else is set but DB.
type SourceLag struct {
	DB       string     `json:"db"`
	ReadAt   time.Time  `json:"-"`                        // the source's clock when read: lags are taken on it
	Pending  int64      `json:"pending"`                  // delta rows not consumed yet, counted up to the cap
	Capped   bool       `json:"pending_capped"`           // there are more than Pending
	Oldest   *time.Time `json:"oldest_pending,omitempty"` // changed_at of the oldest of them
	Consumed *time.Time `json:"consumed,omitempty"`       // when the sync's watermark last advanced there
	// LagSeconds is ReadAt minus Oldest: how old the oldest change not
	// consumed from this source is; 0 when none is pending.
	LagSeconds float64         `json:"lag_seconds"`
	Tables     []TableLag      `json:"tables,omitempty"` // the tables with changes pending, in table order
	Behind     []TargetBacklog `json:"-"`                // targets behind here; ComputeLag folds them into TargetLag
	Error      string          `json:"error,omitempty"`  // why the backlog is unknown
}

// Target states in TargetLag.State.
const (
	TargetInStep   = "in step"
	TargetBehind   = "behind"
	TargetInactive = "inactive"
)

// TargetLag is where one target of a sync stands.
type TargetLag struct {
	DB     string     `json:"db"`
	Role   string     `json:"role"`
	State  string     `json:"state"`            // TargetInStep, TargetBehind or TargetInactive
	Since  *time.Time `json:"since,omitempty"`  // behind since
	Reason string     `json:"reason,omitempty"` // why it was left out last
	// Pending is the changes it has to catch up, summed over the sources
	// (each counted up to the cap).
	Pending int64 `json:"pending"`
	Capped  bool  `json:"pending_capped"`
	// LagSeconds is the age of the oldest change not applied to it, over
	// the sources that could be read.
	LagSeconds float64 `json:"lag_seconds"`
}

// RunRate is how fast the last good runs of a sync applied rows.
type RunRate struct {
	Runs     int           `json:"runs"`                // good runs with rows it is taken over
	Rows     int64         `json:"rows"`                // rows inserted + deleted by them
	Busy     time.Duration `json:"busy_ns"`             // their summed duration
	LastGood *time.Time    `json:"last_good,omitempty"` // when the last good (or empty) run ended
	// RowsPerSecond is Rows over Busy; 0 when there is no such run.
	RowsPerSecond float64 `json:"rows_per_second"`
}

// RecentRunRate reads the rows inserted and deleted by the last n good runs
// of sync (those that applied rows) and their duration, and when the last
// good or empty run ended: two short index scans of gobucardo.syncrun.
func RecentRunRate(ctx context.Context, q Querier, sync string, n int) (RunRate, error) {
	var r RunRate
	var busy *time.Duration
	err := q.QueryRow(ctx, `SELECT count(*), coalesce(sum(inserts + deletes), 0), sum(ended - started),
			(SELECT max(ended) FROM gobucardo.syncrun WHERE sync_name = $1 AND state IN ('good', 'empty'))
		FROM (SELECT inserts, deletes, started, ended FROM gobucardo.syncrun
			WHERE sync_name = $1 AND state = 'good' AND inserts + deletes > 0
			ORDER BY ended DESC LIMIT $2) r`, sync, n).Scan(&r.Runs, &r.Rows, &busy, &r.LastGood)
	if err != nil {
		return RunRate{}, fmt.Errorf("read the last runs of sync %s: %w", sync, err)
	}
	if busy != nil && *busy > 0 {
		r.Busy = *busy
		r.RowsPerSecond = float64(r.Rows) / r.Busy.Seconds()
	}
	return r, nil
}

// SyncLag is how far behind a sync is: per source (and table) what it has
// not consumed, per target what it has not applied, and how fast its last
// runs went.
type SyncLag struct {
	Sync string `json:"sync"`
	// Delta is false for a sync with neither a target nor two sources
	// (fullcopy only): it keeps no backlog, and nothing else but Rate is set.
	Delta bool `json:"delta"`
	// InStep: every source was read, nothing is pending on any, and every
	// target is in step.
	InStep bool `json:"in_step"`
	// LagSeconds is the age of the oldest change not applied to every db
	// yet, over the sources that could be read: 0 when in step.
	LagSeconds float64 `json:"lag_seconds"`
	// Unknown says a source could not be read (its SourceLag.Error says
	// why): LagSeconds and Pending are then what the others said.
	Unknown bool        `json:"lag_unknown"`
	Pending int64       `json:"pending"` // delta rows not consumed, summed over the sources
	Capped  bool        `json:"pending_capped"`
	Rate    RunRate     `json:"rate"`
	Sources []SourceLag `json:"backlog,omitempty"`
	Targets []TargetLag `json:"targets,omitempty"`
}

// Lag is LagSeconds as a duration.
func (l SyncLag) Lag() time.Duration { return time.Duration(l.LagSeconds * float64(time.Second)) }

// age is how old t was at the source's clock now, in seconds; 0 for none
// (and for a change stamped after now by a clock that moved back).
func age(now time.Time, t *time.Time) float64 {
	if t == nil || !now.After(*t) {
		return 0
	}
	return now.Sub(*t).Seconds()
}

// ComputeLag combines what the sources of d said (one SourceLag per source,
// in any order) with the rate of its last runs: the lag of each source,
// table and target and of the sync. It reads nothing.
func ComputeLag(d SyncDetail, sources []SourceLag, rate RunRate) SyncLag {
	l := SyncLag{Sync: d.Name, Rate: rate, Delta: d.HasDeltaRole()}
	if !l.Delta {
		return l
	}
	l.InStep = true
	for _, s := range sources {
		if s.Error != "" {
			l.Unknown, l.InStep = true, false
			l.Sources = append(l.Sources, SourceLag{DB: s.DB, Error: s.Error})
			continue
		}
		s.LagSeconds = age(s.ReadAt, s.Oldest)
		s.Tables = slices.Clone(s.Tables)
		for i := range s.Tables {
			s.Tables[i].LagSeconds = age(s.ReadAt, s.Tables[i].Oldest)
		}
		if s.Pending > 0 {
			l.InStep = false
		}
		l.Pending += s.Pending
		l.Capped = l.Capped || s.Capped
		l.LagSeconds = max(l.LagSeconds, s.LagSeconds)
		l.Sources = append(l.Sources, s)
	}
	for _, m := range d.Members {
		if m.Role == RoleSource {
			continue
		}
		t := l.targetLag(m)
		if d.DBs[m.DB].Status == StatusInactive {
			t.State, t.Reason = TargetInactive, "status=inactive: runs leave it out; mcp update db "+m.DB+" status=active brings it back"
		}
		if t.State != TargetInStep {
			l.InStep = false
		}
		l.LagSeconds = max(l.LagSeconds, t.LagSeconds)
		l.Targets = append(l.Targets, t)
	}
	return l
}

// targetLag is where target m stands, from what each source said of it:
// its own backlog where it is behind, the sync's where it is not.
func (l *SyncLag) targetLag(m Member) TargetLag {
	t := TargetLag{DB: m.DB, Role: m.Role, State: TargetInStep}
	for _, s := range l.Sources {
		if s.Error != "" {
			continue
		}
		pending, capped, lag := s.Pending, s.Capped, s.LagSeconds
		for _, b := range s.Behind {
			if b.Target != m.DB {
				continue
			}
			t.State = TargetBehind
			if t.Since == nil || b.Since.Before(*t.Since) {
				since := b.Since
				t.Since = &since
			}
			t.Reason = b.Reason
			pending, capped, lag = b.Pending, b.Capped, age(s.ReadAt, b.Oldest)
		}
		t.Pending += pending
		t.Capped = t.Capped || capped
		t.LagSeconds = max(t.LagSeconds, lag)
	}
	return t
}
