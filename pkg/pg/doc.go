// Package pg holds what every gobucardo package needs to talk to PostgreSQL:
// building and checking connection strings without ever showing a password,
// connecting with gobucardo's session defaults, quoting identifiers, and
// telling which errors are worth a retry.
//
// Functions take a context first; cancelling it aborts the connection attempt
// or query in flight (pgx closes the connection in that case).
package pg
