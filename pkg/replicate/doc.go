// Package replicate performs one run of a sync: it reads, on the source, the
// keys changed since the sync's watermark, deletes those keys on every
// target and streams the current rows from the source into all targets at
// once with COPY; fullcopy targets (and onetimecopy, and tables truncated on
// the source) are emptied and copied whole; sequences take the source's
// value. Targets write under session_replication_role = replica, so their
// triggers, rules and foreign keys do not fire and nothing is captured
// again. The watermark advances only after every target has committed, so a
// run that dies anywhere is simply run again: applying is idempotent.
//
// The package knows nothing of processes, RPC or the catalog: callers pass
// a Sync with connection strings. Cancelling the context aborts the run;
// every database is rolled back (or, with commit_every, left with whole
// pieces applied, which the next run re-applies).
package replicate
