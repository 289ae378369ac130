-- The daemon's process tree for `mcp ps`: when each process entered its
-- current state, and its CPU time and memory as the MCP last read them.
ALTER TABLE gobucardo.process
    ADD COLUMN state_since timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN cpu_ms      bigint NOT NULL DEFAULT 0,
    ADD COLUMN rss_bytes   bigint NOT NULL DEFAULT 0;
