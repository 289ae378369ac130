// Package capture installs, checks and removes gobucardo's change capture on
// a replicated database, all in that database's schema gobucardo:
//
//   - per captured table, a delta table holding the table's key columns (same
//     names and types) plus txid (xid8, the writing transaction),
//     changed_at and origin (the sync that wrote the row under makedelta,
//     NULL for the application's writes), indexed on txid; its name derives from the table's and stays
//     under 63 bytes (DeltaName);
//   - statement-level AFTER INSERT/UPDATE/DELETE triggers with transition
//     tables that record the changed keys set-wise (an UPDATE records old and
//     new keys, so a key change is seen), and an AFTER TRUNCATE trigger that
//     records the truncate in gobucardo.truncate_log;
//   - autokick: the trigger bumps the database's activity sequence and, for
//     each autokick sync whose mark it reaches, disarms the mark and sends
//     NOTIFY gobucardo_kick with the sync's name — so a busy database does not
//     notify on every commit;
//   - the watermark of each sync that reads the database (the snapshot its
//     last run consumed up to), and the list of the tables each sync reads,
//     which purging uses.
//
// The triggers are ordinary (not ALWAYS): writes made under
// session_replication_role = replica, as gobucardo's own are, are not
// captured. Installing is idempotent; Check reports what is missing or
// stale; Uninstall removes everything.
package capture
