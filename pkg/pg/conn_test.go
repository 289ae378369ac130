package pg

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestParseConfigNeverShowsPassword(t *testing.T) {
	cases := map[string]string{
		"bad url port":  "postgres://alice:s3cretpw@db.example:notaport/app",
		"bad kv quote":  "host=db.example password='s3cretpw dbname=app",
		"bad kv key":    "host=db.example password=s3cretpw =oops",
		"bad url query": "postgres://alice:s3cretpw@db.example/app?sslmode=bogus",
	}
	for name, dsn := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig(dsn)
			if err == nil {
				t.Fatalf("ParseConfig(%q) accepted a malformed string", name)
			}
			if !errors.Is(err, ErrInvalidDSN) {
				t.Errorf("error %v is not ErrInvalidDSN", err)
			}
			if strings.Contains(err.Error(), "s3cretpw") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig("host=/tmp dbname=x")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RuntimeParams["application_name"] != ApplicationName {
		t.Errorf("application_name = %q", cfg.RuntimeParams["application_name"])
	}
	if cfg.ConnectTimeout != DefaultConnectTimeout {
		t.Errorf("connect timeout = %v", cfg.ConnectTimeout)
	}
	cfg, err = ParseConfig("host=/tmp dbname=x application_name=mine connect_timeout=3")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RuntimeParams["application_name"] != "mine" || cfg.ConnectTimeout.Seconds() != 3 {
		t.Errorf("explicit settings overridden: %v %v", cfg.RuntimeParams, cfg.ConnectTimeout)
	}
}

func TestKeyValueRoundTrip(t *testing.T) {
	params := map[string]string{
		"host":     "/tmp/sock dir",
		"dbname":   "it's",
		"user":     `back\slash`,
		"password": "",
		"port":     "5432",
	}
	s := KeyValue(params)
	cfg, err := ParseConfig(s)
	if err != nil {
		t.Fatalf("ParseConfig(%q): %v", s, err)
	}
	if cfg.Host != "/tmp/sock dir" || cfg.Database != "it's" || cfg.User != `back\slash` || cfg.Port != 5432 {
		t.Errorf("round trip of %q gave host=%q db=%q user=%q port=%d", s, cfg.Host, cfg.Database, cfg.User, cfg.Port)
	}
}

func TestRedactError(t *testing.T) {
	base := errors.New("connect as bob with hunter2 failed")
	err := RedactError(base, "hunter2", "")
	if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "***") {
		t.Errorf("not redacted: %v", err)
	}
	if !errors.Is(err, base) {
		t.Error("redacted error lost its chain")
	}
	if RedactError(base, "absent") != base { //nolint:errorlint // the very same error, not one that wraps it
		t.Error("an error without the secret should be returned as is")
	}
}

func TestIsRetryable(t *testing.T) {
	for code, want := range map[string]bool{"40001": true, "40P01": true, "23505": false, "": false} {
		var err error = &pgconn.PgError{Code: code}
		if code == "" {
			err = errors.New("plain")
		}
		if got := IsRetryable(err); got != want {
			t.Errorf("IsRetryable(%q) = %v, want %v", code, got, want)
		}
	}
}

func TestIdent(t *testing.T) {
	if got, want := Ident("public", `We"ird name`), `"public"."We""ird name"`; got != want {
		t.Errorf("Ident = %s, want %s", got, want)
	}
}

func TestMainDSN(t *testing.T) {
	t.Setenv("PGDATABASE", "")
	t.Setenv("PGSERVICE", "")
	if got := MainDSN("host=x"); got != "host=x" {
		t.Errorf("explicit dsn replaced: %q", got)
	}
	if got := MainDSN(""); got != "dbname=gobucardo" {
		t.Errorf("default = %q", got)
	}
	t.Setenv("PGDATABASE", "other")
	if got := MainDSN(""); got != "" {
		t.Errorf("with PGDATABASE = %q, want the environment's choice", got)
	}
}

// TestDeadPeerSettings: libpq's keepalive and tcp_user_timeout parameters
// are taken out of the settings sent to the server and read; defaults
// apply otherwise; a bad value is refused without quoting the string.
func TestDeadPeerSettings(t *testing.T) {
	for _, c := range []struct {
		dsn  string
		want DeadPeerSettings
		bad  bool
	}{
		{"host=h", DeadPeerSettings{true, DefaultKeepalivesIdle, DefaultKeepalivesInterval, DefaultKeepalivesCount, DefaultTCPUserTimeout}, false},
		{"host=h keepalives_idle=2 keepalives_interval=3 keepalives_count=4 tcp_user_timeout=1500",
			DeadPeerSettings{true, 2 * time.Second, 3 * time.Second, 4, 1500 * time.Millisecond}, false},
		{"postgres://u:secret@h/db?keepalives=0&tcp_user_timeout=0",
			DeadPeerSettings{false, DefaultKeepalivesIdle, DefaultKeepalivesInterval, DefaultKeepalivesCount, 0}, false},
		{"host=h password=secret tcp_user_timeout=soon", DeadPeerSettings{}, true},
	} {
		cfg, err := pgx.ParseConfig(c.dsn)
		if err != nil {
			t.Fatal(err)
		}
		got, err := takeDeadPeerSettings(cfg)
		if c.bad {
			if !errors.Is(err, ErrInvalidDSN) || strings.Contains(err.Error(), "secret") {
				t.Errorf("%s: %v", c.dsn, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %+v, %v; want %+v", c.dsn, got, err, c.want)
		}
		for _, k := range deadPeerParams {
			if _, ok := cfg.RuntimeParams[k]; ok {
				t.Errorf("%s: %s is still sent to the server", c.dsn, k)
			}
		}
		if _, err := ParseConfig(c.dsn); err != nil {
			t.Errorf("ParseConfig(%s): %v", c.dsn, err)
		}
	}
}
