package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SyncDetail is a sync with everything a run needs from the catalog: its
// dbs (with how to reach them) in dbgroup order and its relations in
// relgroup order.
type SyncDetail struct {
	Sync
	Members   []Member
	DBs       map[string]DB
	Relations []Relation
	// CustomCode is the active customcode of the sync and its tables, in
	// the order it runs (see SyncCustomCode).
	CustomCode []AttachedCode
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
	if d.CustomCode, err = SyncCustomCode(ctx, q, name); err != nil {
		return SyncDetail{}, err
	}
	return d, nil
}

// Run states in gobucardo.syncrun.
const (
	RunRunning = "running"
	RunGood    = "good"
	RunEmpty   = "empty"
	RunBad     = "bad"
	// RunCancelled: a run hook cancelled the run, which changed nothing.
	RunCancelled = "cancelled"
)

// RunCounts are the rows a run changed over all targets.
type RunCounts struct {
	Deletes, Inserts, Truncates, Conflicts int64
}

// runLockClass is the first key of the session advisory lock that a run of
// a sync holds on the main database from StartRun to EndRunLock (the second
// is hashtext of the sync's name). WaitForRuns waits on it; it dies with the
// session, so a crashed controller leaves nothing to wait for.
const runLockClass int32 = 0x6762_7275 // "gbru"

// PausedError says that a run was not started because its sync is paused.
// Use errors.As.
type PausedError struct {
	Sync, Reason string
}

func (e *PausedError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("sync %s is paused: mcp resume %s first", e.Sync, e.Sync)
	}
	return fmt.Sprintf("sync %s is paused (%s): mcp resume %s first", e.Sync, e.Reason, e.Sync)
}

// BusyError says that another run of the sync holds its run lock.
type BusyError struct {
	Sync string
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("sync %s has a run in progress elsewhere (its controller or an mcp sync run): "+
		"try again once it has ended (mcp status %s)", e.Sync, e.Sync)
}

// Session is one connection to the main database that queries, pipelines
// and begins transactions (a *pgx.Conn): the run lock belongs to it.
type Session interface {
	Querier
	Begin(ctx context.Context) (pgx.Tx, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// StartRun records the start of a run and returns its id, unless the sync
// is paused (*PausedError) or another run holds its run lock (*BusyError).
// Runs of the sync still recorded as running, whose process died, are
// recorded as bad ("Interrupted: ...").
// The check and the record are one transaction that share-locks the sync's
// row, against Pause's update lock: once Pause has committed, no run
// starts, and every run that had started holds the run lock on conn's
// session until EndRunLock. Call EndRunLock on the same conn.
//
// It is one round trip, a pipeline of two statements in one implicit
// transaction (rolled back if either fails): the share lock, then
// startRunSQL. They must stay two: startRunSQL reads the pause with a
// snapshot taken once the share lock is held, and so sees a Pause that
// committed while it waited for the lock.
func StartRun(ctx context.Context, conn Session, sync string, pid int, host, status string) (int64, error) {
	b := &pgx.Batch{}
	b.Queue("SELECT FROM gobucardo.sync WHERE name = $1 FOR SHARE", sync)
	b.Queue(startRunSQL, sync, pid, host, status, runLockClass)
	br := conn.SendBatch(ctx, b)
	_, err := br.Exec()
	var s startedRun
	if err == nil {
		err = br.QueryRow().Scan(&s.paused, &s.reason, &s.locked, &s.id)
	}
	err = errors.Join(err, br.Close())
	if err != nil {
		// The lock may have been taken before the statement or the
		// commit failed: a session lock outlives a rollback.
		_ = EndRunLock(context.WithoutCancel(ctx), conn, sync)
		return 0, fmt.Errorf("record run of sync %s: %w", sync, err)
	}
	id, err := s.outcome(sync)
	if err != nil && s.locked {
		_ = EndRunLock(context.WithoutCancel(ctx), conn, sync)
	}
	return id, err
}

// startRunSQL checks that sync $1 is not paused, takes its run lock
// ($5, hashtext($1)), records the run (pid $2, host $3, status $4) and
// records the runs of the sync still running as interrupted, each step
// only when the previous one went through; it returns whether the sync is
// paused and why, whether the lock was taken, and the run's id (NULL when
// none was recorded). The lock is taken (CASE orders it after the pause
// check) before the record, in one statement: if the record fails, the
// caller releases it. Holding the run lock, no other run of the sync is
// alive: a run still recorded as running died with its process. The
// UPDATE cannot see the row the INSERT adds (sub-statements of a WITH share
// one snapshot).
const startRunSQL = `WITH pause AS MATERIALIZED (
		SELECT coalesce(bool_or(paused), false) AS paused, max(reason) AS reason FROM gobucardo.sync_state WHERE sync = $1
	), lock AS MATERIALIZED (
		SELECT paused, reason, CASE WHEN paused THEN false ELSE pg_try_advisory_lock($5::integer, hashtext($1)) END AS locked FROM pause
	), run AS (
		INSERT INTO gobucardo.syncrun (sync, sync_name, pid, host, status)
		SELECT $1, $1, $2::integer, $3::text, $4::text FROM lock WHERE locked
		RETURNING id
	), dead AS (
		UPDATE gobucardo.syncrun SET state = 'bad', ended = greatest(now(), started),
			status = format('Interrupted: its process (pid %s on %s) ended during the run; the next run carries its changes. It had said: %s',
				coalesce(pid::text, '?'), coalesce(host, '?'), status)
		WHERE sync = $1 AND state = 'running' AND EXISTS (SELECT FROM run)
	)
	SELECT paused, coalesce(reason, ''), locked, (SELECT id FROM run) FROM lock`

// startedRun is what startRunSQL returns.
type startedRun struct {
	paused, locked bool
	reason         string
	id             *int64
}

// outcome is StartRun's answer for what startRunSQL returned on sync.
func (s startedRun) outcome(sync string) (int64, error) {
	switch {
	case s.paused:
		return 0, &PausedError{Sync: sync, Reason: s.reason}
	case !s.locked:
		return 0, &BusyError{Sync: sync}
	case s.id == nil:
		return 0, fmt.Errorf("record run of sync %s: no run was recorded", sync)
	}
	return *s.id, nil
}

// EndRunLock releases the run lock StartRun took on q's session, once the
// run's outcome is recorded.
func EndRunLock(ctx context.Context, q Querier, sync string) error {
	_, err := q.Exec(ctx, "SELECT pg_advisory_unlock($1, hashtext($2))", runLockClass, sync)
	return err
}

// WaitForRuns waits until no run of sync holds its run lock: a run in
// progress has ended and recorded its outcome. ctx bounds the wait.
func WaitForRuns(ctx context.Context, q Querier, sync string) error {
	if _, err := q.Exec(ctx, "SELECT pg_advisory_lock($1, hashtext($2))", runLockClass, sync); err != nil {
		return fmt.Errorf("wait for the run of sync %s: %w", sync, err)
	}
	_, err := q.Exec(ctx, "SELECT pg_advisory_unlock($1, hashtext($2))", runLockClass, sync)
	return err
}

// SetRunStatus updates the live status text of a running run.
func SetRunStatus(ctx context.Context, q Querier, id int64, status string) error {
	_, err := q.Exec(ctx, "UPDATE gobucardo.syncrun SET status = $2 WHERE id = $1 AND state = 'running'", id, status)
	return err
}

// EndRun records the end of a run.
func EndRun(ctx context.Context, q Querier, id int64, state, status string, c RunCounts) error {
	_, err := q.Exec(ctx, endRunSQL, id, state, status, c.Deletes, c.Inserts, c.Truncates, c.Conflicts)
	if err != nil {
		return fmt.Errorf("record end of run %d: %w", id, err)
	}
	return nil
}

// endRunSQL records the end of run $1: state $2, status $3, counts $4-$7.
const endRunSQL = `UPDATE gobucardo.syncrun SET ended = greatest(now(), started), state = $2, status = $3,
		deletes = $4, inserts = $5, truncates = $6, conflicts = $7 WHERE id = $1`

// ClearOneTimeCopy sets a sync's onetimecopy back to 0 after it was done.
func ClearOneTimeCopy(ctx context.Context, q Querier, sync string) error {
	_, err := q.Exec(ctx, "UPDATE gobucardo.sync SET onetimecopy = 0, updated = now() WHERE name = $1", sync)
	return err
}

// ForgetRun deletes the record of a run that is not worth keeping (an empty
// run the controller made for its own bookkeeping).
func ForgetRun(ctx context.Context, q Querier, id int64) error {
	_, err := q.Exec(ctx, "DELETE FROM gobucardo.syncrun WHERE id = $1", id)
	return err
}

// AdminChannel is the NOTIFY channel on the main database through which admin
// commands talk to the running MCP. Payloads: "reload [SYNC...]",
// "kick SYNC...", "stop [REASON]", "message TEXT".
const AdminChannel = "gobucardo_admin"

// MCPLockKey is the session advisory lock the running MCP holds on the main
// database: at most one MCP per catalog.
const MCPLockKey int64 = 0x6762_4d43_50 // "gbMCP"

// MCPRunning reports whether some session holds the MCP lock on the main
// database q is connected to.
func MCPRunning(ctx context.Context, q Querier) (bool, error) {
	pid, err := MCPLockHolder(ctx, q)
	return pid != 0, err
}

// MCPLockHolder is the backend pid of the session that holds the MCP lock
// on the main database q is connected to, 0 when none does.
func MCPLockHolder(ctx context.Context, q Querier) (int32, error) {
	var pid int32
	err := q.QueryRow(ctx, `SELECT coalesce((SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1
		LIMIT 1), 0)`, MCPLockKey).Scan(&pid)
	return pid, err
}

// Process is a row of gobucardo.process.
type Process struct {
	Host       string        `json:"host"`
	PID        int           `json:"pid"`
	PPID       int           `json:"ppid"`
	Role       string        `json:"role"`
	Sync       string        `json:"sync,omitempty"`
	State      string        `json:"state"`
	Detail     string        `json:"detail"`
	Started    time.Time     `json:"started"`
	StateSince time.Time     `json:"state_since"`
	CPU        time.Duration `json:"cpu_ns"`
	RSS        int64         `json:"rss_bytes"`
	Updated    time.Time     `json:"updated"`
}

// SetProcesses replaces the process rows of host with procs, in one
// transaction.
func SetProcesses(ctx context.Context, conn *pgx.Conn, host string, procs []Process) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		pids := make([]int32, len(procs))
		for i, p := range procs {
			pids[i] = int32(p.PID)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM gobucardo.process WHERE host = $1 AND pid <> ALL($2)", host, pids); err != nil {
			return err
		}
		b := &pgx.Batch{}
		for _, p := range procs {
			b.Queue(`INSERT INTO gobucardo.process (host, pid, ppid, role, sync, state, detail, started, state_since, cpu_ms, rss_bytes, updated)
				VALUES ($1, $2, $3, $4, nullif($5, ''), $6, $7, $8, $9, $10, $11, now())
				ON CONFLICT (host, pid) DO UPDATE SET ppid = excluded.ppid, role = excluded.role, sync = excluded.sync,
					state = excluded.state, detail = excluded.detail, started = excluded.started, state_since = excluded.state_since,
					cpu_ms = excluded.cpu_ms, rss_bytes = excluded.rss_bytes, updated = now()`,
				host, p.PID, p.PPID, p.Role, p.Sync, p.State, p.Detail, p.Started, p.StateSince, p.CPU.Milliseconds(), p.RSS)
		}
		return tx.SendBatch(ctx, b).Close()
	})
}

// ListProcesses returns every process row, the MCP first, then by sync.
func ListProcesses(ctx context.Context, q Querier) ([]Process, error) {
	rows, err := q.Query(ctx, `SELECT host, pid, coalesce(ppid, 0), role, coalesce(sync, ''), state, detail, started,
			state_since, cpu_ms, rss_bytes, updated
		FROM gobucardo.process
		ORDER BY role <> 'mcp', sync NULLS FIRST, array_position(ARRAY['controller', 'kid', 'plugin'], role), pid`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Process, error) {
		var p Process
		var cpu int64
		err := r.Scan(&p.Host, &p.PID, &p.PPID, &p.Role, &p.Sync, &p.State, &p.Detail, &p.Started, &p.StateSince, &cpu, &p.RSS, &p.Updated)
		p.CPU = time.Duration(cpu) * time.Millisecond
		return p, err
	})
}
