package replicate

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/gobucardo/gobucardo/pkg/pg"
)

// Sessions keeps a run's database sessions for the next runs of the same
// sync (Options.Sessions), as Bucardo's kidsalive does: a long-lived kid
// then forks no backend and prepares no statement per run. A run takes
// the sessions it needs and gives them back when it succeeded; a session
// of a run that failed is closed (the next attempt starts afresh, in
// whatever state the failure left it), and so is every kept session the
// run did not use (a db or DSN that changed, a target left out). A kept
// session is checked by the run's first statement, its BEGIN: one that
// died meanwhile (a server restarted, a backend terminated) is replaced
// by a new one there, at no cost to the run.
//
// A run leaves no state in a session it gives back but its tables of
// changed keys (see keysTable), kept on purpose and empty between runs:
// its settings are SET LOCAL, its other temporary tables ON COMMIT DROP,
// its advisory locks transaction-scoped, and its transaction is over (a
// session is kept only when idle). pgx's statement cache keeps the
// session's prepared statements from one run to the next.
//
// The zero value is not usable: use NewSessions. Close closes every kept
// session.
type Sessions struct {
	mu   sync.Mutex
	idle map[sessionKey]kept
}

// kept is a kept session, with the temporary tables it has (see
// keysTable).
type kept struct {
	conn  *pgx.Conn
	temps map[string]bool
}

// sessionKey tells kept sessions apart: a source's db has two, one that
// reads (with the run's snapshot) and one that writes (the other
// sources' changes).
type sessionKey struct {
	db, dsn string
	writer  bool
}

// NewSessions returns an empty Sessions.
func NewSessions() *Sessions { return &Sessions{idle: map[sessionKey]kept{}} }

// take removes the kept session of k and returns it (conn nil: none).
func (s *Sessions) take(k sessionKey) kept {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.idle[k]
	delete(s.idle, k)
	return c
}

// keepOnly makes keep the kept sessions, and closes those kept before that
// the run did not take.
func (s *Sessions) keepOnly(ctx context.Context, keep map[sessionKey]kept) {
	s.mu.Lock()
	stale := s.idle
	s.idle = keep
	s.mu.Unlock()
	closeAll(ctx, stale)
}

// Close closes every kept session.
func (s *Sessions) Close(ctx context.Context) {
	s.keepOnly(ctx, map[sessionKey]kept{})
}

// Len is how many sessions are kept.
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.idle)
}

func closeAll(ctx context.Context, sessions map[sessionKey]kept) {
	for _, k := range sessions {
		closeConn(ctx, k.conn)
	}
}

// closeConn closes c, waiting at most a moment for a server that does not
// answer.
func closeConn(ctx context.Context, c *pgx.Conn) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = c.Close(cctx)
}

// session gives the run a session on d, its transaction begun with txo:
// a kept one (whose BEGIN checks it, and a new one if it died), or a new
// one.
func (r *run) session(ctx context.Context, d DB, writer bool, txo pgx.TxOptions) (kept, pgx.Tx, error) {
	if r.opts.Sessions != nil {
		if k := r.opts.Sessions.take(sessionKey{db: d.Name, dsn: d.ConnString, writer: writer}); k.conn != nil {
			tx, err := k.conn.BeginTx(ctx, txo)
			if err == nil {
				return k, tx, nil
			}
			closeConn(ctx, k.conn)
			if ctx.Err() != nil {
				return kept{}, nil, fmt.Errorf("begin on %s: %w", d.Name, err)
			}
			r.log.Debug("a kept session is gone: connecting again", zap.String("db", d.Name), zap.Error(err))
		}
	}
	conn, err := connect(ctx, d)
	if err != nil {
		return kept{}, nil, err
	}
	tx, err := conn.BeginTx(ctx, txo)
	if err != nil {
		closeConn(ctx, conn)
		return kept{}, nil, fmt.Errorf("begin on %s: %w", d.Name, err)
	}
	return kept{conn: conn, temps: map[string]bool{}}, tx, nil
}

// keysTable names the temporary table of rel's changed keys, typed as on
// the first source (cols), with changedAt a column of their latest change
// time (on a source) or not (on a writer). The name stands for the
// table's shape: a table a session keeps from an earlier run is the one
// this run needs, or is left alone (a key whose type changed gets a table
// of its own).
func keysTable(rel Relation, cols *columnSet, changedAt bool) string {
	h := fnv.New64a()
	parts := []string{rel.Schema, rel.Name}
	for _, k := range rel.KeyColumns {
		parts = append(parts, k, cols.types[k])
	}
	for _, part := range parts {
		_, _ = h.Write([]byte(part))
		_, _ = h.Write([]byte{0})
	}
	prefix := "gb_keys_"
	if changedAt {
		prefix = "gb_changed_"
	}
	return fmt.Sprintf("%s%016x", prefix, h.Sum64())
}

// useKeysTable makes the temporary table name (see keysTable) ready and
// empty on a session that has temps. A session creates it once and keeps
// it, emptied at each commit: a table created per run would add and
// delete rows of pg_class, pg_attribute, pg_type and pg_depend each time,
// which bloats them over months. It is analyzed once, empty, so that the
// planner sizes it by its pages rather than as 10 pages of rows (a run of
// many keys analyzes it again).
func useKeysTable(ctx context.Context, tx pgx.Tx, temps map[string]bool, name string, rel Relation, cols *columnSet, changedAt bool) error {
	if temps[name] {
		_, err := tx.Exec(ctx, "DELETE FROM pg_temp."+name)
		return err
	}
	var defs []string
	for _, k := range rel.KeyColumns {
		defs = append(defs, pg.Ident(k)+" "+cols.types[k])
	}
	if changedAt {
		defs = append(defs, "changed_at timestamptz")
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TEMP TABLE %s (%s) ON COMMIT DELETE ROWS; ANALYZE pg_temp.%s",
		name, strings.Join(defs, ", "), name)); err != nil {
		return err
	}
	temps[name] = true
	return nil
}
