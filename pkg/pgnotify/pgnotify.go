// Package pgnotify keeps a LISTEN session open on one database, reconnecting
// with backoff whenever the database goes away, so that the MCP resumes on its
// own after an outage (Bucardo issues #105 and #213: Bucardo needed a restart).
package pgnotify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/gobucardo/gobucardo/pkg/backoff"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// Listener is one LISTEN session. Set the fields, then call Run.
type Listener struct {
	// Name says which database this is, for logs ("main", "db A").
	Name string
	// ConnString reaches the database; it is never logged.
	ConnString string
	// Channels are LISTENed on at every (re)connection.
	Channels []string
	// OnConnect, when set, runs after every (re)connection, once the
	// channels are LISTENed: notifications sent from then on are delivered.
	// An error drops the connection and retries later, unless it is wrapped
	// with Permanent, which makes Run return it.
	OnConnect func(ctx context.Context, conn *pgx.Conn) error
	// OnNotify receives each notification, in order, from Run's goroutine.
	OnNotify func(n *pgconn.Notification)
	// OnDown, when set, is told each time the session is lost or cannot be
	// opened, with the reason and the wait before the next attempt.
	OnDown func(err error, retryIn time.Duration)
	// Backoff spaces the reconnection attempts (Delay(n) before attempt n:
	// 1, 2, ...); the zero Policy: DefaultBackoff.
	Backoff backoff.Policy
	// Ping is how long the session may stay silent before it is checked;
	// 0: 15s. A dead TCP connection is noticed within about twice that.
	Ping time.Duration
	// Log receives connection events; nil discards them.
	Log *zap.Logger
}

// permanentError makes Run stop.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps an OnConnect error so that Run returns it instead of
// reconnecting.
func Permanent(err error) error { return permanentError{err} }

// DefaultBackoff spaces the reconnection attempts of a Listener that sets no
// Backoff: 250ms doubling up to 10s.
var DefaultBackoff = backoff.Policy{Initial: 250 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2}

// Run keeps the session open until ctx is done (it then returns nil) or
// OnConnect returns a Permanent error (returned unwrapped).
func (l *Listener) Run(ctx context.Context) error {
	log := l.Log
	if log == nil {
		log = zap.NewNop()
	}
	policy := l.Backoff
	if policy == (backoff.Policy{}) {
		policy = DefaultBackoff
	}
	failures := 0
	for ctx.Err() == nil {
		err := l.session(ctx, log, func() { failures = 0 })
		if ctx.Err() != nil {
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) {
			return perm.err
		}
		failures++
		wait := policy.Delay(failures)
		if l.OnDown != nil {
			l.OnDown(err, wait)
		}
		log.Warn("database session lost; reconnecting", zap.String("db", l.Name), zap.Error(err), zap.Duration("retry_in", wait))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	return nil
}

// session opens one connection, listens and delivers until it fails.
func (l *Listener) session(ctx context.Context, log *zap.Logger, connected func()) error {
	conn, err := pg.Connect(ctx, l.ConnString)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	for _, ch := range l.Channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return fmt.Errorf("listen %s: %w", ch, err)
		}
	}
	if l.OnConnect != nil {
		if err := l.OnConnect(ctx, conn); err != nil {
			return err
		}
	}
	connected()
	log.Info("listening", zap.String("db", l.Name), zap.Strings("channels", l.Channels))
	ping := l.Ping
	if ping <= 0 {
		ping = 15 * time.Second
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, ping)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			if l.OnNotify != nil {
				l.OnNotify(n)
			}
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err):
			return err
		}
		// Silent for a while: make sure the connection still works.
		pctx, cancel := context.WithTimeout(ctx, ping)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return fmt.Errorf("ping: %w", err)
		}
	}
}
