package catalog

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/pg"
)

// closeTimeout bounds the goodbye to a connection that Conn lets go.
const closeTimeout = 2 * time.Second

// Conn is a long-lived connection to the main database for a process that
// must outlive the database's outages (the MCP, a controller): Get connects
// when there is no usable connection, Failed forgets the connection after an
// error that broke it, so that the next Get connects again. Set the fields,
// then call Get; Close when done. The zero value of every field but DSN is
// usable. A Conn is not safe for concurrent use, like the *pgx.Conn it holds.
type Conn struct {
	// DSN reaches the main database; it is never logged, and connection
	// errors are redacted of its password (pg.Connect).
	DSN string
	// ConnectTimeout bounds each connection attempt; 0: only Get's ctx does.
	ConnectTimeout time.Duration

	conn *pgx.Conn
}

// Get returns the open connection, or connects if there is none or the one
// held is closed. A connection error is returned as pg.Connect returns it.
func (c *Conn) Get(ctx context.Context) (*pgx.Conn, error) {
	if c.conn != nil && !c.conn.IsClosed() {
		return c.conn, nil
	}
	c.Close()
	if c.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.ConnectTimeout)
		defer cancel()
	}
	conn, err := pg.Connect(ctx, c.DSN)
	if err != nil {
		return nil, err
	}
	c.conn = conn
	return conn, nil
}

// Failed tells c that a use of the connection returned err. If err broke the
// connection (pg.IsConnectionError, or the connection is closed since), c
// closes and forgets it, and the next Get connects again; any other error
// (a violated constraint, a syntax error) or nil keeps it.
func (c *Conn) Failed(err error) {
	if c.conn != nil && (c.conn.IsClosed() || pg.IsConnectionError(err)) {
		c.Close()
	}
}

// Close closes the connection, if any, within two seconds; a later Get
// connects again.
func (c *Conn) Close() {
	if c.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = c.conn.Close(ctx)
	c.conn = nil
}
