package catalog

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/pg"
)

var nameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)

// ValidName checks a name of a db, dbgroup, relgroup, sync or customcode
// against the rule the catalog enforces.
func ValidName(kind, name string) error {
	if !nameRE.MatchString(name) || len(name) > 63 || strings.EqualFold(name, "all") {
		return Invalidf("%s name %q is not valid: use a letter, then letters, digits, _ or - (at most 63 bytes; not \"all\")", kind, name)
	}
	if kind == KindSync {
		switch strings.ToLower(name) {
		case "pushdelta", "fullcopy", "swap", "sync":
			return Invalidf("sync name %q is reserved: choose another name", name)
		}
	}
	return nil
}

// Statuses of dbs and syncs.
const (
	StatusActive   = "active"
	StatusInactive = "inactive"
)

// DB is a replicated database and how to reach it: either DSN, a whole
// connection string, or its parts.
type DB struct {
	Name      string    `json:"name"`
	DSN       string    `json:"-"`
	Host      string    `json:"host,omitempty"`
	Port      int       `json:"port,omitempty"`
	DBName    string    `json:"dbname,omitempty"`
	User      string    `json:"user,omitempty"`
	Password  string    `json:"-"`
	SSLMode   string    `json:"sslmode,omitempty"`
	Service   string    `json:"service,omitempty"`
	Status    string    `json:"status"`
	MakeDelta bool      `json:"makedelta"`
	Created   time.Time `json:"created"`
}

// ConnString is the connection string to reach the db, password included:
// never show it; Display is for showing.
func (d *DB) ConnString() string {
	if d.DSN != "" {
		return d.DSN
	}
	p := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			p[k] = v
		}
	}
	set("host", d.Host)
	if d.Port != 0 {
		p["port"] = strconv.Itoa(d.Port)
	}
	set("dbname", d.DBName)
	set("user", d.User)
	set("password", d.Password)
	set("sslmode", d.SSLMode)
	set("service", d.Service)
	return pg.KeyValue(p)
}

// Display is the connection string with any password shown as ***.
func (d *DB) Display() string {
	if d.DSN == "" {
		c := *d
		if c.Password != "" {
			c.Password = "***"
		}
		return c.ConnString()
	}
	return RedactDSN(d.DSN)
}

var kvPassword = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']+)`)

// RedactDSN shows a key/value string or URL with its password as ***.
func RedactDSN(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "(unparsable URL)"
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "***")
			u.RawQuery = q.Encode()
		}
		if _, has := u.User.Password(); has {
			return strings.Replace(u.Redacted(), ":xxxxx@", ":***@", 1)
		}
		return u.String()
	}
	return kvPassword.ReplaceAllString(dsn, "${1}***")
}

const dbColumns = `name, coalesce(dsn, ''), coalesce(host, ''), coalesce(port, 0), coalesce(dbname, ''),
	coalesce(dbuser, ''), coalesce(dbpass, ''), coalesce(sslmode, ''), coalesce(service, ''),
	status, makedelta, created`

func scanDB(row pgx.Row) (DB, error) {
	var d DB
	err := row.Scan(&d.Name, &d.DSN, &d.Host, &d.Port, &d.DBName, &d.User, &d.Password,
		&d.SSLMode, &d.Service, &d.Status, &d.MakeDelta, &d.Created)
	return d, err
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullIfZero(n int) any {
	if n == 0 {
		return nil
	}
	return n
}

// AddDB stores a new db.
func AddDB(ctx context.Context, q Querier, d DB) error {
	if err := ValidName(KindDB, d.Name); err != nil {
		return err
	}
	if d.Status == "" {
		d.Status = StatusActive
	}
	_, err := q.Exec(ctx, `INSERT INTO gobucardo.db
		(name, dsn, host, port, dbname, dbuser, dbpass, sslmode, service, status, makedelta)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		d.Name, nullIfEmpty(d.DSN), nullIfEmpty(d.Host), nullIfZero(d.Port), nullIfEmpty(d.DBName),
		nullIfEmpty(d.User), nullIfEmpty(d.Password), nullIfEmpty(d.SSLMode), nullIfEmpty(d.Service),
		d.Status, d.MakeDelta)
	if err != nil {
		return fmt.Errorf("add db %s: %w", d.Name, pg.RedactError(constraintError(err, KindDB, d.Name), d.Password))
	}
	return nil
}

// UpdateDB writes every field of d to the db of that name.
func UpdateDB(ctx context.Context, q Querier, d DB) error {
	tag, err := q.Exec(ctx, `UPDATE gobucardo.db SET dsn = $2, host = $3, port = $4, dbname = $5,
		dbuser = $6, dbpass = $7, sslmode = $8, service = $9, status = $10, makedelta = $11, updated = now()
		WHERE name = $1`,
		d.Name, nullIfEmpty(d.DSN), nullIfEmpty(d.Host), nullIfZero(d.Port), nullIfEmpty(d.DBName),
		nullIfEmpty(d.User), nullIfEmpty(d.Password), nullIfEmpty(d.SSLMode), nullIfEmpty(d.Service),
		d.Status, d.MakeDelta)
	if err != nil {
		return fmt.Errorf("update db %s: %w", d.Name, pg.RedactError(err, d.Password))
	}
	if tag.RowsAffected() == 0 {
		return &NotFoundError{Kind: KindDB, Name: d.Name}
	}
	return nil
}

// GetDB returns the db of that name.
func GetDB(ctx context.Context, q Querier, name string) (DB, error) {
	d, err := scanDB(q.QueryRow(ctx, "SELECT "+dbColumns+" FROM gobucardo.db WHERE name = $1", name))
	if errors.Is(err, pgx.ErrNoRows) {
		return d, &NotFoundError{Kind: KindDB, Name: name}
	}
	if err != nil {
		return d, fmt.Errorf("read db %s: %w", name, err)
	}
	return d, nil
}

// ListDBs returns every db, by name.
func ListDBs(ctx context.Context, q Querier) ([]DB, error) {
	rows, err := q.Query(ctx, "SELECT "+dbColumns+" FROM gobucardo.db ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list dbs: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (DB, error) { return scanDB(r) })
}

// DBUsers names the syncs and dbgroups that use the db.
func DBUsers(ctx context.Context, q Querier, name string) (syncs, dbgroups []string, err error) {
	err = q.QueryRow(ctx, `SELECT
		coalesce((SELECT array_agg(DISTINCT s.name ORDER BY s.name) FROM gobucardo.sync s
		           JOIN gobucardo.dbgroup_member m ON m.dbgroup = s.dbgroup WHERE m.db = $1), '{}'),
		coalesce((SELECT array_agg(dbgroup ORDER BY dbgroup) FROM gobucardo.dbgroup_member WHERE db = $1), '{}')`,
		name).Scan(&syncs, &dbgroups)
	if err != nil {
		return nil, nil, fmt.Errorf("find users of db %s: %w", name, err)
	}
	return syncs, dbgroups, nil
}

// RemoveDB removes the db. Without force it refuses while a sync or dbgroup
// uses it; with force it removes those syncs, its memberships and its
// relations too, and returns what it removed.
func RemoveDB(ctx context.Context, q Querier, name string, force bool) ([]string, error) {
	if _, err := GetDB(ctx, q, name); err != nil {
		return nil, err
	}
	syncs, groups, err := DBUsers(ctx, q, name)
	if err != nil {
		return nil, err
	}
	if !force && len(syncs)+len(groups) > 0 {
		var users []string
		for _, s := range syncs {
			users = append(users, fmt.Sprintf("sync %q", s))
		}
		for _, g := range groups {
			users = append(users, fmt.Sprintf("dbgroup %q", g))
		}
		return nil, &InUseError{Kind: KindDB, Name: name, Users: users}
	}
	var removed []string
	for _, s := range syncs {
		if err := RemoveSync(ctx, q, s); err != nil {
			return nil, err
		}
		removed = append(removed, fmt.Sprintf("sync %q", s))
	}
	steps := []struct{ what, sql string }{
		{"dbgroup memberships", "DELETE FROM gobucardo.dbgroup_member WHERE db = $1"},
		{"relations", "DELETE FROM gobucardo.relation WHERE db = $1"},
		{"relgroup", "UPDATE gobucardo.relgroup SET db = NULL WHERE db = $1"},
		{"db", "DELETE FROM gobucardo.db WHERE name = $1"},
	}
	for _, st := range steps {
		tag, err := q.Exec(ctx, st.sql, name)
		if err != nil {
			return nil, fmt.Errorf("remove db %s: %s: %w", name, st.what, err)
		}
		if st.what == "relations" && tag.RowsAffected() > 0 {
			removed = append(removed, fmt.Sprintf("%d relations of db %q", tag.RowsAffected(), name))
		}
	}
	return removed, nil
}
