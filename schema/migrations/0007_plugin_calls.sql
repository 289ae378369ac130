-- The calls a sync's runs made to its customcode plugins, as totals: every
-- run's end adds what its kid counted (catalog.FinishRun), in the same
-- transaction as the run's record, and the MCP's /metrics reads the rows as
-- they are (gobucardo_plugin_calls_total, gobucardo_plugin_call_seconds_total).
-- A row per (sync, customcode, outcome): the table stays as small as the
-- number of customcodes times the five outcomes, whatever the number of runs.
CREATE TABLE gobucardo.plugin_calls (
    sync_name text NOT NULL,
    code      text NOT NULL,
    outcome   text NOT NULL CHECK (outcome IN ('ok', 'error', 'timeout', 'crash', 'start_failed')),
    calls     bigint NOT NULL DEFAULT 0 CHECK (calls >= 0),
    seconds   float8 NOT NULL DEFAULT 0 CHECK (seconds >= 0),
    PRIMARY KEY (sync_name, code, outcome)
);
