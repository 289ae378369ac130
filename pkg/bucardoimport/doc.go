// Package bucardoimport reads the catalog of a Bucardo 5 main database and
// plans how to carry it into gobucardo's catalog.
//
// Read takes a connection to Bucardo's main database and returns its
// catalog (bucardo.db, dbgroup, dbmap, goat, herd, herdmap, sync,
// customcode, customcode_map, bucardo_config) as plain values; it checks
// first that the database is a Bucardo main database of a version this
// package knows (5.x, SupportedMajor). Plan is a pure function of that
// catalog and of what gobucardo's catalog holds: it returns the actions
// (create, unchanged, replace, refuse) for each db, dbgroup, table,
// sequence, relgroup and sync, and a Note for each setting that cannot be
// carried and why (Perl customcode, databases other than PostgreSQL,
// options gobucardo does not have). Carrying out the plan is mcp import
// bucardo's job (pkg/admin), with the same catalog functions as mcp add.
//
// Syncs are planned inactive: Bucardo keeps replicating until the takeover,
// and nothing of gobucardo runs meanwhile.
package bucardoimport
