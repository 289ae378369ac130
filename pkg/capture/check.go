package capture

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/gobucardo/gobucardo/pkg/pg"
)

// Check returns, as sentences, what is missing or stale in the capture of
// sync on the database behind conn. Install repairs all of it.
func Check(ctx context.Context, conn *pgx.Conn, sync Sync) ([]string, error) {
	var base bool
	err := conn.QueryRow(ctx, `SELECT to_regclass('gobucardo.captured') IS NOT NULL
		AND to_regclass('gobucardo.subscription') IS NOT NULL AND to_regclass('gobucardo.watermark') IS NOT NULL
		AND to_regclass('gobucardo.truncate_log') IS NOT NULL AND to_regclass('gobucardo.activity') IS NOT NULL
		AND to_regprocedure('gobucardo.kick(text[])') IS NOT NULL`).Scan(&base)
	if err != nil {
		return nil, fmt.Errorf("check capture: %w", err)
	}
	if !base {
		return []string{"gobucardo's capture is not installed"}, nil
	}
	var problems []string
	var hasWatermark bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM gobucardo.watermark WHERE sync = $1)", sync.Name).Scan(&hasWatermark); err != nil {
		return nil, err
	}
	if !hasWatermark {
		problems = append(problems, fmt.Sprintf("sync %s has no watermark", sync.Name))
	}
	for _, t := range sync.Tables {
		ps, err := checkTable(ctx, conn, sync, t)
		if err != nil {
			return nil, err
		}
		problems = append(problems, ps...)
	}
	return problems, nil
}

func checkTable(ctx context.Context, conn *pgx.Conn, sync Sync, t Table) ([]string, error) {
	var keyCols []string
	var subscribed bool
	var kick []string
	err := conn.QueryRow(ctx, `SELECT c.key_columns,
			EXISTS (SELECT 1 FROM gobucardo.subscription s WHERE s.sync = $3 AND (s.schema_name, s.rel_name) = (c.schema_name, c.rel_name)),
			coalesce((SELECT array_agg(s.sync ORDER BY s.sync) FROM gobucardo.subscription s
			           WHERE s.autokick AND (s.schema_name, s.rel_name) = (c.schema_name, c.rel_name)), '{}')
		FROM gobucardo.captured c WHERE c.schema_name = $1 AND c.rel_name = $2`, t.Schema, t.Name, sync.Name).
		Scan(&keyCols, &subscribed, &kick)
	if err == pgx.ErrNoRows {
		return []string{fmt.Sprintf("table %s is not captured", t.Display())}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("check capture of %s: %w", t.Display(), err)
	}
	var problems []string
	if strings.Join(keyCols, ",") != strings.Join(t.KeyColumns, ",") {
		problems = append(problems, fmt.Sprintf("the delta table of %s is keyed by (%s), not by the table's key (%s)",
			t.Display(), strings.Join(keyCols, ", "), strings.Join(t.KeyColumns, ", ")))
	}
	if !subscribed {
		problems = append(problems, fmt.Sprintf("sync %s is not subscribed to %s", sync.Name, t.Display()))
	}
	var deltaExists bool
	var body *string
	err = conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL,
		(SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure($2))`,
		pg.Ident("gobucardo", DeltaName(t.Schema, t.Name)), pg.Ident("gobucardo", functionName(t))+"()").Scan(&deltaExists, &body)
	if err != nil {
		return nil, err
	}
	if !deltaExists {
		problems = append(problems, fmt.Sprintf("the delta table of %s is missing", t.Display()))
	}
	kick = withSync(kick, sync.Name, sync.Autokick)
	switch {
	case body == nil:
		problems = append(problems, fmt.Sprintf("the trigger function of %s is missing", t.Display()))
	case *body != functionBody(t, kick):
		problems = append(problems, fmt.Sprintf("the trigger function of %s is stale", t.Display()))
	}
	rows, err := conn.Query(ctx, `SELECT tgname::text, tgenabled::text FROM pg_trigger
		WHERE tgrelid = to_regclass($1) AND tgname::text = ANY($2)`,
		pg.Ident(t.Schema, t.Name), triggers)
	if err != nil {
		return nil, err
	}
	state := map[string]string{}
	for rows.Next() {
		var name, enabled string
		if err := rows.Scan(&name, &enabled); err != nil {
			return nil, err
		}
		state[name] = enabled
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, tg := range triggers {
		switch state[tg] {
		case "O":
		case "":
			problems = append(problems, fmt.Sprintf("trigger %s on %s is missing", tg, t.Display()))
		default:
			problems = append(problems, fmt.Sprintf("trigger %s on %s is not enabled as gobucardo needs (tgenabled %s)", tg, t.Display(), state[tg]))
		}
	}
	return problems, nil
}

// withSync returns the sorted list of autokick syncs with name in it or
// not, as autokick says.
func withSync(syncs []string, name string, autokick bool) []string {
	var out []string
	for _, s := range syncs {
		if s != name {
			out = append(out, s)
		}
	}
	if autokick {
		out = append(out, name)
		sort.Strings(out)
	}
	return out
}
