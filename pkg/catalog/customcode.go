package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Hooks are the points where customcode runs.
var Hooks = []string{"conflict", "exception", "before_sync", "after_sync", "before_txn", "after_txn"}

// CustomCode is a plugin binary, pinned by its sha256, run at one hook for
// the syncs and tables it is attached to.
type CustomCode struct {
	Name     string `json:"name"`
	Plugin   string `json:"plugin"`
	SHA256   string `json:"sha256"`
	WhenRun  string `json:"whenrun"`
	Priority int    `json:"priority"`
	Status   string `json:"status"`
	About    string `json:"about,omitempty"`
	// Settings are the plugin's own key=value arguments, which its
	// Configure receives.
	Settings map[string]string `json:"settings"`
	// Timeout is the longest the kid waits for one answer of the plugin.
	Timeout time.Duration `json:"timeout"`
	Syncs   []string      `json:"syncs"`
	Tables  []string      `json:"tables"` // "schema.table of db"
	Created time.Time     `json:"created"`
}

// DefaultPluginTimeout is how long the kid waits for one answer of a
// plugin when its customcode does not say.
const DefaultPluginTimeout = 30 * time.Second

func settingsOrEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// ParseHook checks a whenrun value.
func ParseHook(s string) (string, error) {
	for _, h := range Hooks {
		if strings.EqualFold(s, h) {
			return h, nil
		}
	}
	return "", Invalidf("whenrun=%q is not a hook: use one of %s", s, strings.Join(Hooks, ", "))
}

// PluginChecksum resolves path to an absolute path and returns it with the
// sha256 of the file, which must be an executable regular file.
func PluginChecksum(path string) (abs, sum string, err error) {
	abs, err = filepath.Abs(path)
	if err != nil {
		return "", "", Invalidf("plugin path %q: %v", path, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return "", "", Invalidf("plugin %s cannot be read (%v): give the path of the plugin binary", abs, errors.Unwrap(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", "", fmt.Errorf("stat plugin %s: %w", abs, err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return "", "", Invalidf("plugin %s is not an executable file: build it with go build and give its path", abs)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", "", fmt.Errorf("read plugin %s: %w", abs, err)
	}
	return abs, hex.EncodeToString(h.Sum(nil)), nil
}

// AddCustomCode stores a new customcode.
func AddCustomCode(ctx context.Context, q Querier, c CustomCode) error {
	if err := ValidName(KindCustomCode, c.Name); err != nil {
		return err
	}
	if c.Status == "" {
		c.Status = StatusActive
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultPluginTimeout
	}
	_, err := q.Exec(ctx, `INSERT INTO gobucardo.customcode (name, plugin, sha256, whenrun, priority, status, about, settings, timeout)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, c.Name, c.Plugin, c.SHA256, c.WhenRun, c.Priority, c.Status, nullIfEmpty(c.About),
		settingsOrEmpty(c.Settings), c.Timeout)
	if err != nil {
		return fmt.Errorf("add customcode %s: %w", c.Name, constraintError(err, KindCustomCode, c.Name))
	}
	return nil
}

// UpdateCustomCode writes the fields of c to the customcode of that name.
func UpdateCustomCode(ctx context.Context, q Querier, c CustomCode) error {
	if c.Timeout <= 0 {
		c.Timeout = DefaultPluginTimeout
	}
	_, err := q.Exec(ctx, `UPDATE gobucardo.customcode SET plugin = $2, sha256 = $3, whenrun = $4, priority = $5,
		status = $6, about = $7, settings = $8, timeout = $9 WHERE name = $1`, c.Name, c.Plugin, c.SHA256, c.WhenRun, c.Priority,
		c.Status, nullIfEmpty(c.About), settingsOrEmpty(c.Settings), c.Timeout)
	if err != nil {
		return fmt.Errorf("update customcode %s: %w", c.Name, err)
	}
	return nil
}

// AttachCustomCode attaches the customcode to a sync (sync != "") or a
// relation (relationID != 0).
func AttachCustomCode(ctx context.Context, q Querier, code, sync string, relationID int64) error {
	var rel any
	if relationID != 0 {
		rel = relationID
	}
	_, err := q.Exec(ctx, `INSERT INTO gobucardo.customcode_map (code, sync, relation_id) VALUES ($1, $2, $3)`,
		code, nullIfEmpty(sync), rel)
	if isUnique(err) {
		return Invalidf("customcode %q is already attached there", code)
	}
	if err != nil {
		return fmt.Errorf("attach customcode %s: %w", code, err)
	}
	return nil
}

const customCodeColumns = `c.name, c.plugin, c.sha256, c.whenrun, c.priority, c.status, coalesce(c.about, ''), c.created,
	c.settings, c.timeout,
	coalesce((SELECT array_agg(m.sync ORDER BY m.sync) FROM gobucardo.customcode_map m
	           WHERE m.code = c.name AND m.sync IS NOT NULL), '{}'),
	coalesce((SELECT array_agg(r.schema_name ORDER BY r.db, r.schema_name, r.rel_name) FROM gobucardo.customcode_map m
	           JOIN gobucardo.relation r ON r.id = m.relation_id WHERE m.code = c.name), '{}'),
	coalesce((SELECT array_agg(r.rel_name ORDER BY r.db, r.schema_name, r.rel_name) FROM gobucardo.customcode_map m
	           JOIN gobucardo.relation r ON r.id = m.relation_id WHERE m.code = c.name), '{}'),
	coalesce((SELECT array_agg(r.db ORDER BY r.db, r.schema_name, r.rel_name) FROM gobucardo.customcode_map m
	           JOIN gobucardo.relation r ON r.id = m.relation_id WHERE m.code = c.name), '{}')`

func scanCustomCode(row pgx.Row) (CustomCode, error) {
	var c CustomCode
	var schemas, names, dbs []string
	err := row.Scan(&c.Name, &c.Plugin, &c.SHA256, &c.WhenRun, &c.Priority, &c.Status, &c.About, &c.Created,
		&c.Settings, &c.Timeout, &c.Syncs, &schemas, &names, &dbs)
	c.Tables = []string{}
	for i := range names {
		c.Tables = append(c.Tables, fmt.Sprintf("%s of db %s", DisplayName(schemas[i], names[i]), dbs[i]))
	}
	return c, err
}

// GetCustomCode returns the customcode of that name.
func GetCustomCode(ctx context.Context, q Querier, name string) (CustomCode, error) {
	c, err := scanCustomCode(q.QueryRow(ctx, "SELECT "+customCodeColumns+" FROM gobucardo.customcode c WHERE c.name = $1", name))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, &NotFoundError{Kind: KindCustomCode, Name: name}
	}
	if err != nil {
		return c, fmt.Errorf("read customcode %s: %w", name, err)
	}
	return c, nil
}

// ListCustomCode returns every customcode, by name.
func ListCustomCode(ctx context.Context, q Querier) ([]CustomCode, error) {
	rows, err := q.Query(ctx, "SELECT "+customCodeColumns+" FROM gobucardo.customcode c ORDER BY c.name")
	if err != nil {
		return nil, fmt.Errorf("list customcode: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (CustomCode, error) { return scanCustomCode(r) })
}

// RemoveCustomCode removes a customcode and its attachments.
func RemoveCustomCode(ctx context.Context, q Querier, name string) error {
	tag, err := q.Exec(ctx, "DELETE FROM gobucardo.customcode WHERE name = $1", name)
	if err != nil {
		return fmt.Errorf("remove customcode %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return &NotFoundError{Kind: KindCustomCode, Name: name}
	}
	return nil
}

// AttachedCode is an active customcode as a sync's run sees it: attached to
// the sync itself (Table empty) or to one of its tables.
type AttachedCode struct {
	Name, Plugin, SHA256, WhenRun string
	Priority                      int
	Settings                      map[string]string
	Timeout                       time.Duration // the longest one answer may take
	Schema, Table                 string
}

// Scope is where the code is attached: "schema.table", or "" for the sync.
func (a AttachedCode) Scope() string {
	if a.Table == "" {
		return ""
	}
	return DisplayName(a.Schema, a.Table)
}

// SyncCustomCode returns the active customcode attached to the sync or to a
// table of its relgroup: table-level first, then by priority and name.
func SyncCustomCode(ctx context.Context, q Querier, sync string) ([]AttachedCode, error) {
	rows, err := q.Query(ctx, `SELECT c.name, c.plugin, c.sha256, c.whenrun, c.priority, c.settings, c.timeout,
			coalesce(r.schema_name, ''), coalesce(r.rel_name, '')
		FROM gobucardo.customcode c
		JOIN gobucardo.customcode_map m ON m.code = c.name
		JOIN gobucardo.sync s ON s.name = $1
		LEFT JOIN gobucardo.relation r ON r.id = m.relation_id
		WHERE c.status = 'active' AND m.active
		  AND (m.sync = s.name OR m.relation_id IN (SELECT g.relation_id FROM gobucardo.relgroup_member g WHERE g.relgroup = s.relgroup))
		ORDER BY m.relation_id IS NULL, c.priority, c.name, r.schema_name, r.rel_name`, sync)
	if err != nil {
		return nil, fmt.Errorf("read customcode of sync %s: %w", sync, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (AttachedCode, error) {
		var a AttachedCode
		err := r.Scan(&a.Name, &a.Plugin, &a.SHA256, &a.WhenRun, &a.Priority, &a.Settings, &a.Timeout, &a.Schema, &a.Table)
		return a, err
	})
}
