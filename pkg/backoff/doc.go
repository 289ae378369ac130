// Package backoff spaces the tries of something that keeps failing: a child
// process restarted by its supervisor, a run retried after a serialization
// failure, a database session reopened after an outage.
//
// A Policy is capped exponential backoff that may reset once a child has run
// long enough. Delay and Next are pure functions of the failure count (and of
// how long the child ran); no clock is read and no jitter is added, so the
// caller decides both. The package imports nothing of the module, so that
// every layer may use it.
package backoff
