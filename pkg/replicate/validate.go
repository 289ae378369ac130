package replicate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/gobucardo/gobucardo/pkg/backoff"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// Report is what Validate found: problems that are not differences of
// shape (a db that cannot be reached, rows a run would not see, missing
// privileges), as sentences, and every difference of shape between the
// dbs, each with its repair.
type Report struct {
	Problems    []string     `json:"problems"`
	Differences []Difference `json:"differences"`
}

// Failing counts what would make runs fail: every problem, and the
// differences that break runs.
func (r Report) Failing() int {
	n := len(r.Problems)
	for _, d := range r.Differences {
		if d.Breaks {
			n++
		}
	}
	return n
}

// Validate checks every db of s as a run would use it and reports every
// problem found, as sentences naming the db, the object and the fix (dbs
// that cannot be reached, rows a run would not see, missing privileges),
// and every difference of the tables' shapes between the dbs (Compare).
// It changes nothing.
func Validate(ctx context.Context, s Sync) (Report, error) {
	var rep Report
	nodes := map[string]*pgx.Conn{}
	defer func() {
		for _, c := range nodes {
			_ = c.Close(context.WithoutCancel(ctx))
		}
	}()
	for _, d := range s.DBs {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		conn, err := connect(cctx, d)
		cancel()
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("db %s cannot be reached (%v): start it or fix its settings with mcp update db %s", d.Name, err, d.Name))
			continue
		}
		nodes[d.Name] = conn
		rep.Problems = append(rep.Problems, checkPrivileges(ctx, conn, d, s)...)
	}
	for _, rel := range s.Relations {
		var shapes []DBShape
		for _, d := range s.DBs {
			conn := nodes[d.Name]
			if conn == nil {
				continue
			}
			sh, err := ReadShape(ctx, conn, rel)
			if err != nil {
				return rep, fmt.Errorf("db %s: %w", d.Name, err)
			}
			shapes = append(shapes, DBShape{DB: d.Name, Role: d.Role, Shape: sh})
		}
		rep.Differences = append(rep.Differences, Compare(rel, shapes)...)
		if !rel.Sequence {
			ps, err := unseenRows(ctx, nodes, s, rel)
			if err != nil {
				return rep, err
			}
			rep.Problems = append(rep.Problems, ps...)
		}
	}
	return rep, nil
}

// unseenRows finds, on every db, rows of rel that a run would not see or
// would put where nobody reads them: rel is a partition there (its root
// is what is replicated), or a legacy inheritance parent whose children
// are not in the sync (a run copies the parent's own rows only).
func unseenRows(ctx context.Context, nodes map[string]*pgx.Conn, s Sync, rel Relation) ([]string, error) {
	in := map[string]bool{}
	for _, r := range s.Relations {
		in[r.Display()] = true
	}
	var problems []string
	for _, d := range s.DBs {
		conn := nodes[d.Name]
		if conn == nil || d.Role != RoleSource {
			continue
		}
		var rootSchema, rootName *string
		var childSchemas, childNames []string
		err := conn.QueryRow(ctx, `SELECT rn.nspname::text, r.relname::text,
			coalesce((SELECT array_agg(n.nspname::text ORDER BY n.nspname, k.relname) FROM pg_inherits i JOIN pg_class k ON k.oid = i.inhrelid
				JOIN pg_namespace n ON n.oid = k.relnamespace WHERE i.inhparent = c.oid AND NOT k.relispartition), '{}'),
			coalesce((SELECT array_agg(k.relname::text ORDER BY n.nspname, k.relname) FROM pg_inherits i JOIN pg_class k ON k.oid = i.inhrelid
				JOIN pg_namespace n ON n.oid = k.relnamespace WHERE i.inhparent = c.oid AND NOT k.relispartition), '{}')
			FROM pg_class c
			LEFT JOIN pg_class r ON c.relispartition AND r.oid = pg_partition_root(c.oid)
			LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
			WHERE c.oid = to_regclass($1)`, pg.Ident(rel.Schema, rel.Name)).Scan(&rootSchema, &rootName, &childSchemas, &childNames)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // missing: said elsewhere
		}
		if err != nil {
			return nil, fmt.Errorf("look at %s on %s: %w", rel.Display(), d.Name, err)
		}
		if rootName != nil {
			root := pg.Display(*rootSchema, *rootName)
			problems = append(problems, fmt.Sprintf("db %s: table %s is a partition of %s, whose rows a run of it would miss "+
				"(writes through %s are not captured as its own): replicate %s instead (mcp remove table %s, then mcp add table %s)",
				d.Name, rel.Display(), root, root, root, rel.Display(), root))
		}
		var missing []string
		for i := range childNames {
			if c := pg.Display(childSchemas[i], childNames[i]); !in[c] {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			problems = append(problems, fmt.Sprintf("db %s: table %s has inheritance children (%s) that sync %s does not replicate: "+
				"their rows show in %s but are not copied with it (each child is a table of its own): add them with mcp update sync %s add table %s",
				d.Name, rel.Display(), strings.Join(missing, ", "), s.Name, rel.Display(), s.Name, missing[0]))
		}
	}
	return problems, nil
}

// compatible reports whether values of source type src load into dst by
// text COPY without loss.
func compatible(src, dst string) bool {
	if src == dst {
		return true
	}
	sb, sn := splitTypmod(src)
	db, dn := splitTypmod(dst)
	switch sb {
	case "smallint":
		return db == "integer" || db == "bigint" || db == "numeric" && dn == -1
	case "integer":
		return db == "bigint" || db == "numeric" && dn == -1
	case "bigint", "numeric":
		return db == "numeric" && dn == -1
	case "real":
		return db == "double precision"
	case "character varying", "character":
		return db == "text" || db == "character varying" && (dn == -1 || sn >= 0 && dn >= sn)
	case "json":
		return db == "jsonb"
	}
	return false
}

// splitTypmod splits "character varying(10)" into its base and 10 (-1 when
// there is no modifier, or more than one number).
func splitTypmod(t string) (string, int) {
	i := strings.Index(t, "(")
	if i < 0 || !strings.HasSuffix(t, ")") {
		return t, -1
	}
	n, err := strconv.Atoi(t[i+1 : len(t)-1])
	if err != nil {
		return t[:i], -2
	}
	return t[:i], n
}

// checkPrivileges: sources must read, targets write and set
// session_replication_role.
func checkPrivileges(ctx context.Context, conn *pgx.Conn, d DB, s Sync) []string {
	var problems []string
	var user string
	var canReplica bool
	err := conn.QueryRow(ctx, `SELECT current_user::text, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
		OR (current_setting('server_version_num')::int >= 150000
		    AND has_parameter_privilege(current_user, 'session_replication_role', 'SET'))`).Scan(&user, &canReplica)
	if err != nil {
		return []string{fmt.Sprintf("db %s: cannot read privileges: %v", d.Name, err)}
	}
	if d.Role != RoleSource && !canReplica {
		problems = append(problems, fmt.Sprintf("db %s: user %s cannot set session_replication_role: make it a superuser, or GRANT SET ON PARAMETER session_replication_role TO %s",
			d.Name, user, pg.Ident(user)))
	}
	for _, rel := range s.Relations {
		var want []string
		switch {
		case d.Role == RoleSource:
			want = []string{"SELECT"}
		case rel.Sequence:
			want = []string{"UPDATE"}
		default:
			want = []string{"SELECT", "INSERT", "DELETE"}
			if strings.HasPrefix(s.DeleteMethod, "truncate") {
				want = append(want, "TRUNCATE")
			}
		}
		fn := "has_table_privilege"
		if rel.Sequence {
			fn = "has_sequence_privilege"
		}
		for _, p := range want {
			var ok *bool
			err := conn.QueryRow(ctx, "SELECT CASE WHEN to_regclass($1) IS NOT NULL THEN "+fn+"(to_regclass($1)::oid, $2) END",
				pg.Ident(rel.Schema, rel.Name), p).Scan(&ok)
			if err != nil {
				problems = append(problems, fmt.Sprintf("db %s: cannot check %s on %s: %v", d.Name, p, rel.Display(), err))
				break
			}
			if ok != nil && !*ok {
				problems = append(problems, fmt.Sprintf("db %s: user %s lacks %s on %s: GRANT %s ON %s TO %s", d.Name, user, p, rel.Display(),
					p, pg.Ident(rel.Schema, rel.Name), pg.Ident(user)))
			}
		}
	}
	return problems
}

// retryBackoff spaces the tries of RunRetrying: 100ms, doubling, at most 5s.
var retryBackoff = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2}

// RunRetrying runs s, and runs it again after a serialization failure, a
// deadlock or an exception handler's retry, up to attempts times in all,
// waiting retryBackoff between tries.
func RunRetrying(ctx context.Context, s Sync, opts Options, attempts int) (Result, error) {
	for i := 1; ; i++ {
		opts.Attempt = i
		res, err := Run(ctx, s, opts)
		var retry *errExceptionRetry
		asked := errors.As(err, &retry)
		if err == nil || !(asked || pg.IsRetryable(err)) || i >= attempts {
			return res, err
		}
		wait := retryBackoff.Delay(i)
		if opts.Log != nil {
			why := "a serialization failure or deadlock"
			if asked {
				why = retry.msg
			}
			opts.Log.Info("retrying the run", zap.String("after", why), zap.Int("attempt", i+1))
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(wait):
		}
	}
}
