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

// Validate checks every db of s as a run would use it and returns every
// problem found, as sentences naming the db, the object and the fix: dbs
// that cannot be reached, missing tables, sequences and columns, column
// types that differ, a source key that is no longer unique, and missing
// privileges. It changes nothing.
func Validate(ctx context.Context, s Sync) ([]string, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	nodes := map[string]*pgx.Conn{}
	defer func() {
		for _, c := range nodes {
			_ = c.Close(context.WithoutCancel(ctx))
		}
	}()
	var src *DB
	for i, d := range s.DBs {
		if d.Role == RoleSource && src == nil {
			src = &s.DBs[i]
		}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		conn, err := connect(cctx, d)
		cancel()
		if err != nil {
			add("db %s cannot be reached (%v): start it or fix its settings with mcp update db %s", d.Name, err, d.Name)
			continue
		}
		nodes[d.Name] = conn
		problems = append(problems, checkPrivileges(ctx, conn, d, s)...)
	}
	if src == nil || nodes[src.Name] == nil {
		return problems, nil
	}
	srcConn := nodes[src.Name]
	for _, rel := range s.Relations {
		srcCols, err := tableColumns(ctx, srcConn, rel)
		if err != nil {
			return nil, err
		}
		if srcCols == nil {
			add("db %s: %s %s is missing: create it there, or remove it from the sync's relgroup", src.Name, kindOf(rel), rel.Display())
			continue
		}
		if !rel.Sequence {
			ps, err := unseenRows(ctx, nodes, s, rel)
			if err != nil {
				return nil, err
			}
			problems = append(problems, ps...)
		}
		if !rel.Sequence && len(rel.KeyColumns) > 0 {
			ok, err := keyStillUnique(ctx, srcConn, rel)
			if err != nil {
				return nil, err
			}
			if !ok {
				add("db %s: the key (%s) of %s is no longer a primary key or unique index on NOT NULL columns: restore it, or run mcp remove table and mcp add table again",
					src.Name, strings.Join(rel.KeyColumns, ", "), rel.Display())
			}
		}
		for _, d := range s.DBs {
			conn := nodes[d.Name]
			if conn == nil || d.Name == src.Name {
				continue
			}
			cols, err := tableColumns(ctx, conn, rel)
			if err != nil {
				return nil, err
			}
			if cols == nil {
				add("db %s: %s %s is missing: create it there (for example with pg_dump -s -t from %s)", d.Name, kindOf(rel), rel.Display(), src.Name)
				continue
			}
			if rel.Sequence {
				continue
			}
			for _, c := range srcCols.list {
				tc, ok := cols.byName[c.name]
				switch {
				case cols.generated[c.name]:
					add("db %s: column %s of %s is generated there but not on %s: make it a plain column", d.Name, pg.Display(c.name), rel.Display(), src.Name)
				case !ok:
					add("db %s: column %s of %s is missing: ALTER TABLE %s ADD COLUMN %s %s", d.Name, pg.Display(c.name), rel.Display(),
						pg.Ident(rel.Schema, rel.Name), pg.Ident(c.name), c.typ)
				case !compatible(c.typ, tc.typ):
					add("db %s: column %s of %s is %s there but %s on %s: make the types the same", d.Name, pg.Display(c.name), rel.Display(), tc.typ, c.typ, src.Name)
				}
			}
			for _, tc := range cols.list {
				if _, ok := srcCols.byName[tc.name]; !ok && tc.notNullNoDefault {
					add("db %s: column %s of %s is NOT NULL without a default and missing on %s: give it a default or drop it", d.Name, pg.Display(tc.name), rel.Display(), src.Name)
				}
			}
		}
	}
	return problems, nil
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

func kindOf(rel Relation) string {
	if rel.Sequence {
		return "sequence"
	}
	return "table"
}

type vcol struct {
	name, typ        string
	notNullNoDefault bool
}

type vcols struct {
	list      []vcol
	byName    map[string]vcol
	generated map[string]bool
}

// tableColumns returns the relation's columns, or nil when it is missing
// (or is of another kind).
func tableColumns(ctx context.Context, conn *pgx.Conn, rel Relation) (*vcols, error) {
	kinds := []string{"r", "p"}
	if rel.Sequence {
		kinds = []string{"S"}
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass($1) AND relkind::text = ANY($2))",
		pg.Ident(rel.Schema, rel.Name), kinds).Scan(&exists); err != nil {
		return nil, fmt.Errorf("look up %s: %w", rel.Display(), err)
	}
	if !exists {
		return nil, nil
	}
	out := &vcols{byName: map[string]vcol{}, generated: map[string]bool{}}
	rows, err := conn.Query(ctx, `SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '',
			a.attnotnull AND NOT a.atthasdef AND a.attidentity = ''
		FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
		pg.Ident(rel.Schema, rel.Name))
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", rel.Display(), err)
	}
	defer rows.Close()
	for rows.Next() {
		var c vcol
		var gen bool
		if err := rows.Scan(&c.name, &c.typ, &gen, &c.notNullNoDefault); err != nil {
			return nil, err
		}
		if gen {
			out.generated[c.name] = true
			continue
		}
		out.list = append(out.list, c)
		out.byName[c.name] = c
	}
	return out, rows.Err()
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

// keyStillUnique checks that the source still has a unique index on
// exactly the key columns, all NOT NULL.
func keyStillUnique(ctx context.Context, conn *pgx.Conn, rel Relation) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (
		SELECT 1 FROM pg_index i
		WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
		  AND i.indnkeyatts = cardinality($2::text[])
		  AND (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
		       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum WHERE k.ord <= i.indnkeyatts AND a.attnotnull) = $2::text[])`,
		pg.Ident(rel.Schema, rel.Name), rel.KeyColumns).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("check key of %s: %w", rel.Display(), err)
	}
	return ok, nil
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
