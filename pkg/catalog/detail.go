package catalog

import (
	"context"
	"fmt"
)

// SyncDetail is a sync with everything a run needs from the catalog: its
// dbs (with how to reach them) in dbgroup order and its relations in
// relgroup order.
type SyncDetail struct {
	Sync
	Members   []Member
	DBs       map[string]DB
	Relations []Relation
}

// Sources returns the source dbs in dbgroup order.
func (d *SyncDetail) Sources() []DB {
	var out []DB
	for _, m := range d.Members {
		if m.Role == RoleSource {
			out = append(out, d.DBs[m.DB])
		}
	}
	return out
}

// HasDeltaRole reports whether the sync replicates by delta (a target, or
// several sources), which needs capture on its sources.
func (d *SyncDetail) HasDeltaRole() bool {
	sources := 0
	for _, m := range d.Members {
		switch m.Role {
		case RoleSource:
			sources++
		case RoleTarget:
			return true
		}
	}
	return sources > 1
}

// LoadSync reads a sync and what it needs.
func LoadSync(ctx context.Context, q Querier, name string) (SyncDetail, error) {
	s, err := GetSync(ctx, q, name)
	if err != nil {
		return SyncDetail{}, err
	}
	g, err := GetDBGroup(ctx, q, s.DBGroup)
	if err != nil {
		return SyncDetail{}, err
	}
	rg, err := GetRelGroup(ctx, q, s.RelGroup)
	if err != nil {
		return SyncDetail{}, err
	}
	d := SyncDetail{Sync: s, Members: g.Members, DBs: map[string]DB{}, Relations: rg.Relations}
	for _, m := range g.Members {
		db, err := GetDB(ctx, q, m.DB)
		if err != nil {
			return SyncDetail{}, err
		}
		d.DBs[m.DB] = db
	}
	return d, nil
}

// Run states in gobucardo.syncrun.
const (
	RunRunning = "running"
	RunGood    = "good"
	RunEmpty   = "empty"
	RunBad     = "bad"
)

// RunCounts are the rows a run changed over all targets.
type RunCounts struct {
	Deletes, Inserts, Truncates, Conflicts int64
}

// StartRun records the start of a run and returns its id.
func StartRun(ctx context.Context, q Querier, sync string, pid int, host, status string) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `INSERT INTO gobucardo.syncrun (sync, sync_name, pid, host, status)
		VALUES ($1, $1, $2, $3, $4) RETURNING id`, sync, pid, host, status).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("record run of sync %s: %w", sync, err)
	}
	return id, nil
}

// SetRunStatus updates the live status text of a running run.
func SetRunStatus(ctx context.Context, q Querier, id int64, status string) error {
	_, err := q.Exec(ctx, "UPDATE gobucardo.syncrun SET status = $2 WHERE id = $1 AND state = 'running'", id, status)
	return err
}

// EndRun records the end of a run.
func EndRun(ctx context.Context, q Querier, id int64, state, status string, c RunCounts) error {
	_, err := q.Exec(ctx, `UPDATE gobucardo.syncrun SET ended = greatest(now(), started), state = $2, status = $3,
		deletes = $4, inserts = $5, truncates = $6, conflicts = $7 WHERE id = $1`,
		id, state, status, c.Deletes, c.Inserts, c.Truncates, c.Conflicts)
	if err != nil {
		return fmt.Errorf("record end of run %d: %w", id, err)
	}
	return nil
}

// ClearOneTimeCopy sets a sync's onetimecopy back to 0 after it was done.
func ClearOneTimeCopy(ctx context.Context, q Querier, sync string) error {
	_, err := q.Exec(ctx, "UPDATE gobucardo.sync SET onetimecopy = 0, updated = now() WHERE name = $1", sync)
	return err
}
