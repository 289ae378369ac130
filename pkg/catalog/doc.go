// Package catalog reads and writes gobucardo's catalog in the main database:
// dbs, dbgroups, relations, relgroups, syncs, customcode and run history. It
// also installs and upgrades the catalog (Install) and finds relations and
// their keys on a replicated database (FindRelations).
//
// Functions take the connection or transaction to use and never own it; an
// admin command runs them all in one transaction so that nothing is
// half-written. Conn is the one that owns a connection: the long-lived one
// of a daemon process, opened again after the main database went away. Errors for bad input are sentences naming the object and the
// fix (see NotFoundError, ExistsError, InvalidError); the database's own
// constraints are the last guard, and their gobucardo-raised violations
// (SQLSTATE class GB) carry such a sentence too.
package catalog
