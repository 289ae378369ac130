package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/replicate"
)

func parkedCommand() *cli.Command {
	return &cli.Command{
		Name:      "parked",
		Usage:     "show rows an exception handler set aside; mcp parked retry re-applies them",
		ArgsUsage: "[SYNC]",
		Description: "Oldest first: when, the sync, the table, the db the row came from and the db it could not go\n" +
			"to, its key, and the error. --json adds the row as the source had it and the customcode that\n" +
			"parked it. mcp parked retry re-applies them.",
		Action: func(c *cli.Context) error { return parkedList(newEnv(c)) },
		Subcommands: []*cli.Command{{
			Name:      "retry",
			Usage:     "re-apply parked rows; exit 1 if one still fails",
			ArgsUsage: "[SYNC] [--id N ...]",
			Description: "For each parked row, reads the row of its key as the source has it now and, on the db it\n" +
				"could not go to, deletes the key and inserts that row (only deletes the key when the source no\n" +
				"longer has it). One transaction per db and table, each row under its own savepoint: a row that\n" +
				"applies is forgotten, one that fails again keeps its record with the new error. The sync's\n" +
				"lock is held on the source meanwhile, so a run of the sync waits or is retried.",
			Flags: []cli.Flag{
				&cli.Int64SliceFlag{Name: "id", Usage: "only the parked row `N` (repeat or separate with commas)"},
			},
			Action: func(c *cli.Context) error { return parkedRetry(newEnv(c)) },
		}},
	}
}

// loadParked returns the parked rows of sync ("" for all), after checking
// that the sync exists.
func loadParked(ctx context.Context, q catalog.Querier, sync string) ([]catalog.ParkedRow, error) {
	if sync != "" {
		if _, err := catalog.GetSync(ctx, q, sync); err != nil {
			return nil, err
		}
	}
	return catalog.ListParked(ctx, q, sync)
}

func parkedList(e *env) error {
	if e.c.NArg() > 1 {
		return usagef("usage: mcp parked [SYNC]")
	}
	ctx := e.ctx()
	conn, err := e.connectCatalog()
	if err != nil {
		return err
	}
	defer closeConn(ctx, conn)
	sync := e.c.Args().First()
	ps, err := loadParked(ctx, conn, sync)
	if err != nil {
		return err
	}
	if e.json() {
		if ps == nil {
			ps = []catalog.ParkedRow{}
		}
		return e.printJSON(map[string]any{"parked": ps})
	}
	if len(ps) == 0 {
		e.printf("(no parked rows)\n")
		return nil
	}
	of, retry := "", "mcp parked retry"
	if sync != "" {
		of, retry = " of sync "+sync, retry+" "+sync
	}
	e.printf("%s%s (%s re-applies them):\n", plural(len(ps), "parked row"), of, retry)
	var rows [][]string
	for _, p := range ps {
		rows = append(rows, []string{fmt.Sprint(p.ID), p.Created.Local().Format("2006-01-02 15:04:05"), p.Sync,
			pg.Display(p.Schema, p.Name), p.SourceDB + " → " + p.TargetDB, shorten(string(p.Key), 40), orDash(p.SQLState),
			shorten(strings.TrimSuffix(p.Error, " [SQLSTATE "+p.SQLState+"]"), 80)})
	}
	e.table([]string{"ID", "CREATED", "SYNC", "TABLE", "SOURCE → TARGET", "KEY", "SQLSTATE", "ERROR"}, rows)
	return nil
}

// shorten puts s on one line of at most n characters.
func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// Outcomes of a retried parked row.
const (
	retryApplied  = "applied"   // the source's row is on the target now
	retryDeleted  = "deleted"   // the source no longer has the row: the key is deleted on the target
	retryFailed   = "failed"    // it fails again; its record has the new error
	retryNotTried = "not tried" // its db or table could not be worked on; its record is unchanged
)

// retryResult is what mcp parked retry did with one parked row.
type retryResult struct {
	ID       int64           `json:"id"`
	Sync     string          `json:"sync"`
	Schema   string          `json:"schema"`
	Name     string          `json:"table"`
	SourceDB string          `json:"source_db"`
	TargetDB string          `json:"target_db"`
	Key      json.RawMessage `json:"key"`
	Result   string          `json:"result"`
	SQLState string          `json:"sqlstate,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// parkedGroup is the parked rows re-applied in one transaction: of one
// sync and table, from one source to one target, with the same key columns.
type parkedGroup struct {
	sync, source, target string
	rel                  replicate.Relation
	rows                 []catalog.ParkedRow
	err                  error // the rows cannot be tried: their key is not one
}

// groupParked groups rows in the order they come.
func groupParked(rows []catalog.ParkedRow) []*parkedGroup {
	var out []*parkedGroup
	index := map[string]*parkedGroup{}
	for _, p := range rows {
		cols, err := keyColumns(p.Key)
		k := strings.Join(append([]string{p.Sync, p.Schema, p.Name, p.SourceDB, p.TargetDB}, cols...), "\x00")
		if err != nil {
			k = fmt.Sprintf("bad key of %d", p.ID)
		}
		g := index[k]
		if g == nil {
			g = &parkedGroup{sync: p.Sync, source: p.SourceDB, target: p.TargetDB,
				rel: replicate.Relation{Schema: p.Schema, Name: p.Name, KeyColumns: cols}, err: err}
			index[k] = g
			out = append(out, g)
		}
		g.rows = append(g.rows, p)
	}
	return out
}

// keyColumns are the names in a parked key, which the run wrote from the
// table's key columns.
func keyColumns(key json.RawMessage) ([]string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(key, &m); err != nil || len(m) == 0 {
		return nil, fmt.Errorf("key %s is not a JSON object of key columns", key)
	}
	cols := make([]string, 0, len(m))
	for c := range m {
		cols = append(cols, c)
	}
	sort.Strings(cols)
	return cols, nil
}

func parkedRetry(e *env) error {
	if e.c.NArg() > 1 {
		return usagef("usage: mcp parked retry [SYNC] [--id N ...]")
	}
	ctx := e.ctx()
	conn, err := e.connectCatalog()
	if err != nil {
		return err
	}
	defer closeConn(ctx, conn)
	sync := e.c.Args().First()
	ps, err := loadParked(ctx, conn, sync)
	if err != nil {
		return err
	}
	if ids := e.c.Int64Slice("id"); len(ids) > 0 {
		if ps, err = pickParked(ps, ids, sync); err != nil {
			return err
		}
	}
	groups := groupParked(ps)
	var results []retryResult
	dbs := map[string]*catalog.DB{}
	for _, g := range groups {
		rs, err := retryGroup(ctx, conn, dbs, g)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if !e.json() {
				e.printRetry(r)
			}
		}
		results = append(results, rs...)
	}
	failing := 0
	for _, r := range results {
		if r.Result == retryFailed || r.Result == retryNotTried {
			failing++
		}
	}
	switch {
	case e.json():
		if results == nil {
			results = []retryResult{}
		}
		if err := e.printJSON(map[string]any{"results": results, "reapplied": len(results) - failing, "failing": failing}); err != nil {
			return err
		}
	case len(results) == 0:
		e.printf("(no parked rows)\n")
	default:
		e.printf("%s re-applied, %d still failing\n", plural(len(results)-failing, "row"), failing)
	}
	if failing > 0 {
		return catalog.Invalidf("%s still failing: mcp parked shows why", plural(failing, "parked row"))
	}
	return nil
}

// pickParked keeps the rows of ids, each of which must be there.
func pickParked(ps []catalog.ParkedRow, ids []int64, sync string) ([]catalog.ParkedRow, error) {
	want := map[int64]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var out []catalog.ParkedRow
	for _, p := range ps {
		if want[p.ID] {
			out = append(out, p)
			delete(want, p.ID)
		}
	}
	for _, id := range ids {
		if want[id] {
			of := ""
			if sync != "" {
				of = " of sync " + sync
			}
			return nil, catalog.Invalidf("there is no parked row %d%s: mcp parked lists them", id, of)
		}
	}
	return out, nil
}

// retryGroup re-applies a group and records what became of each row. The
// error is the catalog's; a db or table that cannot be worked on makes its
// rows "not tried".
func retryGroup(ctx context.Context, conn *pgx.Conn, dbs map[string]*catalog.DB, g *parkedGroup) ([]retryResult, error) {
	out := make([]retryResult, len(g.rows))
	keys := make([]json.RawMessage, len(g.rows))
	for i, p := range g.rows {
		out[i] = retryResult{ID: p.ID, Sync: p.Sync, Schema: p.Schema, Name: p.Name, SourceDB: p.SourceDB, TargetDB: p.TargetDB, Key: p.Key}
		keys[i] = p.Key
	}
	notTried := func(err error) []retryResult {
		for i := range out {
			out[i].Result, out[i].Error = retryNotTried, message(err)
		}
		return out
	}
	if g.err != nil {
		return notTried(g.err), nil
	}
	var src, dst *catalog.DB
	for _, n := range []struct {
		d    **catalog.DB
		name string
	}{{&src, g.source}, {&dst, g.target}} {
		d, err := catalogDB(ctx, conn, dbs, n.name)
		if err != nil {
			return nil, err
		}
		if d == nil {
			return notTried(fmt.Errorf("db %s is no longer in the catalog: add it again to retry these rows", n.name)), nil
		}
		*n.d = d
	}
	res, err := replicate.Reapply(ctx, g.sync, replicate.DB{Name: src.Name, ConnString: src.ConnString()},
		replicate.DB{Name: dst.Name, ConnString: dst.ConnString()}, g.rel, keys)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		secrets := []string{src.Password, pg.Password(src.ConnString()), dst.Password, pg.Password(dst.ConnString())}
		return notTried(pg.RedactError(err, secrets...)), nil
	}
	var applied []int64
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for i, r := range res {
			if r.Err == nil {
				out[i].Result = retryApplied
				if r.Gone {
					out[i].Result = retryDeleted
				}
				applied = append(applied, out[i].ID)
				continue
			}
			out[i].Result, out[i].SQLState, out[i].Error = retryFailed, r.SQLState, r.Err.Error()
			if err := catalog.SetParkedError(ctx, tx, out[i].ID, r.SQLState, r.Err.Error()); err != nil {
				return err
			}
		}
		return catalog.Unpark(ctx, tx, applied)
	})
	if err != nil {
		return nil, fmt.Errorf("%s re-applied on db %s, but the catalog could not record it (mcp parked retry again is safe): %w",
			pg.Display(g.rel.Schema, g.rel.Name), g.target, err)
	}
	return out, nil
}

// catalogDB reads a db from the catalog once. A db the catalog no longer
// has is nil, with an error to report for its rows.
func catalogDB(ctx context.Context, q catalog.Querier, dbs map[string]*catalog.DB, name string) (*catalog.DB, error) {
	if d, ok := dbs[name]; ok {
		return d, nil
	}
	d, err := catalog.GetDB(ctx, q, name)
	var nf *catalog.NotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	dbs[name] = &d
	return &d, nil
}

func (e *env) printRetry(r retryResult) {
	what := fmt.Sprintf("parked row %d: %s %s", r.ID, pg.Display(r.Schema, r.Name), shorten(string(r.Key), 60))
	switch r.Result {
	case retryApplied:
		e.printf("Re-applied %s from %s to %s\n", what, r.SourceDB, r.TargetDB)
	case retryDeleted:
		e.printf("Re-applied %s: deleted on %s, as %s no longer has it\n", what, r.TargetDB, r.SourceDB)
	case retryFailed:
		e.printf("Still failing: %s from %s to %s: %s\n", what, r.SourceDB, r.TargetDB, r.Error)
	default:
		e.printf("Not tried: %s from %s to %s: %s\n", what, r.SourceDB, r.TargetDB, r.Error)
	}
}
