-- Plugins: a customcode's settings (the key=value arguments of `mcp add
-- customcode` the plugin's Configure receives) and the longest the kid waits
-- for one answer; parked rows name the db they could not be applied to, and
-- a row is parked once per (sync, table, source, target, key).
ALTER TABLE gobucardo.customcode
    ADD COLUMN settings jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    ADD COLUMN timeout  interval NOT NULL DEFAULT '30 seconds' CHECK (timeout > '0'::interval);

ALTER TABLE gobucardo.parked
    ADD COLUMN target_db  text NOT NULL DEFAULT '',
    ADD COLUMN syncrun_id bigint REFERENCES gobucardo.syncrun (id) ON DELETE SET NULL,
    ADD COLUMN customcode text;
ALTER TABLE gobucardo.parked ALTER COLUMN target_db DROP DEFAULT;
CREATE UNIQUE INDEX parked_once ON gobucardo.parked (sync_name, schema_name, rel_name, source_db, target_db, key);

-- A run a hook cancelled (before_sync, before_txn, after_txn) changed nothing
-- and is not a failure.
ALTER TABLE gobucardo.syncrun DROP CONSTRAINT syncrun_state_check;
ALTER TABLE gobucardo.syncrun ADD CONSTRAINT syncrun_state_check
    CHECK (state IN ('running', 'good', 'empty', 'bad', 'cancelled'));
