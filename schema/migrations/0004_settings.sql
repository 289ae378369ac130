-- Settings an operator changes without a rebuild (`mcp set NAME=VALUE`,
-- `mcp show`): the timings of the daemon, the controllers and the kids, the
-- metrics address and the log level. Only the values set are stored; a
-- setting without a row has its default, which the binaries know. Names and
-- values are checked by mcp set (catalog.ParseSetting), which stores each
-- value in its canonical form.
CREATE TABLE gobucardo.setting (
    name    text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    value   text NOT NULL,
    changed timestamptz NOT NULL DEFAULT now()
);
