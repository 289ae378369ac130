package controller

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/replicate"
)

func holdsLoop() *stepper {
	return &stepper{now: time.Now(), state: state{detail: catalog.SyncDetail{
		Members: []catalog.Member{{DB: "A", Role: "source"}, {DB: "B", Role: "target"}, {DB: "C", Role: "target"}},
		DBs: map[string]catalog.DB{"A": {Name: "A", Status: "active"}, "B": {Name: "B", Status: "active"},
			"C": {Name: "C", Status: "active"}},
	}}}
}

// TestHolds: a target a run could not reach, or whose connection broke,
// is held (left out of the runs, untried) until a try of the loop's own
// reaches it, which kicks the run that catches it up; tries back off.
func TestHolds(t *testing.T) {
	t.Run("unreachable in a run", func(t *testing.T) {
		l := holdsLoop()
		l.noteTargets(replicate.Result{Skipped: []replicate.Skipped{{DB: "C", Reason: "unreachable: connection refused"}}}, nil)
		if !l.held("C") || l.held("B") || l.nextProbe().IsZero() {
			t.Fatalf("holds %v, probe at %v", l.holds, l.nextProbe())
		}
		s := l.withHolds(replicate.Sync{DBs: []replicate.DB{{Name: "A", Role: "source"}, {Name: "B", Role: "target"}, {Name: "C", Role: "target"}}})
		if s.DBs[0].Hold != "" || s.DBs[1].Hold != "" || !strings.Contains(s.DBs[2].Hold, "connection refused") {
			t.Errorf("run specification: %+v", s.DBs)
		}
		// The next run leaves C out untried: that says nothing new of it.
		tries := l.holds["C"].tries
		l.noteTargets(replicate.Result{Skipped: []replicate.Skipped{{DB: "C", Reason: s.DBs[2].Hold}}}, nil)
		if l.holds["C"].tries != tries {
			t.Errorf("a run that left C out counted as a try")
		}
	})
	t.Run("inactive is not held", func(t *testing.T) {
		l := holdsLoop()
		l.noteTargets(replicate.Result{Skipped: []replicate.Skipped{{DB: "B", Reason: "inactive"}}}, nil)
		if len(l.holds) != 0 {
			t.Errorf("holds %v", l.holds)
		}
	})
	t.Run("connection broke, tries back off, then it answers", func(t *testing.T) {
		l := holdsLoop()
		l.noteTargets(replicate.Result{}, []string{"B"})
		if !l.held("B") {
			t.Fatal("B not held")
		}
		var waits []time.Duration
		for i := 0; i < 6; i++ {
			h := l.holds["B"]
			h.next = time.Time{} // a try is out
			l.holds["B"] = h
			l.now = l.now.Add(time.Minute)
			l.probeDone(probed{db: "B", err: errors.New("timeout")})
			waits = append(waits, l.holds["B"].next.Sub(l.now))
		}
		if waits[0] != time.Second || waits[len(waits)-1] != 5*time.Second {
			t.Errorf("waits between tries %v, want doubling up to 5s", waits)
		}
		l.probeDone(probed{db: "B"})
		if l.held("B") || !strings.Contains(l.kick, "B reachable again") || !l.nextProbe().IsZero() {
			t.Errorf("after B answered: holds %v, kick %q, probe at %v", l.holds, l.kick, l.nextProbe())
		}
	})
	t.Run("reactivated", func(t *testing.T) {
		before := holdsLoop().detail
		after := holdsLoop().detail
		before.DBs["C"] = catalog.DB{Name: "C", Status: "inactive"}
		if got := reactivated(before, after); got != "C" {
			t.Errorf("reactivated = %q", got)
		}
		if got := reactivated(after, after); got != "" {
			t.Errorf("reactivated with no change = %q", got)
		}
	})
}
