-- Per-sync lag thresholds for mcp ping (Bucardo's check_bucardo_sync
-- overdue and expired): a lag at or over overdue is a WARNING, at or over
-- expired CRITICAL. NULL is off. mcp ping's --warning and --critical, when
-- given, win over them.
ALTER TABLE gobucardo.sync
    ADD COLUMN overdue interval CHECK (overdue > '0'::interval),
    ADD COLUMN expired interval CHECK (expired > '0'::interval),
    ADD CONSTRAINT sync_expired_not_below_overdue CHECK (expired >= overdue);
