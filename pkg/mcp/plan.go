package mcp

import (
	"sort"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// ctlState is how plan sees a controller the daemon has.
type ctlState int

const (
	ctlUp       ctlState = iota // supervised: running, restarting or dormant
	ctlStopping                 // told to stop; its process has not exited yet
)

// desired is what the catalog asks the daemon to run.
type desired struct {
	syncs  map[string]catalog.SyncDetail // the active syncs, by name
	reload map[string]bool               // the syncs whose controller rereads its configuration; "*": every one
}

// running is what the daemon runs.
type running struct {
	ctls      map[string]ctlState // by sync
	listeners map[string]string   // by db: the connection string of its LISTEN session
}

// listenTarget is a LISTEN session on one source db.
type listenTarget struct {
	connString string
	syncs      map[string]bool // the autokick syncs its notifications kick
}

// actions is what the daemon does to run what the catalog asks. Every list is
// sorted.
type actions struct {
	start  []string // syncs whose controller starts
	stop   []string // syncs whose controller stops: the sync is no longer active
	reload []string // syncs whose controller, already up, rereads its configuration
	// await are the active syncs whose previous controller is still
	// stopping: their new one starts only once it has exited.
	await []string
	// listeners are every LISTEN session wanted, by db: one per source db of
	// an active autokick sync that replicates by delta.
	listeners   map[string]listenTarget
	listenStart []string // dbs whose session starts
	listenStop  []string // dbs whose session ends; one in both starts anew, with another connection string
}

// plan compares what the catalog asks with what runs: a controller for each
// active sync and none for any other, and a LISTEN session for each source db
// of an active autokick sync. A sync whose controller is still stopping waits
// for it to exit, so that two controllers of one sync never overlap.
func plan(want desired, run running) actions {
	var a actions
	for name := range want.syncs {
		switch state, ok := run.ctls[name]; {
		case !ok:
			a.start = append(a.start, name)
		case state == ctlStopping:
			a.await = append(a.await, name)
		case want.reload["*"] || want.reload[name]:
			a.reload = append(a.reload, name)
		}
	}
	for name, state := range run.ctls {
		if _, ok := want.syncs[name]; !ok && state == ctlUp {
			a.stop = append(a.stop, name)
		}
	}

	a.listeners = listenTargets(want.syncs)
	for db, connString := range run.listeners {
		if t, ok := a.listeners[db]; !ok || t.connString != connString {
			a.listenStop = append(a.listenStop, db)
		}
	}
	for db, t := range a.listeners {
		if connString, ok := run.listeners[db]; !ok || connString != t.connString {
			a.listenStart = append(a.listenStart, db)
		}
	}
	for _, l := range [][]string{a.start, a.stop, a.reload, a.await, a.listenStart, a.listenStop} {
		sort.Strings(l)
	}
	return a
}

// listenTargets are the LISTEN sessions syncs need: one per source db of an
// autokick sync that replicates by delta (a fullcopy sync has no capture to
// notify).
func listenTargets(syncs map[string]catalog.SyncDetail) map[string]listenTarget {
	out := map[string]listenTarget{}
	for _, s := range syncs {
		if !s.Autokick || !s.HasDeltaRole() {
			continue
		}
		for _, db := range s.Sources() {
			t, ok := out[db.Name]
			if !ok {
				t = listenTarget{connString: db.ConnString(), syncs: map[string]bool{}}
				out[db.Name] = t
			}
			t.syncs[s.Name] = true
		}
	}
	return out
}
