package catalog

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Kinds of catalog objects, as users name them on the command line.
const (
	KindDB         = "db"
	KindDBGroup    = "dbgroup"
	KindTable      = "table"
	KindSequence   = "sequence"
	KindRelGroup   = "relgroup"
	KindSync       = "sync"
	KindCustomCode = "customcode"
)

// listNoun is what `mcp list` calls each kind.
var listNoun = map[string]string{
	KindDB: "dbs", KindDBGroup: "dbgroups", KindTable: "tables", KindSequence: "sequences",
	KindRelGroup: "relgroups", KindSync: "syncs", KindCustomCode: "customcode",
}

// NotFoundError says that a named object does not exist. Use errors.As.
type NotFoundError struct {
	Kind, Name string
	Where      string // optional, e.g. `on db "A"`
}

func (e *NotFoundError) Error() string {
	where := ""
	if e.Where != "" {
		where = " " + e.Where
	}
	return fmt.Sprintf("unknown %s %q%s: mcp list %s shows the known ones", e.Kind, e.Name, where, listNoun[e.Kind])
}

// ExistsError says that an object of that name exists already. Use errors.As.
type ExistsError struct {
	Kind, Name string
}

func (e *ExistsError) Error() string {
	return fmt.Sprintf("%s %q already exists: choose another name, or change it with mcp update %s %s", e.Kind, e.Name, e.Kind, e.Name)
}

// InvalidError says what is wrong with a value and how to fix it.
type InvalidError struct {
	Msg string
}

func (e *InvalidError) Error() string { return e.Msg }

// Invalidf returns an *InvalidError with a formatted message.
func Invalidf(format string, args ...any) error {
	return &InvalidError{Msg: fmt.Sprintf(format, args...)}
}

// InUseError says that an object cannot be removed because others use it.
type InUseError struct {
	Kind, Name string
	Users      []string // e.g. `sync "s1"`
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("%s %q is used by %s: remove those first, or use --force to remove them too",
		e.Kind, e.Name, strings.Join(e.Users, ", "))
}

// IsUserError reports whether err is a problem with the user's input (as
// opposed to a failure of the system), so that it is shown as it is.
func IsUserError(err error) bool {
	var nf *NotFoundError
	var ex *ExistsError
	var inv *InvalidError
	var iu *InUseError
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &nf), errors.As(err, &ex), errors.As(err, &inv), errors.As(err, &iu):
		return true
	case errors.As(err, &pgErr):
		return strings.HasPrefix(pgErr.Code, "GB")
	}
	return false
}

// Message returns the sentence to show for err: the message alone for
// gobucardo's own constraint violations, err.Error() otherwise.
func Message(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "GB") {
		return pgErr.Message
	}
	return err.Error()
}

// constraintError turns a violation of one of the catalog's own constraints
// into a sentence; other errors are returned unchanged.
func constraintError(err error, kind, name string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case "23505": // unique_violation
		if strings.HasSuffix(pgErr.ConstraintName, "_pkey") || strings.Contains(pgErr.ConstraintName, "_name_") {
			return &ExistsError{Kind: kind, Name: name}
		}
	case "23514": // check_violation
		if pgErr.ConstraintName == "object_name_valid" {
			return Invalidf("%s name %q is not valid: use a letter, then letters, digits, _ or - (at most 63 bytes; not \"all\")", kind, name)
		}
		if pgErr.ConstraintName == "sync_name_reserved" {
			return Invalidf("sync name %q is reserved: choose another name", name)
		}
	}
	return err
}

func isUnique(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
