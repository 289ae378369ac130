// Package metrics exposes gobucardo to Prometheus: the HTTP endpoint of
// `mcp run --metrics-addr` (/metrics, /healthz, /readyz), a collector that
// reads the run history from the catalog at scrape time, and the counters
// the MCP keeps itself (controller restarts, purge passes).
//
// Runs happen in controller and kid processes, and what they did is
// recorded in the main database (gobucardo.syncrun, conflict_log, parked);
// so the per-sync figures are the catalog's own totals, read by Catalog when
// Prometheus scrapes, and they do not reset when the MCP restarts. syncrun
// keeps every run (it has no retention), so Catalog never aggregates the
// whole table on every scrape: it reads the history once, at its first
// scrape, and from then on only the runs recorded or ended since the last
// one (an index range on syncrun's id, plus the few runs it saw running).
//
// Names follow the Prometheus and postgres_exporter conventions: prefix
// gobucardo_, base units in the name (_seconds, _rows), counters end in
// _total. Labels are bounded: sync, db, outcome and strategy; never a table,
// a key or an error text.
//
// Cancellation: a scrape's catalog queries are bounded by Catalog.Timeout
// and by the HTTP request; a scrape cut short keeps what it had counted and
// reports gobucardo_catalog_up 0.
package metrics
