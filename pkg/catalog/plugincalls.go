package catalog

import (
	"context"
	"fmt"
)

// The outcomes of a plugin call, as gobucardo.plugin_calls and the
// outcome label of gobucardo_plugin_calls_total name them.
const (
	PluginCallOK          = "ok"           // the plugin answered
	PluginCallError       = "error"        // it answered with an error
	PluginCallTimeout     = "timeout"      // no answer within the customcode's timeout
	PluginCallCrash       = "crash"        // its process died during the call
	PluginCallStartFailed = "start_failed" // it could not be started or configured
)

// PluginCalls is how many calls a run made to one customcode's plugin that
// ended with one outcome, and the seconds they took together.
type PluginCalls struct {
	Code    string // the customcode's name
	Outcome string // PluginCallOK, PluginCallError, ...
	Calls   int64
	Seconds float64
}

// AddPluginCalls adds the calls of a run of sync to the totals of
// gobucardo.plugin_calls, in one statement.
func AddPluginCalls(ctx context.Context, q Querier, sync string, calls []PluginCalls) error {
	if len(calls) == 0 {
		return nil
	}
	codes := make([]string, len(calls))
	outcomes := make([]string, len(calls))
	counts := make([]int64, len(calls))
	seconds := make([]float64, len(calls))
	for i, c := range calls {
		codes[i], outcomes[i], counts[i], seconds[i] = c.Code, c.Outcome, c.Calls, c.Seconds
	}
	_, err := q.Exec(ctx, `INSERT INTO gobucardo.plugin_calls AS p (sync_name, code, outcome, calls, seconds)
		SELECT $1, code, outcome, sum(calls), sum(seconds)
		FROM unnest($2::text[], $3::text[], $4::bigint[], $5::float8[]) AS c(code, outcome, calls, seconds)
		GROUP BY code, outcome
		ON CONFLICT (sync_name, code, outcome) DO UPDATE SET calls = p.calls + excluded.calls, seconds = p.seconds + excluded.seconds`,
		sync, codes, outcomes, counts, seconds)
	if err != nil {
		return fmt.Errorf("record the plugin calls of sync %s: %w", sync, err)
	}
	return nil
}

// PluginCallTotals are the totals of one sync, customcode and outcome.
type PluginCallTotals struct {
	Sync string
	PluginCalls
}

// LoadPluginCalls reads every total of gobucardo.plugin_calls.
func LoadPluginCalls(ctx context.Context, q Querier) ([]PluginCallTotals, error) {
	rows, err := q.Query(ctx, `SELECT sync_name, code, outcome, calls, seconds FROM gobucardo.plugin_calls ORDER BY 1, 2, 3`)
	if err != nil {
		return nil, fmt.Errorf("read plugin_calls: %w", err)
	}
	defer rows.Close()
	var out []PluginCallTotals
	for rows.Next() {
		var t PluginCallTotals
		if err := rows.Scan(&t.Sync, &t.Code, &t.Outcome, &t.Calls, &t.Seconds); err != nil {
			return nil, fmt.Errorf("read plugin_calls: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read plugin_calls: %w", err)
	}
	return out, nil
}
