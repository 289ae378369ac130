package catalog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Conflict strategies.
const (
	StrategyLatest          = "bucardo_latest"
	StrategyLatestAllTables = "bucardo_latest_all_tables"
	StrategySource          = "bucardo_source"
	StrategySkip            = "bucardo_skip"
	StrategyRandom          = "bucardo_random"
	StrategyAbort           = "bucardo_abort"
	StrategyCustom          = "custom"
)

// ParseConflictStrategy accepts a strategy, a short form (latest, default,
// latest_all, source, skip, random, abort) or an ordered list of db names
// ("B A C" or "B,A,C"), and returns its canonical form.
func ParseConflictStrategy(s string) (string, error) {
	switch v := strings.ToLower(strings.TrimSpace(s)); v {
	case "default", "latest", StrategyLatest:
		return StrategyLatest, nil
	case "latest_all", "latest_all_tables", StrategyLatestAllTables:
		return StrategyLatestAllTables, nil
	case "source", StrategySource:
		return StrategySource, nil
	case "skip", StrategySkip:
		return StrategySkip, nil
	case "random", StrategyRandom:
		return StrategyRandom, nil
	case "abort", StrategyAbort:
		return StrategyAbort, nil
	case StrategyCustom, "bucardo_custom":
		return StrategyCustom, nil
	}
	names := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
	if len(names) == 0 {
		return "", Invalidf("conflict_strategy is empty: use bucardo_latest, bucardo_latest_all_tables, bucardo_source, bucardo_skip, bucardo_random, bucardo_abort, custom, or a list of source dbs (\"B A C\")")
	}
	seen := map[string]bool{}
	for _, n := range names {
		if strings.HasPrefix(strings.ToLower(n), "bucardo_") || !nameRE.MatchString(n) {
			return "", Invalidf("conflict_strategy %q is not valid: use bucardo_latest, bucardo_latest_all_tables, bucardo_source, bucardo_skip, bucardo_random, bucardo_abort, custom, or a list of source dbs (\"B A C\")", s)
		}
		if seen[n] {
			return "", Invalidf("conflict_strategy %q names db %q twice: list each db once", s, n)
		}
		seen[n] = true
	}
	return strings.Join(names, " "), nil
}

// Sync is a named replication action: a relgroup over a dbgroup, with options.
type Sync struct {
	Name             string        `json:"name"`
	RelGroup         string        `json:"relgroup"`
	DBGroup          string        `json:"dbgroup"`
	Status           string        `json:"status"`
	Autokick         bool          `json:"autokick"`
	Checktime        time.Duration `json:"checktime"`
	ConflictStrategy string        `json:"conflict_strategy"`
	OneTimeCopy      int           `json:"onetimecopy"`
	Stayalive        bool          `json:"stayalive"`
	Kidsalive        bool          `json:"kidsalive"`
	IsolationLevel   string        `json:"isolation_level"`
	Lifetime         time.Duration `json:"lifetime"`
	MaxKicks         int           `json:"maxkicks"`
	MakeDelta        bool          `json:"makedelta"`
	CommitEvery      int           `json:"commit_every"`
	DeleteMethod     string        `json:"deletemethod"`
	// StrictChecking (Bucardo's strict_checking, default true): a column a
	// source has and a target lacks fails a run; false leaves it out of the
	// copy to that target. A table's own setting wins.
	StrictChecking bool `json:"strict_checking"`
	// Overdue and Expired are the lags at which mcp ping warns and turns
	// critical (Bucardo's check_bucardo_sync); 0 is off.
	Overdue time.Duration `json:"overdue"`
	Expired time.Duration `json:"expired"`
	Created time.Time     `json:"created"`
}

// NewSync returns a sync with the catalog's defaults.
func NewSync(name string) Sync {
	return Sync{
		Name: name, Status: StatusActive, Autokick: true, ConflictStrategy: StrategyLatest,
		Stayalive: true, Kidsalive: true, IsolationLevel: "repeatable read", DeleteMethod: "delete", StrictChecking: true,
	}
}

// SyncOptions lists the options Set takes, for help texts.
var SyncOptions = []string{
	"autokick", "checktime", "conflict_strategy", "onetimecopy", "status", "stayalive", "kidsalive",
	"isolation_level", "lifetime", "maxkicks", "makedelta", "commit_every", "deletemethod", "overdue", "expired",
	"strict_checking",
}

var syncOptionAliases = map[string]string{
	"conflict": "conflict_strategy", "standard_conflict": "conflict_strategy", "txnmode": "isolation_level",
	"ping": "autokick", "commitevery": "commit_every",
}

// Set sets one option from its command-line form (checktime=30s,
// autokick=false, ...).
func (s *Sync) Set(key, value string) error {
	if k, ok := syncOptionAliases[strings.ToLower(key)]; ok {
		key = k
	}
	bad := func(want string) error {
		return Invalidf("sync %s: %s=%q is not valid: %s", s.Name, key, value, want)
	}
	var err error
	switch strings.ToLower(key) {
	case "autokick":
		s.Autokick, err = ParseBool(value)
	case "stayalive":
		s.Stayalive, err = ParseBool(value)
	case "kidsalive":
		s.Kidsalive, err = ParseBool(value)
	case "makedelta":
		s.MakeDelta, err = ParseBool(value)
	case "strict_checking":
		s.StrictChecking, err = ParseBool(value)
	case "checktime":
		s.Checktime, err = ParseDuration(value)
	case "lifetime":
		s.Lifetime, err = ParseDuration(value)
	case "overdue":
		s.Overdue, err = ParseDuration(value)
	case "expired":
		s.Expired, err = ParseDuration(value)
	case "conflict_strategy":
		s.ConflictStrategy, err = ParseConflictStrategy(value)
		if err != nil {
			return fmt.Errorf("sync %s: %w", s.Name, err)
		}
	case "onetimecopy":
		n, convErr := strconv.Atoi(value)
		if convErr != nil || n < 0 || n > 2 {
			return bad("use 0 (off), 1 (copy every table in full) or 2 (copy tables that are empty on the target)")
		}
		s.OneTimeCopy = n
	case "status":
		v := strings.ToLower(value)
		if v != StatusActive && v != StatusInactive {
			return bad("use active or inactive")
		}
		s.Status = v
	case "isolation_level":
		v := strings.ToLower(strings.ReplaceAll(value, "_", " "))
		if v != "repeatable read" && v != "serializable" {
			return bad("use \"repeatable read\" or serializable")
		}
		s.IsolationLevel = v
	case "maxkicks":
		n, convErr := strconv.Atoi(value)
		if convErr != nil || n < 0 {
			return bad("use a whole number, 0 for no limit")
		}
		s.MaxKicks = n
	case "commit_every":
		n, convErr := strconv.Atoi(value)
		if convErr != nil || n < 0 {
			return bad("use a number of rows, 0 to commit each run once")
		}
		s.CommitEvery = n
	case "deletemethod":
		v := strings.ToLower(value)
		if v != "delete" && v != "truncate" && v != "truncate_cascade" {
			return bad("use delete, truncate or truncate_cascade")
		}
		s.DeleteMethod = v
	default:
		return Invalidf("sync %s: unknown option %q: the options are %s", s.Name, key, strings.Join(SyncOptions, ", "))
	}
	if err != nil {
		return bad(err.Error())
	}
	return nil
}

// CheckThresholds says, in one sentence, when expired is below overdue: a
// lag would be critical before it warns. Set checks each option alone;
// this checks them together, once all are set.
func (s *Sync) CheckThresholds() error {
	if s.Overdue > 0 && s.Expired > 0 && s.Expired < s.Overdue {
		return Invalidf("sync %s: expired=%s is below overdue=%s: raise expired, lower overdue, or set one to 0 (off)",
			s.Name, s.Expired, s.Overdue)
	}
	return nil
}

// ParseBool accepts true/false, on/off, yes/no, 1/0.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "on", "yes", "1", "t", "y":
		return true, nil
	case "false", "off", "no", "0", "f", "n":
		return false, nil
	}
	return false, errors.New("use true or false")
}

// ParseDuration accepts Go durations (30s, 5m, 1h30m), a number of seconds,
// and 0 or "off" for none.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" || s == "0" || strings.EqualFold(s, "off") || strings.EqualFold(s, "none") {
		return 0, nil
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil && n > 0 {
		return time.Duration(n * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("use a duration such as 30s, 5m or 1h, or 0 for none")
	}
	return d, nil
}

const syncColumns = `name, relgroup, dbgroup, status, autokick,
	coalesce(extract(epoch FROM checktime), 0)::float8, conflict_strategy, onetimecopy, stayalive, kidsalive,
	isolation_level, coalesce(extract(epoch FROM lifetime), 0)::float8, maxkicks, makedelta,
	coalesce(commit_every, 0), deletemethod, coalesce(extract(epoch FROM overdue), 0)::float8,
	coalesce(extract(epoch FROM expired), 0)::float8, strict_checking, created`

func scanSync(row pgx.Row) (Sync, error) {
	var s Sync
	var check, life, overdue, expired float64
	var otc int16
	err := row.Scan(&s.Name, &s.RelGroup, &s.DBGroup, &s.Status, &s.Autokick, &check, &s.ConflictStrategy,
		&otc, &s.Stayalive, &s.Kidsalive, &s.IsolationLevel, &life, &s.MaxKicks, &s.MakeDelta,
		&s.CommitEvery, &s.DeleteMethod, &overdue, &expired, &s.StrictChecking, &s.Created)
	s.Checktime = time.Duration(check * float64(time.Second))
	s.Lifetime = time.Duration(life * float64(time.Second))
	s.Overdue = time.Duration(overdue * float64(time.Second))
	s.Expired = time.Duration(expired * float64(time.Second))
	s.OneTimeCopy = int(otc)
	return s, err
}

func seconds(d time.Duration) any {
	if d == 0 {
		return nil
	}
	return d.Seconds()
}

func syncArgs(s Sync) []any {
	return []any{s.Name, s.RelGroup, s.DBGroup, s.Status, s.Autokick, seconds(s.Checktime), s.ConflictStrategy,
		s.OneTimeCopy, s.Stayalive, s.Kidsalive, s.IsolationLevel, seconds(s.Lifetime), s.MaxKicks, s.MakeDelta,
		nullIfZero(s.CommitEvery), s.DeleteMethod, seconds(s.Overdue), seconds(s.Expired), s.StrictChecking}
}

// AddSync stores a new sync. Its relgroup and dbgroup must exist.
func AddSync(ctx context.Context, q Querier, s Sync) error {
	if err := ValidName(KindSync, s.Name); err != nil {
		return err
	}
	_, err := q.Exec(ctx, `INSERT INTO gobucardo.sync (name, relgroup, dbgroup, status, autokick, checktime,
		conflict_strategy, onetimecopy, stayalive, kidsalive, isolation_level, lifetime, maxkicks, makedelta,
		commit_every, deletemethod, overdue, expired, strict_checking)
		VALUES ($1, $2, $3, $4, $5, make_interval(secs => $6), $7, $8, $9, $10, $11, make_interval(secs => $12),
		        $13, $14, $15, $16, make_interval(secs => $17), make_interval(secs => $18), $19)`, syncArgs(s)...)
	if err != nil {
		return fmt.Errorf("add sync %s: %w", s.Name, constraintError(err, KindSync, s.Name))
	}
	return nil
}

// UpdateSync writes every field of s to the sync of that name.
func UpdateSync(ctx context.Context, q Querier, s Sync) error {
	tag, err := q.Exec(ctx, `UPDATE gobucardo.sync SET relgroup = $2, dbgroup = $3, status = $4, autokick = $5,
		checktime = make_interval(secs => $6), conflict_strategy = $7, onetimecopy = $8, stayalive = $9,
		kidsalive = $10, isolation_level = $11, lifetime = make_interval(secs => $12), maxkicks = $13,
		makedelta = $14, commit_every = $15, deletemethod = $16, overdue = make_interval(secs => $17),
		expired = make_interval(secs => $18), strict_checking = $19, updated = now()
		WHERE name = $1`, syncArgs(s)...)
	if err != nil {
		return fmt.Errorf("update sync %s: %w", s.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return &NotFoundError{Kind: KindSync, Name: s.Name}
	}
	return nil
}

// GetSync returns the sync of that name.
func GetSync(ctx context.Context, q Querier, name string) (Sync, error) {
	s, err := scanSync(q.QueryRow(ctx, "SELECT "+syncColumns+" FROM gobucardo.sync WHERE name = $1", name))
	if errors.Is(err, pgx.ErrNoRows) {
		return s, &NotFoundError{Kind: KindSync, Name: name}
	}
	if err != nil {
		return s, fmt.Errorf("read sync %s: %w", name, err)
	}
	return s, nil
}

// ListSyncs returns every sync, by name.
func ListSyncs(ctx context.Context, q Querier) ([]Sync, error) {
	rows, err := q.Query(ctx, "SELECT "+syncColumns+" FROM gobucardo.sync ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list syncs: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Sync, error) { return scanSync(r) })
}

// SyncProblems returns every rule the sync breaks that the catalog can
// decide (no source, a conflict list naming a non-source, a keyless table in
// a delta sync), as sentences. The catalog refuses to commit while any
// remains.
func SyncProblems(ctx context.Context, q Querier, name string) ([]string, error) {
	rows, err := q.Query(ctx, "SELECT gobucardo.sync_problems($1)", name)
	if err != nil {
		return nil, fmt.Errorf("check sync %s: %w", name, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// RemoveSync removes a sync; its run history is kept.
func RemoveSync(ctx context.Context, q Querier, name string) error {
	tag, err := q.Exec(ctx, "DELETE FROM gobucardo.sync WHERE name = $1", name)
	if err != nil {
		return fmt.Errorf("remove sync %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return &NotFoundError{Kind: KindSync, Name: name}
	}
	return nil
}
