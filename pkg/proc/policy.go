package proc

import (
	"math"
	"time"
)

// Policy is a restart policy: capped exponential backoff, reset once a child ran long enough.
type Policy struct {
	Initial    time.Duration // delay before the first restart
	Max        time.Duration // cap on the delay; 0: no cap
	Multiplier float64       // growth per consecutive failure; below 1 counts as 1
	ResetAfter time.Duration // a child that ran this long starts the count afresh; 0: never
}

// DefaultPolicy returns the policy the daemon uses for controllers and kids: 500ms, doubling, at most
// 30s, reset after a child ran for a minute.
func DefaultPolicy() Policy {
	return Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2, ResetAfter: time.Minute}
}

// Delay returns the wait before restart number failures (1 is the first restart after a failure):
// Initial * Multiplier^(failures-1), capped at Max, never negative. Failures below 1 count as 1. No
// jitter is applied.
func (p Policy) Delay(failures int) time.Duration {
	m := max(p.Multiplier, 1)
	d := float64(max(p.Initial, 0)) * math.Pow(m, float64(max(failures, 1)-1))
	limit := time.Duration(math.MaxInt64)
	if p.Max > 0 {
		limit = p.Max
	}
	if !(d < float64(limit)) { // also NaN, from 0 × +Inf
		return limit
	}
	return time.Duration(d)
}

// Next returns the failure count after a child that ran for ran exited with failures consecutive
// failures before it, and the delay before starting it again. The count restarts at 1 if the child ran
// at least ResetAfter.
func (p Policy) Next(failures int, ran time.Duration) (int, time.Duration) {
	n := max(failures, 0) + 1
	if p.ResetAfter > 0 && ran >= p.ResetAfter {
		n = 1
	}
	return n, p.Delay(n)
}
