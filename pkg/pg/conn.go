package pg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ApplicationName is set on every session gobucardo opens unless the
// connection string names one, so that pg_stat_activity shows who is who.
const ApplicationName = "gobucardo"

// DefaultConnectTimeout bounds a connection attempt when the connection
// string sets no connect_timeout.
const DefaultConnectTimeout = 10 * time.Second

// ErrInvalidDSN is returned (wrapped) by ParseConfig for a connection string
// that libpq syntax does not accept. Use errors.Is.
var ErrInvalidDSN = errors.New("invalid connection string")

// ParseConfig parses a libpq key/value string or a postgres:// URL. Its error
// never contains the connection string, which may hold a password.
func ParseConfig(connString string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidDSN, parseReason(err))
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = ApplicationName
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	dp, err := takeDeadPeerSettings(cfg)
	if err != nil {
		return nil, err
	}
	cfg.DialFunc = dp.dialer(cfg.ConnectTimeout)
	return cfg, nil
}

// parseReason keeps only pgconn's reason of a parse error: the part after the
// quoted connection string, without the wrapped error (which can quote the
// string again, password included).
func parseReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "`: "); i >= 0 {
		msg = msg[i+3:]
	} else {
		return "malformed"
	}
	if i := strings.Index(msg, " ("); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

// Connect parses connString and connects. Errors are redacted of the
// connection's password.
func Connect(ctx context.Context, connString string) (*pgx.Conn, error) {
	cfg, err := ParseConfig(connString)
	if err != nil {
		return nil, err
	}
	return ConnectConfig(ctx, cfg)
}

// ConnectConfig connects with cfg. Errors are redacted of cfg's password.
func ConnectConfig(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, RedactError(err, cfg.Password)
	}
	return conn, nil
}

// KeyValue builds a libpq key/value connection string from params, keys in
// sorted order, every value quoted as libpq requires.
func KeyValue(params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(quoteValue(params[k]))
	}
	return b.String()
}

func quoteValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " '\\\t\n") {
		return v
	}
	v = strings.ReplaceAll(v, `\`, `\\`)
	v = strings.ReplaceAll(v, `'`, `\'`)
	return "'" + v + "'"
}

// Redact replaces every occurrence of each non-empty secret in s with ***.
func Redact(s string, secrets ...string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "***")
		}
	}
	return s
}

// RedactError returns err, or an error with the same chain and a message in
// which the secrets are replaced with ***.
func RedactError(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if red := Redact(msg, secrets...); red != msg {
		return &redactedError{msg: red, err: err}
	}
	return err
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// MainDSN tells how to reach the main database: dsn when it is set (from
// --dsn or GOBUCARDO_DSN), else the libpq environment (PGHOST, PGPORT,
// PGUSER, PGPASSFILE, PGSERVICE, ...) with database gobucardo unless
// PGDATABASE or PGSERVICE chooses one.
func MainDSN(dsn string) string {
	if dsn != "" {
		return dsn
	}
	if os.Getenv("PGDATABASE") == "" && os.Getenv("PGSERVICE") == "" {
		return "dbname=gobucardo"
	}
	return ""
}

// Ident quotes a possibly schema-qualified identifier: Ident("public", "T 1")
// is "public"."T 1".
func Ident(parts ...string) string {
	return pgx.Identifier(parts).Sanitize()
}

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)

// Display shows a possibly qualified name as a user would type it, quoting
// only the parts PostgreSQL would need quoted: Display("public", "T 1") is
// public."T 1". Use Ident, not Display, in SQL.
func Display(parts ...string) string {
	out := make([]string, len(parts))
	for i, p := range parts {
		if plainIdent.MatchString(p) {
			out[i] = p
		} else {
			out[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
		}
	}
	return strings.Join(out, ".")
}

// Retryable SQLSTATEs: serialization failure and deadlock.
const (
	SerializationFailure = "40001"
	DeadlockDetected     = "40P01"
	LockNotAvailable     = "55P03" // lock_timeout ran out
)

// IsRetryable reports whether err is a serialization failure, a deadlock or
// a lock not granted within lock_timeout, after which the same transaction
// may succeed if run again.
func IsRetryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == SerializationFailure || pgErr.Code == DeadlockDetected || pgErr.Code == LockNotAvailable
	}
	return false
}

// IsConnectionError reports whether err means the session is gone or could
// not be opened: a network error, a failed connect, or the server shutting
// down or refusing connections (SQLSTATE class 08, 57P01-57P03).
func IsConnectionError(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || pgconn.Timeout(err)
}

// Password is the password a connection string holds ("" if none or if it
// does not parse), for RedactError.
func Password(connString string) string {
	if cfg, err := ParseConfig(connString); err == nil {
		return cfg.Password
	}
	return ""
}
