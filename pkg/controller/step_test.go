package controller

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/ipc/kidcodec"
	"github.com/gobucardo/gobucardo/pkg/replicate"
)

// String sums an action up for the table below.
func (a action) String() string {
	switch a.kind {
	case actLoad:
		return "load"
	case actBoard:
		return "board " + a.state + ": " + a.detail
	case actLog:
		return "log " + a.msg
	case actProbe:
		return "probe " + a.db.Name
	case actRun:
		var held []string
		for _, d := range a.spec.DBs {
			if d.Hold != "" {
				held = append(held, d.Name)
			}
		}
		s := "run " + a.reason
		if len(held) > 0 {
			s += " without " + strings.Join(held, ",")
		}
		return s
	case actStopKid:
		return "stop kid: " + a.reason
	case actArm:
		var names []string
		for _, d := range a.dbs {
			names = append(names, d.Name)
		}
		return "arm " + strings.Join(names, ",")
	case actCheckSettled:
		var names []string
		for _, c := range a.checks {
			names = append(names, c.db)
		}
		return "check " + strings.Join(names, ",")
	case actStop:
		return "stop: " + a.reason
	case actExit:
		return "exit: " + a.reason
	}
	return fmt.Sprintf("action %d", a.kind)
}

// testDetail is a sync from source A to target B with the catalog's
// defaults (autokick, stayalive, kidsalive), changed by opts.
func testDetail(opts ...func(*catalog.SyncDetail)) catalog.SyncDetail {
	d := catalog.SyncDetail{Sync: catalog.NewSync("s1"),
		Members: []catalog.Member{{DB: "A", Role: catalog.RoleSource}, {DB: "B", Role: catalog.RoleTarget}},
		DBs: map[string]catalog.DB{"A": {Name: "A", Status: catalog.StatusActive},
			"B": {Name: "B", Status: catalog.StatusActive}}}
	for _, o := range opts {
		o(&d)
	}
	return d
}

// fromKid is err as the controller gets it from its kid.
func fromKid(err error) error {
	_, _, got := kidcodec.DecodeOutcome(kidcodec.EncodeOutcome(replicate.Result{}, err))
	return got
}

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

const never = time.Duration(-1)

type tstep struct {
	at   time.Duration // since t0
	ev   event
	want []string      // the actions
	wake time.Duration // since t0; never: no wake-up
}

// started is a controller that has read its sync d and made its first run
// (startup), which is still out.
func started(d catalog.SyncDetail) state {
	return state{detail: d, loaded: true, started: t0, running: reasonStartup, ranOnce: true}
}

// idle is a controller with nothing to do.
func idle(d catalog.SyncDetail) state {
	return state{detail: d, loaded: true, started: t0, ranOnce: true}
}

var (
	changed = replicate.Result{Inserts: 3}
	nothing = replicate.Result{}
)

func done(res replicate.Result, err error) event {
	return event{kind: evRunDone, result: res, err: err}
}
func kick(reason string) event { return event{kind: evKick, reason: reason} }
func wake() event              { return event{kind: evWake} }
func loaded(d catalog.SyncDetail, paused string) event {
	return event{kind: evLoaded, detail: d, paused: paused}
}
func armedA() event { return event{kind: evArmed, armed: []armed{{db: "A", snapshot: "10:10:"}}} }
func settled(left ...string) event {
	ev := event{kind: evSettled}
	for _, db := range left {
		ev.left = append(ev.left, armed{db: db, snapshot: "10:10:"})
	}
	return ev
}

// TestStep: the controller's decisions, event by event, as named cases.
func TestStep(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name  string
		start state
		steps []tstep
		check func(t *testing.T, s state)
	}{
		{
			name:  "startup reads the catalog, then catches up",
			start: state{},
			steps: []tstep{
				{0, event{kind: evStart}, []string{"load"}, never},
				{0, loaded(testDetail(), ""), []string{"board running: startup", "run startup"}, never},
			},
			check: func(t *testing.T, s state) {
				if s.kickedRuns != 0 || s.running != reasonStartup {
					t.Errorf("kicked runs %d (the startup run is no kick), running %q", s.kickedRuns, s.running)
				}
			},
		},
		{
			name:  "catalog unreachable: tries again with backoff",
			start: state{started: t0, kick: reasonStartup},
			steps: []tstep{
				{0, event{kind: evLoadFailed, err: boom}, []string{"board waiting: catalog unreachable, retry in 500ms: boom", "log cannot read the catalog"}, 500 * time.Millisecond},
				{500 * time.Millisecond, wake(), []string{"load"}, never},
				{500 * time.Millisecond, event{kind: evLoadFailed, err: boom}, []string{"board waiting: catalog unreachable, retry in 1s: boom", "log cannot read the catalog"}, 1500 * time.Millisecond},
				{time.Second, kick("mcp kick"), []string{"load"}, never}, // any event tries again
			},
		},
		{
			name:  "settle: an empty run arms autokick and runs once more when the writers are done",
			start: started(testDetail()),
			steps: []tstep{
				{time.Second, done(nothing, nil), []string{"arm A"}, never},
				{time.Second, armedA(), []string{"check A"}, never},
				{time.Second, settled("A"), []string{"board settling: waiting for transactions in progress on 1 db(s)"}, time.Second + 10*time.Millisecond},
				{time.Second + 10*time.Millisecond, wake(), []string{"check A"}, never},
				{time.Second + 10*time.Millisecond, settled(), []string{"board running: settle", "run settle"}, never},
				{2 * time.Second, done(nothing, nil), []string{"board idle: "}, never},
			},
		},
		{
			name:  "a run that changed rows runs again at once",
			start: started(testDetail()),
			steps: []tstep{
				{time.Second, done(changed, nil), []string{"board running: more changes", "run more changes"}, never},
			},
			check: func(t *testing.T, s state) {
				if !s.busy || !forgetEmpty(s.running) {
					t.Errorf("busy %v, running %q: an empty run for more changes is not kept", s.busy, s.running)
				}
			},
		},
		{
			name:  "kick while running: the run after it is the kick's",
			start: started(testDetail()),
			steps: []tstep{
				{500 * time.Millisecond, kick("mcp kick"), nil, never},
				{500 * time.Millisecond, kick("source A"), nil, never}, // coalesced
				{time.Second, done(nothing, nil), []string{"arm A"}, never},
				{time.Second, armedA(), []string{"board running: mcp kick", "run mcp kick"}, never},
			},
			check: func(t *testing.T, s state) {
				if s.kickedRuns != 1 || s.kick != "" {
					t.Errorf("kicked runs %d, pending kick %q", s.kickedRuns, s.kick)
				}
			},
		},
		{
			name:  "checktime runs when nothing kicked",
			start: state{started: t0, kick: reasonStartup},
			steps: []tstep{
				{0, loaded(testDetail(func(d *catalog.SyncDetail) { d.Checktime, d.Autokick = 10*time.Second, false }), ""),
					[]string{"board running: startup", "run startup"}, never},
				{time.Second, done(nothing, nil), []string{"board idle: next checktime run in 10s"}, 11 * time.Second},
				{11 * time.Second, wake(), []string{"board running: checktime", "run checktime"}, never},
			},
		},
		{
			name:  "retry backoff: failed runs are tried again, later each time, until one succeeds",
			start: started(testDetail()),
			steps: []tstep{
				{time.Second, done(nothing, boom), []string{"board retrying: run failed, retry in 500ms: boom", "log run failed"}, 1500 * time.Millisecond},
				{1500 * time.Millisecond, wake(), []string{"board running: retry", "run retry"}, never},
				{2 * time.Second, done(nothing, boom), []string{"board retrying: run failed, retry in 1s: boom", "log run failed"}, 3 * time.Second},
				{2500 * time.Millisecond, wake(), nil, 3 * time.Second}, // too early
				{3 * time.Second, wake(), []string{"board running: retry", "run retry"}, never},
				{4 * time.Second, done(changed, nil), []string{"board running: more changes", "run more changes"}, never},
			},
			check: func(t *testing.T, s state) {
				if s.failures != 0 || !s.retryAt.IsZero() {
					t.Errorf("after a good run: failures %d, retry at %v", s.failures, s.retryAt)
				}
			},
		},
		{
			name:  "a failed run from the kid",
			start: started(testDetail()),
			steps: []tstep{
				{time.Second, done(replicate.Result{Deletes: 2}, fromKid(errors.New("db B: relation missing"))),
					[]string{"board retrying: run failed, retry in 500ms: db B: relation missing", "log run failed"}, 1500 * time.Millisecond},
			},
		},
		{
			name:  "a kid that dies: the run failed, and the retry starts a new kid",
			start: started(testDetail()),
			steps: []tstep{
				{time.Second, done(nothing, errors.New("kid 42 exited during the run: signal: killed")),
					[]string{"board retrying: run failed, retry in 500ms: kid 42 exited during the run: signal: killed", "log run failed"}, 1500 * time.Millisecond},
				{1500 * time.Millisecond, wake(), []string{"board running: retry", "run retry"}, never},
			},
		},
		{
			name:  "a cancelled run is no failure: it waits for the next kick",
			start: state{detail: testDetail(), loaded: true, started: t0, running: "mcp kick", ranOnce: true, failures: 2},
			steps: []tstep{
				{time.Second, done(nothing, fromKid(&replicate.CancelledError{Code: "hook", Point: "before_sync", Reason: "not today"})),
					[]string{"log run cancelled", "board idle: "}, never},
				{2 * time.Second, kick("mcp kick"), []string{"board running: mcp kick", "run mcp kick"}, never},
			},
			check: func(t *testing.T, s state) {
				if s.failures != 0 {
					t.Errorf("failures %d after a cancelled run", s.failures)
				}
			},
		},
		{
			name:  "an abort (conflict under bucardo_abort) pauses the sync",
			start: started(testDetail()),
			steps: []tstep{
				{time.Second, done(nothing, fromKid(fmt.Errorf("table t: 2 keys changed on several sources: %w", replicate.ErrConflictAbort))),
					[]string{"board paused: table t: 2 keys changed on several sources: conflict under bucardo_abort"}, never},
				{time.Minute, kick("mcp kick"), []string{"board paused: table t: 2 keys changed on several sources: conflict under bucardo_abort"}, never},
			},
			check: func(t *testing.T, s state) {
				if !s.retryAt.IsZero() || s.kick != "" {
					t.Errorf("a paused sync retries at %v, keeps kick %q", s.retryAt, s.kick)
				}
			},
		},
		{
			name:  "pause and resume",
			start: state{detail: testDetail(), loaded: false, started: t0, ranOnce: true},
			steps: []tstep{
				{0, kick("mcp kick"), []string{"load"}, never},
				{0, loaded(testDetail(), "maintenance"), []string{"board paused: maintenance"}, never},
				{time.Second, kick("source A"), []string{"board paused: maintenance"}, never},
				{2 * time.Second, event{kind: evReload}, []string{"load"}, never},
				{2 * time.Second, loaded(testDetail(), ""), []string{"board running: resumed", "run resumed"}, never},
			},
		},
		{
			name:  "paused after the catalog was read: StartRun refuses the run",
			start: started(testDetail()),
			steps: []tstep{
				{time.Second, done(nothing, &catalog.PausedError{Sync: "s1"}), []string{"board paused: paused"}, never},
			},
			check: func(t *testing.T, s state) {
				if s.failures != 0 || s.paused != "paused" {
					t.Errorf("failures %d, paused %q", s.failures, s.paused)
				}
			},
		},
		{
			name:  "stayalive=false: exits once idle after a run",
			start: started(testDetail(func(d *catalog.SyncDetail) { d.Stayalive, d.Autokick = false, false })),
			steps: []tstep{
				{time.Second, done(nothing, nil), []string{"exit: stayalive is off"}, never},
			},
		},
		{
			name:  "kidsalive=false: the kid stops after each run",
			start: started(testDetail(func(d *catalog.SyncDetail) { d.Kidsalive = false })),
			steps: []tstep{
				{time.Second, done(changed, nil), []string{"stop kid: kidsalive is off", "board running: more changes", "run more changes"}, never},
			},
		},
		{
			name:  "lifetime: exits once idle when it is over",
			start: state{started: t0, kick: reasonStartup},
			steps: []tstep{
				{0, loaded(testDetail(func(d *catalog.SyncDetail) { d.Lifetime, d.Autokick = time.Minute, false }), ""),
					[]string{"board running: startup", "run startup"}, never},
				{time.Second, done(nothing, nil), []string{"board idle: "}, time.Minute},
				{time.Minute, wake(), []string{"exit: lifetime 1m0s reached"}, never},
			},
		},
		{
			name:  "maxkicks: exits once idle after that many kicked runs",
			start: idle(testDetail(func(d *catalog.SyncDetail) { d.MaxKicks, d.Autokick = 2, false })),
			steps: []tstep{
				{0, kick("mcp kick"), []string{"board running: mcp kick", "run mcp kick"}, never},
				{time.Second, done(changed, nil), []string{"board running: more changes", "run more changes"}, never},
				{time.Second, done(nothing, nil), []string{"board idle: "}, never},
				{2 * time.Second, kick("mcp kick"), []string{"board running: mcp kick", "run mcp kick"}, never},
				{3 * time.Second, done(nothing, nil), []string{"exit: maxkicks 2 reached"}, never},
			},
		},
		{
			name:  "fullcopy only: runs only when asked",
			start: started(testDetail(func(d *catalog.SyncDetail) { d.Members[1].Role = catalog.RoleFullcopy })),
			steps: []tstep{
				{time.Second, done(changed, nil), []string{"board idle: "}, never},
			},
		},
		{
			name:  "onetimecopy done: the sync is read again",
			start: started(testDetail()),
			steps: []tstep{
				{time.Second, done(replicate.Result{Inserts: 5, OneTimeCopyDone: true}, nil), []string{"load"}, never},
				{time.Second, loaded(testDetail(), ""), []string{"board running: more changes", "run more changes"}, never},
			},
		},
		{
			name:  "inactive: waits for its status to change",
			start: state{started: t0, kick: reasonStartup},
			steps: []tstep{
				{0, loaded(testDetail(func(d *catalog.SyncDetail) { d.Status = catalog.StatusInactive }), ""), []string{"board inactive: "}, never},
				{time.Second, event{kind: evReload}, []string{"load"}, never},
				{time.Second, loaded(testDetail(), ""), []string{"board running: startup", "run startup"}, never},
			},
		},
		{
			name:  "an inactive source holds the sync",
			start: state{started: t0, kick: reasonStartup},
			steps: []tstep{
				{0, loaded(testDetail(func(d *catalog.SyncDetail) { d.DBs["A"] = catalog.DB{Name: "A", Status: catalog.StatusInactive} }), ""),
					[]string{"board waiting: source db A is inactive: mcp update db A status=active resumes the sync"}, never},
				{time.Second, event{kind: evReload}, []string{"load"}, never},
				{time.Second, loaded(testDetail(), ""), []string{"board running: startup", "run startup"}, never},
			},
		},
		{
			name:  "a target active again is caught up at once",
			start: idle(testDetail(func(d *catalog.SyncDetail) { d.DBs["B"] = catalog.DB{Name: "B", Status: catalog.StatusInactive} })),
			steps: []tstep{
				{0, event{kind: evReload}, []string{"load"}, never},
				{0, loaded(testDetail(), ""), []string{"board running: db B active again", "run db B active again"}, never},
			},
		},
		{
			name:  "a target lost during a run is held, tried on its own, and caught up once back",
			start: started(testDetail()),
			steps: []tstep{
				{time.Second, done(nothing, fromKid(&replicate.TargetsLostError{DBs: []string{"B"}, Err: errors.New("db B: conn closed")})),
					[]string{"log target unreachable: runs leave it out, and it catches up once back",
						"board retrying: run failed, retry in 500ms: db B: conn closed", "log run failed"}, 1500 * time.Millisecond},
				{1500 * time.Millisecond, wake(), []string{"probe B", "board running: retry", "run retry without B"}, never},
				{2 * time.Second, event{kind: evRunDone, result: replicate.Result{Skipped: []replicate.Skipped{{DB: "B", Reason: "not reached lately"}}},
					probes: []probed{{db: "B", err: boom}}}, []string{"arm A"}, never},
				{2 * time.Second, armedA(), []string{"check A"}, never},
				{2 * time.Second, settled(), []string{"board running: settle", "run settle without B"}, never},
				{2500 * time.Millisecond, done(nothing, nil), []string{"board idle: "}, 3 * time.Second},
				{3 * time.Second, wake(), []string{"probe B", "board idle: "}, never},
				{3200 * time.Millisecond, event{kind: evProbed, probes: []probed{{db: "B"}}},
					[]string{"log target reachable again: a run catches it up", "board running: target B reachable again", "run target B reachable again"}, never},
			},
		},
		{
			name:  "stop",
			start: idle(testDetail()),
			steps: []tstep{
				{0, event{kind: evStop, reason: "mcp stop"}, []string{"stop: mcp stop"}, never},
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.start
			for i, st := range c.steps {
				var acts []action
				var next time.Time
				s, acts, next = step(s, st.ev, t0.Add(st.at))
				var got []string
				for _, a := range acts {
					got = append(got, a.String())
				}
				if strings.Join(got, "\n") != strings.Join(st.want, "\n") {
					t.Fatalf("step %d: actions\n  %s\nwant\n  %s", i, strings.Join(got, "\n  "), strings.Join(st.want, "\n  "))
				}
				wantWake := time.Time{}
				if st.wake != never {
					wantWake = t0.Add(st.wake)
				}
				if !next.Equal(wantWake) {
					t.Fatalf("step %d: wake-up at %v, want %v", i, next.Sub(t0), st.wake)
				}
			}
			if c.check != nil {
				c.check(t, s)
			}
		})
	}
}

// TestStepPure: step leaves the state it was given as it was.
func TestStepPure(t *testing.T) {
	s := started(testDetail())
	s.holds = map[string]hold{"B": {tries: 1, next: t0}}
	lost := fromKid(&replicate.TargetsLostError{DBs: []string{"B"}, Err: errors.New("gone")})
	next, _, _ := step(s, done(nothing, lost), t0.Add(time.Second))
	if s.holds["B"].tries != 1 || s.running != reasonStartup {
		t.Errorf("the state given changed: %+v", s.holds)
	}
	if next.holds["B"].tries != 2 || next.running != "" {
		t.Errorf("the next state: holds %+v, running %q", next.holds, next.running)
	}
}

// TestStepSettings: the settings read with the sync cap the retry and hold
// waits and give the kid's tries; before any read, the defaults apply.
func TestStepSettings(t *testing.T) {
	boom := errors.New("boom")
	lost := fromKid(&replicate.TargetsLostError{DBs: []string{"B"}, Err: errors.New("db B: conn closed")})
	tests := []struct {
		name         string
		settings     catalog.Settings
		failures     int
		err          error
		wantRetry    time.Duration // after the failed run
		wantHold     time.Duration // of B, after lost; 0: not held
		wantAttempts int
	}{
		{"defaults", catalog.Settings{}, 0, boom, 500 * time.Millisecond, 0, 5},
		{"defaults capped at 30s", catalog.Settings{}, 10, boom, 30 * time.Second, 0, 5},
		{"run_retry_max caps the wait", catalog.Settings{RunRetryMax: time.Second}, 3, boom, time.Second, 0, 5},
		{"run_retry_max above the wait", catalog.Settings{RunRetryMax: time.Hour}, 3, boom, 4 * time.Second, 0, 5},
		{"target_retry_max caps the hold", catalog.Settings{TargetRetryMax: 700 * time.Millisecond}, 0, lost, 500 * time.Millisecond, 500 * time.Millisecond, 5},
		{"kid_attempts", catalog.Settings{KidAttempts: 2}, 0, boom, 500 * time.Millisecond, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := state{started: t0, ranOnce: true}
			s, _, _ = step(s, event{kind: evLoaded, detail: testDetail(), settings: tt.settings}, t0)
			s, acts, _ := step(s, kick("mcp kick"), t0)
			if len(acts) != 2 || acts[1].kind != actRun || acts[1].attempts != tt.wantAttempts {
				t.Fatalf("kick: %v; want a run with %d attempts", acts, tt.wantAttempts)
			}
			s.failures = tt.failures
			s, _, wake := step(s, done(nothing, tt.err), t0)
			if got := wake.Sub(t0); got != tt.wantRetry {
				t.Errorf("retry in %v, want %v", got, tt.wantRetry)
			}
			if tt.wantHold > 0 {
				if h, ok := s.holds["B"]; !ok || h.next.Sub(t0) != tt.wantHold {
					t.Errorf("hold of B %+v, want next in %v", s.holds, tt.wantHold)
				}
				// The next tries double up to the cap.
				s.holds["B"] = hold{tries: 5, next: t0}
				s, _, _ = step(s, event{kind: evProbed, probes: []probed{{db: "B", err: boom}}}, t0)
				if got := s.holds["B"].next.Sub(t0); got != tt.settings.TargetRetryMax {
					t.Errorf("hold after 6 tries in %v, want the cap %v", got, tt.settings.TargetRetryMax)
				}
			}
		})
	}
}
