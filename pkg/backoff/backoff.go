package backoff

import (
	"math"
	"time"
)

// Policy is capped exponential backoff: Initial, then Initial × Multiplier
// for each further consecutive failure, at most Max. The zero Policy waits
// 0 every time.
type Policy struct {
	Initial    time.Duration // delay before the first retry
	Max        time.Duration // cap on the delay; 0: no cap
	Multiplier float64       // growth per consecutive failure; below 1 counts as 1
	ResetAfter time.Duration // a child that ran this long starts the count afresh (Next); 0: never
}

// Delay returns the wait before retry number failures (1 is the first retry
// after a failure): Initial × Multiplier^(failures-1), capped at Max, never
// negative. Failures below 1 count as 1.
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

// Next returns the failure count after a child that ran for ran exited with
// failures consecutive failures before it, and the delay before starting it
// again. The count restarts at 1 if the child ran at least ResetAfter.
func (p Policy) Next(failures int, ran time.Duration) (int, time.Duration) {
	n := max(failures, 0) + 1
	if p.ResetAfter > 0 && ran >= p.ResetAfter {
		n = 1
	}
	return n, p.Delay(n)
}
