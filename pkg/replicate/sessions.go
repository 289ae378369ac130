package replicate

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
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
// A run leaves no state in a session it gives back: its settings are SET
// LOCAL, its temporary tables ON COMMIT DROP, its advisory locks
// transaction-scoped, and its transaction is over.
//
// The zero value is not usable: use NewSessions. Close closes every kept
// session.
type Sessions struct {
	mu   sync.Mutex
	idle map[sessionKey]*pgx.Conn
}

// sessionKey tells kept sessions apart: a source's db has two, one that
// reads (with the run's snapshot) and one that writes (the other
// sources' changes).
type sessionKey struct {
	db, dsn string
	writer  bool
}

// NewSessions returns an empty Sessions.
func NewSessions() *Sessions { return &Sessions{idle: map[sessionKey]*pgx.Conn{}} }

// take removes the kept session of k and returns it (nil: none).
func (s *Sessions) take(k sessionKey) *pgx.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.idle[k]
	delete(s.idle, k)
	return c
}

// keepOnly makes keep the kept sessions, and closes those kept before that
// the run did not take.
func (s *Sessions) keepOnly(ctx context.Context, keep map[sessionKey]*pgx.Conn) {
	s.mu.Lock()
	stale := s.idle
	s.idle = keep
	s.mu.Unlock()
	closeAll(ctx, stale)
}

// Close closes every kept session.
func (s *Sessions) Close(ctx context.Context) {
	s.keepOnly(ctx, map[sessionKey]*pgx.Conn{})
}

// Len is how many sessions are kept.
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.idle)
}

func closeAll(ctx context.Context, conns map[sessionKey]*pgx.Conn) {
	for _, c := range conns {
		closeConn(ctx, c)
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
// one. reused reports a kept one.
func (r *run) session(ctx context.Context, d DB, writer bool, txo pgx.TxOptions) (conn *pgx.Conn, tx pgx.Tx, err error) {
	if r.opts.Sessions != nil {
		if conn = r.opts.Sessions.take(sessionKey{db: d.Name, dsn: d.ConnString, writer: writer}); conn != nil {
			if tx, err = conn.BeginTx(ctx, txo); err == nil {
				return conn, tx, nil
			}
			closeConn(ctx, conn)
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("begin on %s: %w", d.Name, err)
			}
			r.log.Debug("a kept session is gone: connecting again", zap.String("db", d.Name), zap.Error(err))
		}
	}
	if conn, err = connect(ctx, d); err != nil {
		return nil, nil, err
	}
	if tx, err = conn.BeginTx(ctx, txo); err != nil {
		closeConn(ctx, conn)
		return nil, nil, fmt.Errorf("begin on %s: %w", d.Name, err)
	}
	return conn, tx, nil
}
