//go:build !linux

package pg

import "time"

// setTCPUserTimeout does nothing where TCP_USER_TIMEOUT does not exist:
// keepalives alone detect a dead peer there.
func setTCPUserTimeout(uintptr, time.Duration) error { return nil }
