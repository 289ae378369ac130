package capture

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	var current bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('gobucardo.partition_note') IS NOT NULL AND to_regclass('gobucardo.target_watermark') IS NOT NULL").Scan(&current); err != nil {
		return nil, fmt.Errorf("check capture: %w", err)
	}
	if !current {
		return []string{"gobucardo's capture is of an older version"}, nil
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
	if errors.Is(err, pgx.ErrNoRows) {
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
	sh, err := shapeOf(ctx, conn, t)
	if err != nil {
		return nil, err
	}
	if err := sh.refusal(t); err != nil {
		return append(problems, err.Error()), nil
	}
	kick = withSync(kick, sync.Name, sync.Autokick)
	switch {
	case body == nil:
		problems = append(problems, fmt.Sprintf("the trigger function of %s is missing", t.Display()))
	case *body != functionBody(t, kick, sh):
		problems = append(problems, fmt.Sprintf("the trigger function of %s is stale", t.Display()))
	}
	state, err := tableTriggers(ctx, conn, t)
	if err != nil {
		return nil, err
	}
	want := triggersOf(sh)
	for _, tg := range triggers {
		switch {
		case !slices.Contains(want, tg):
			if state[tg] != "" {
				problems = append(problems, fmt.Sprintf("trigger %s on %s is left from capture of another kind", tg, t.Display()))
			}
		case state[tg] == "O":
		case state[tg] == "":
			problems = append(problems, fmt.Sprintf("trigger %s on %s is missing", tg, t.Display()))
		default:
			problems = append(problems, fmt.Sprintf("trigger %s on %s is not enabled as gobucardo needs (tgenabled %s)", tg, t.Display(), state[tg]))
		}
	}
	if sh.partitioned {
		ps, err := checkPartitions(ctx, conn, t, sh)
		if err != nil {
			return nil, err
		}
		problems = append(problems, ps...)
	}
	return problems, nil
}

// checkPartitions finds the partitions of t without the truncate trigger
// (created or attached since capture last looked) and the recorded
// partitions that are gone.
func checkPartitions(ctx context.Context, conn *pgx.Conn, t Table, sh shape) ([]string, error) {
	_, have, err := partitionTriggers(ctx, conn, t)
	if err != nil {
		return nil, err
	}
	known, err := knownPartitions(ctx, conn, t)
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, l := range sh.leaves {
		if !slices.Contains(have, l) {
			problems = append(problems, fmt.Sprintf("partition %s of %s has no truncate trigger (created or attached since capture last looked)", l.display(), t.Display()))
		}
	}
	for _, l := range known {
		if !slices.Contains(sh.leaves, l) {
			problems = append(problems, fmt.Sprintf("partition %s of %s is gone (detached or dropped)", l.display(), t.Display()))
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
