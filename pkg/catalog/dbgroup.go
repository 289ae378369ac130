package catalog

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Roles of a db in a dbgroup.
const (
	RoleSource   = "source"
	RoleTarget   = "target"
	RoleFullcopy = "fullcopy"
)

// ParseRole accepts a role or one of Bucardo's aliases (master, replica, ...).
func ParseRole(s string) (string, error) {
	switch r := strings.ToLower(s); {
	case r == "source" || r == "master" || r == "s" || strings.HasPrefix(r, "pri"):
		return RoleSource, nil
	case r == "target" || r == "replica" || r == "slave" || r == "t" || strings.HasPrefix(r, "rep"):
		return RoleTarget, nil
	case r == "fullcopy" || strings.HasPrefix(r, "f"):
		return RoleFullcopy, nil
	}
	return "", Invalidf("role %q is not valid: use source, target or fullcopy", s)
}

// Member is one db of a dbgroup with its role.
type Member struct {
	DB   string `json:"db"`
	Role string `json:"role"`
}

// DBGroup is a named, ordered set of dbs with roles.
type DBGroup struct {
	Name    string    `json:"name"`
	Members []Member  `json:"members"`
	Created time.Time `json:"created"`
}

// Sources returns the names of the source dbs, in order.
func (g *DBGroup) Sources() []string {
	var out []string
	for _, m := range g.Members {
		if m.Role == RoleSource {
			out = append(out, m.DB)
		}
	}
	return out
}

// DescribeMembers shows members as DB:ROLE items, in order.
func DescribeMembers(ms []Member) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.DB + ":" + m.Role
	}
	return strings.Join(parts, " ")
}

// SameMembers reports whether g has exactly these members, in this order.
func (g *DBGroup) SameMembers(ms []Member) bool {
	if len(g.Members) != len(ms) {
		return false
	}
	for i := range ms {
		if g.Members[i] != ms[i] {
			return false
		}
	}
	return true
}

// AddDBGroup stores a new dbgroup with its members. Every db must exist.
func AddDBGroup(ctx context.Context, q Querier, name string, members []Member) error {
	if err := ValidName(KindDBGroup, name); err != nil {
		return err
	}
	if _, err := q.Exec(ctx, "INSERT INTO gobucardo.dbgroup (name) VALUES ($1)", name); err != nil {
		return fmt.Errorf("add dbgroup %s: %w", name, constraintError(err, KindDBGroup, name))
	}
	return SetMembers(ctx, q, name, members)
}

// SetMembers replaces the members of dbgroup name.
func SetMembers(ctx context.Context, q Querier, name string, members []Member) error {
	seen := map[string]bool{}
	for _, m := range members {
		if seen[m.DB] {
			return Invalidf("db %q is listed twice for dbgroup %q: list each db once", m.DB, name)
		}
		seen[m.DB] = true
		if _, err := GetDB(ctx, q, m.DB); err != nil {
			return err
		}
	}
	if _, err := q.Exec(ctx, "DELETE FROM gobucardo.dbgroup_member WHERE dbgroup = $1", name); err != nil {
		return fmt.Errorf("set members of dbgroup %s: %w", name, err)
	}
	for i, m := range members {
		if _, err := q.Exec(ctx, `INSERT INTO gobucardo.dbgroup_member (dbgroup, db, role, position)
			VALUES ($1, $2, $3, $4)`, name, m.DB, m.Role, i); err != nil {
			return fmt.Errorf("add db %s to dbgroup %s: %w", m.DB, name, err)
		}
	}
	return nil
}

// GetDBGroup returns the dbgroup of that name with its members.
func GetDBGroup(ctx context.Context, q Querier, name string) (DBGroup, error) {
	gs, err := listDBGroups(ctx, q, name)
	if err != nil {
		return DBGroup{}, err
	}
	if len(gs) == 0 {
		return DBGroup{}, &NotFoundError{Kind: KindDBGroup, Name: name}
	}
	return gs[0], nil
}

// ListDBGroups returns every dbgroup, by name.
func ListDBGroups(ctx context.Context, q Querier) ([]DBGroup, error) {
	return listDBGroups(ctx, q, "")
}

func listDBGroups(ctx context.Context, q Querier, only string) ([]DBGroup, error) {
	rows, err := q.Query(ctx, `SELECT g.name, g.created,
		coalesce(array_agg(m.db ORDER BY m.position) FILTER (WHERE m.db IS NOT NULL), '{}'),
		coalesce(array_agg(m.role ORDER BY m.position) FILTER (WHERE m.db IS NOT NULL), '{}')
		FROM gobucardo.dbgroup g LEFT JOIN gobucardo.dbgroup_member m ON m.dbgroup = g.name
		WHERE $1 = '' OR g.name = $1
		GROUP BY g.name, g.created ORDER BY g.name`, only)
	if err != nil {
		return nil, fmt.Errorf("list dbgroups: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (DBGroup, error) {
		var g DBGroup
		var dbs, roles []string
		if err := r.Scan(&g.Name, &g.Created, &dbs, &roles); err != nil {
			return g, err
		}
		g.Members = make([]Member, len(dbs))
		for i := range dbs {
			g.Members[i] = Member{DB: dbs[i], Role: roles[i]}
		}
		return g, nil
	})
}

// FindDBGroup returns the name of a dbgroup with exactly these members, or "".
func FindDBGroup(ctx context.Context, q Querier, members []Member) (string, error) {
	gs, err := ListDBGroups(ctx, q)
	if err != nil {
		return "", err
	}
	for _, g := range gs {
		if g.SameMembers(members) {
			return g.Name, nil
		}
	}
	return "", nil
}

// RenameDBGroup renames a dbgroup; syncs follow.
func RenameDBGroup(ctx context.Context, q Querier, name, newName string) error {
	if err := ValidName(KindDBGroup, newName); err != nil {
		return err
	}
	tag, err := q.Exec(ctx, "UPDATE gobucardo.dbgroup SET name = $2 WHERE name = $1", name, newName)
	if err != nil {
		return fmt.Errorf("rename dbgroup %s: %w", name, constraintError(err, KindDBGroup, newName))
	}
	if tag.RowsAffected() == 0 {
		return &NotFoundError{Kind: KindDBGroup, Name: name}
	}
	return nil
}

// SyncsUsing returns the syncs whose column col (dbgroup or relgroup) is name.
func SyncsUsing(ctx context.Context, q Querier, col, name string) ([]string, error) {
	sql := "SELECT coalesce(array_agg(name ORDER BY name), '{}') FROM gobucardo.sync WHERE dbgroup = $1"
	if col == KindRelGroup {
		sql = "SELECT coalesce(array_agg(name ORDER BY name), '{}') FROM gobucardo.sync WHERE relgroup = $1"
	}
	var out []string
	if err := q.QueryRow(ctx, sql, name).Scan(&out); err != nil {
		return nil, fmt.Errorf("find syncs using %s %s: %w", col, name, err)
	}
	return out, nil
}

// RemoveDBGroup removes a dbgroup; with force also the syncs that use it.
func RemoveDBGroup(ctx context.Context, q Querier, name string, force bool) ([]string, error) {
	if _, err := GetDBGroup(ctx, q, name); err != nil {
		return nil, err
	}
	return removeUsed(ctx, q, KindDBGroup, name, force, "DELETE FROM gobucardo.dbgroup WHERE name = $1")
}

// removeUsed removes the object of kind (dbgroup or relgroup) after the
// syncs using it, which it refuses to do without force.
func removeUsed(ctx context.Context, q Querier, kind, name string, force bool, del string) ([]string, error) {
	syncs, err := SyncsUsing(ctx, q, kind, name)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, s := range syncs {
		removed = append(removed, fmt.Sprintf("sync %q", s))
	}
	if len(syncs) > 0 && !force {
		return nil, &InUseError{Kind: kind, Name: name, Users: removed}
	}
	for _, s := range syncs {
		if err := RemoveSync(ctx, q, s); err != nil {
			return nil, err
		}
	}
	if _, err := q.Exec(ctx, del, name); err != nil {
		return nil, fmt.Errorf("remove %s %s: %w", kind, name, err)
	}
	return removed, nil
}
