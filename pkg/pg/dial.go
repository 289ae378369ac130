package pg

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults of the dead-peer detection on TCP connections (see
// DeadPeerSettings): a peer whose packets are silently dropped is given up
// within about DefaultTCPUserTimeout, instead of the kernel's 15 minutes.
const (
	DefaultTCPUserTimeout     = 10 * time.Second
	DefaultKeepalivesIdle     = 5 * time.Second
	DefaultKeepalivesInterval = time.Second
	DefaultKeepalivesCount    = 5
)

// DeadPeerSettings bound how long a session waits on a database host that
// stopped answering without closing the connection (a host gone, a cut
// network, a firewall dropping packets): TCP keepalives probe an idle
// session, and TCP_USER_TIMEOUT (Linux) fails a session whose data or
// probes stay unacknowledged. A live server answers both from its kernel,
// however long its statement runs. They are read from the connection
// string under libpq's names: keepalives (0 turns probes off),
// keepalives_idle, keepalives_interval (seconds), keepalives_count, and
// tcp_user_timeout (milliseconds, 0 for the kernel's default).
type DeadPeerSettings struct {
	Keepalives         bool
	KeepalivesIdle     time.Duration
	KeepalivesInterval time.Duration
	KeepalivesCount    int
	TCPUserTimeout     time.Duration
}

// deadPeerParams are the libpq parameters DeadPeerSettings reads; pgx
// would send them to the server as settings, which it refuses.
var deadPeerParams = []string{"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout"}

// takeDeadPeerSettings removes the dead-peer parameters from cfg's runtime
// parameters and returns the settings they make, with the defaults for
// those not given.
func takeDeadPeerSettings(cfg *pgx.ConnConfig) (DeadPeerSettings, error) {
	s := DeadPeerSettings{Keepalives: true, KeepalivesIdle: DefaultKeepalivesIdle, KeepalivesInterval: DefaultKeepalivesInterval,
		KeepalivesCount: DefaultKeepalivesCount, TCPUserTimeout: DefaultTCPUserTimeout}
	for _, k := range deadPeerParams {
		v, ok := cfg.RuntimeParams[k]
		if !ok {
			continue
		}
		delete(cfg.RuntimeParams, k)
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return s, fmt.Errorf("%w: %s=%q is not a whole number of %s", ErrInvalidDSN, k, v, unitOf(k))
		}
		switch k {
		case "keepalives":
			s.Keepalives = n != 0
		case "keepalives_idle":
			s.KeepalivesIdle = time.Duration(n) * time.Second
		case "keepalives_interval":
			s.KeepalivesInterval = time.Duration(n) * time.Second
		case "keepalives_count":
			s.KeepalivesCount = n
		case "tcp_user_timeout":
			s.TCPUserTimeout = time.Duration(n) * time.Millisecond
		}
	}
	return s, nil
}

func unitOf(param string) string {
	switch param {
	case "tcp_user_timeout":
		return "milliseconds"
	case "keepalives_idle", "keepalives_interval":
		return "seconds"
	}
	return "times"
}

// dialer dials TCP with s's keepalives and TCP_USER_TIMEOUT (unix sockets
// as they are).
func (s DeadPeerSettings) dialer(connectTimeout time.Duration) pgconnDialFunc {
	d := &net.Dialer{Timeout: connectTimeout, KeepAlive: -1}
	if s.Keepalives {
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: s.KeepalivesIdle, Interval: s.KeepalivesInterval, Count: s.KeepalivesCount}
	}
	d.Control = func(network, _ string, c syscall.RawConn) error {
		if s.TCPUserTimeout <= 0 || (network != "tcp" && network != "tcp4" && network != "tcp6") {
			return nil
		}
		var serr error
		if err := c.Control(func(fd uintptr) { serr = setTCPUserTimeout(fd, s.TCPUserTimeout) }); err != nil {
			return err
		}
		return serr
	}
	return d.DialContext
}

// pgconnDialFunc is pgconn.DialFunc.
type pgconnDialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)
