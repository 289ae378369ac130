package controller

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gobucardo/gobucardo/pkg/backoff"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/replicate"
	"github.com/gobucardo/gobucardo/pkg/runs"
)

// The controller's decisions are one pure function, step: it takes what
// the controller knows (state), what happened (event) and the time, and
// returns what it now knows, what to do (actions) and when to look again
// without an event. Whatever needs a database (reading the catalog, a run,
// arming autokick, the settled check, a try to reach a held target) is an
// action, whose outcome comes back as an event. The loop (loop.go) only
// performs actions and gathers events.

// Run reasons the loop makes up itself. Empty runs for these are not kept in
// syncrun: they are the bookkeeping of autokick, not news.
const (
	reasonStartup  = "startup"
	reasonMore     = "more changes"
	reasonSettle   = "settle"
	reasonRetry    = "retry"
	reasonChecking = "checktime"
)

// firstRetry is the first wait of the retry and hold policies; it doubles
// up to the caps the settings give (run_retry_max, target_retry_max).
const firstRetry = 500 * time.Millisecond

// defaultSettings stand in for the settings not read yet.
var defaultSettings = catalog.DefaultSettings()

// holdPolicy spaces the tries of a target that could not be reached.
func (s *state) holdPolicy() backoff.Policy {
	return backoff.Policy{Initial: firstRetry, Max: cmp.Or(s.settings.TargetRetryMax, defaultSettings.TargetRetryMax), Multiplier: 2}
}

// retryPolicy spaces the retries of failed runs.
func (s *state) retryPolicy() backoff.Policy {
	return backoff.Policy{Initial: firstRetry, Max: cmp.Or(s.settings.RunRetryMax, defaultSettings.RunRetryMax), Multiplier: 2}
}

// kidAttempts is how many tries the kid makes of one run.
func (s *state) kidAttempts() int { return cmp.Or(s.settings.KidAttempts, defaultSettings.KidAttempts) }

// hold is a target that could not be reached: runs leave it out (without
// waiting on it), while the loop tries to reach it on its own at next,
// and kicks a run, which catches it up, as soon as it answers.
type hold struct {
	tries  int
	next   time.Time // of the next try; zero while one is out
	reason string
}

// probed is the outcome of one try to reach a held target.
type probed struct {
	db  string
	err error
}

// armed is a source whose mark was set, with the snapshot of that moment.
type armed struct {
	db       string
	snapshot string
}

// settleCheck is an armed source to check, with how to reach it.
type settleCheck struct {
	armed
	conn catalog.DB
}

// state is what the controller knows of its sync and its schedule.
type state struct {
	detail catalog.SyncDetail
	loaded bool   // detail is current
	paused string // the reason, when paused
	// settings are the catalog's, read with detail; a zero field stands
	// for its default.
	settings catalog.Settings

	started    time.Time
	running    string // the reason of the run in progress, "" when none
	kick       string // reason of the pending kick, if any
	kickedRuns int
	busy       bool // the last run changed rows: run again
	failures   int
	retryAt    time.Time
	settling   []armed
	settleWait time.Duration
	settleAt   time.Time
	checkAt    time.Time
	ranOnce    bool
	holds      map[string]hold // targets left out, by db
}

// eventKind says what happened.
type eventKind int

const (
	evStart      eventKind = iota // the loop begins
	evWake                        // the wake-up time came
	evKick                        // reason: a run was asked for
	evReload                      // the sync changed in the catalog
	evStop                        // reason: the MCP asked to stop, or went away
	evLoaded                      // detail, paused: the catalog was read
	evLoadFailed                  // err: the catalog could not be read
	evRunDone                     // result, err: the run is over
	evArmed                       // armed, unarmed: autokick was armed
	evSettled                     // left: the settled check is done
	evProbed                      // only probes
)

// event is what happened; probes (outcomes of tries to reach held targets
// that came in meanwhile) may come with any event.
type event struct {
	kind     eventKind
	reason   string
	detail   catalog.SyncDetail
	paused   string           // evLoaded: the pause reason, "" when not paused
	settings catalog.Settings // evLoaded: the settings
	err      error
	result   replicate.Result
	armed    []armed // evArmed: the sources armed
	unarmed  int     // evArmed: the sources that could not be armed
	left     []armed // evSettled: the sources still waiting for writers
	probes   []probed
}

// actionKind says what to do.
type actionKind int

const (
	actLoad         actionKind = iota // read the sync from the catalog: evLoaded or evLoadFailed
	actBoard                          // show state and detail on the controller's line
	actLog                            // log msg with fields at level
	actProbe                          // try to reach db in the background: an event with probes
	actRun                            // run with reason and spec: evRunDone
	actStopKid                        // stop the kid, for reason
	actArm                            // arm autokick on dbs: evArmed
	actCheckSettled                   // check the writers of checks: evSettled
	actStop                           // stop, as asked for reason
	actExit                           // exit on purpose, for reason
)

// action is what to do; which fields count depends on kind.
type action struct {
	kind          actionKind
	state, detail string
	level         zapcore.Level
	msg           string
	fields        []zap.Field
	db            catalog.DB
	reason        string
	spec          replicate.Sync
	forgetEmpty   bool // actRun: an empty run is not worth its record
	attempts      int  // actRun: the kid's tries of the run
	dbs           []catalog.DB
	checks        []settleCheck
}

// stepper is one step in progress.
type stepper struct {
	state
	now  time.Time
	acts []action
}

// step is the controller's decision: from what it knows and what happened
// at now, what it knows next, what to do, and when to look again if
// nothing happens (zero: not before an event).
func step(s state, ev event, now time.Time) (state, []action, time.Time) {
	s.holds = maps.Clone(s.holds)
	p := &stepper{state: s, now: now}
	wake := p.on(ev)
	return p.state, p.acts, wake
}

func (p *stepper) do(a action) { p.acts = append(p.acts, a) }

func (p *stepper) board(state, detail string) {
	p.do(action{kind: actBoard, state: state, detail: detail})
}

func (p *stepper) log(level zapcore.Level, msg string, fields ...zap.Field) {
	p.do(action{kind: actLog, level: level, msg: msg, fields: fields})
}

func (p *stepper) on(ev event) time.Time {
	for _, pr := range ev.probes {
		p.probeDone(pr)
	}
	switch ev.kind {
	case evStart:
		p.started = p.now
		p.kick = reasonStartup // catch up with whatever happened while no controller ran
	case evKick:
		if p.kick == "" || p.kick == reasonStartup {
			p.kick = ev.reason
		}
	case evReload:
		p.loaded = false
	case evStop:
		p.do(action{kind: actStop, reason: ev.reason})
		return time.Time{}
	case evLoaded:
		p.settings = ev.settings
		p.loadDone(ev.detail, ev.paused)
	case evLoadFailed:
		p.failures++
		wait := p.retryPolicy().Delay(p.failures)
		p.board(catalog.ProcessWaiting, fmt.Sprintf("catalog unreachable, retry in %s: %s", wait, oneLine(ev.err.Error())))
		p.log(zapcore.WarnLevel, "cannot read the catalog", zap.Error(ev.err), zap.Duration("retry_in", wait))
		return p.now.Add(wait)
	case evRunDone:
		if p.runDone(ev.result, ev.err) {
			return time.Time{} // arming: its outcome comes next
		}
	case evArmed:
		p.armDone(ev.armed, ev.unarmed)
	case evSettled:
		return p.settleDone(ev.left)
	}
	return p.pass()
}

// pass looks at everything and does what is due.
func (p *stepper) pass() time.Time {
	if p.running != "" {
		return time.Time{} // its outcome first
	}
	if !p.loaded {
		p.do(action{kind: actLoad})
		return time.Time{}
	}
	switch {
	case p.detail.Status != catalog.StatusActive:
		p.board(catalog.ProcessInactive, "")
		return time.Time{}
	case p.paused != "":
		p.board(catalog.ProcessPaused, p.paused)
		p.kick = ""
		return time.Time{}
	case p.inactiveSource() != "":
		// Nothing can be read from it, and its own changes would be
		// missed: the sync waits (its deltas are kept) until it is active.
		db := p.inactiveSource()
		p.board(catalog.ProcessWaiting, fmt.Sprintf("source db %s is inactive: mcp update db %s status=active resumes the sync", db, db))
		return time.Time{}
	}
	p.startProbes()
	reason, check := p.due()
	switch {
	case check:
		var checks []settleCheck
		for _, a := range p.settling {
			if db, ok := p.detail.DBs[a.db]; ok {
				checks = append(checks, settleCheck{armed: a, conn: db})
			}
		}
		p.do(action{kind: actCheckSettled, checks: checks})
		return time.Time{}
	case reason != "":
		p.begin(reason)
		return time.Time{}
	}
	return p.rest()
}

// rest is the end of a pass that ran nothing: exit if planned, and say
// when to look again.
func (p *stepper) rest() time.Time {
	if p.idle() {
		if exit := p.plannedExit(); exit != "" {
			p.do(action{kind: actExit, reason: exit})
			return time.Time{}
		}
		p.board(catalog.ProcessIdle, p.idleDetail())
	}
	return p.nextTimer()
}

// begin starts a run.
func (p *stepper) begin(reason string) {
	p.ranOnce, p.running = true, reason
	p.board(catalog.ProcessRunning, reason)
	p.do(action{kind: actRun, reason: reason, spec: p.withHolds(replicate.SyncFrom(p.detail)), forgetEmpty: forgetEmpty(reason),
		attempts: p.kidAttempts()})
}

// forgetEmpty says whether an empty run for reason is not kept in syncrun.
func forgetEmpty(reason string) bool { return reason == reasonMore || reason == reasonSettle }

func (p *stepper) idle() bool {
	return !p.busy && len(p.settling) == 0 && p.kick == "" && p.retryAt.IsZero()
}

func (p *stepper) idleDetail() string {
	if p.detail.Checktime > 0 && !p.checkAt.IsZero() {
		return "next checktime run in " + p.checkAt.Sub(p.now).Round(time.Second).String()
	}
	return ""
}

// plannedExit says why the controller should exit now that it is idle.
func (p *stepper) plannedExit() string {
	switch {
	case p.detail.Lifetime > 0 && p.now.Sub(p.started) >= p.detail.Lifetime:
		return "lifetime " + p.detail.Lifetime.String() + " reached"
	case p.detail.MaxKicks > 0 && p.kickedRuns >= p.detail.MaxKicks:
		return fmt.Sprintf("maxkicks %d reached", p.detail.MaxKicks)
	case !p.detail.Stayalive && p.ranOnce:
		return "stayalive is off"
	}
	return ""
}

// due returns why to run now, or "", or whether to check first that the
// writers in progress when autokick was armed are done.
func (p *stepper) due() (reason string, check bool) {
	switch {
	case p.kick != "":
		r := p.kick
		p.kick = ""
		if r != reasonStartup {
			p.kickedRuns++
		}
		return r, false
	case p.busy:
		return reasonMore, false
	case !p.retryAt.IsZero() && !p.now.Before(p.retryAt):
		return reasonRetry, false
	case len(p.settling) > 0 && !p.now.Before(p.settleAt):
		return "", true
	case p.detail.Checktime > 0 && !p.checkAt.IsZero() && !p.now.Before(p.checkAt):
		return reasonChecking, false
	}
	return "", false
}

// nextTimer is when to look again without an event (zero: never).
func (p *stepper) nextTimer() time.Time {
	var next time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	earliest(p.retryAt)
	earliest(p.nextProbe())
	if len(p.settling) > 0 {
		earliest(p.settleAt)
	}
	if p.detail.Checktime > 0 {
		earliest(p.checkAt)
	}
	if p.detail.Lifetime > 0 {
		earliest(p.started.Add(p.detail.Lifetime))
	}
	return next
}

// loadDone takes the sync as the catalog has it now.
func (p *stepper) loadDone(d catalog.SyncDetail, paused string) {
	held := p.paused != "" || p.detail.Status == catalog.StatusInactive
	back := reactivated(p.detail, d)
	p.detail, p.paused, p.loaded = d, paused, true
	if back != "" && p.kick == "" {
		p.kick = "db " + back + " active again"
	}
	// Settings may have changed: try the targets left out now.
	for db, h := range p.holds {
		if !h.next.IsZero() {
			h.next = p.now
			p.holds[db] = h
		}
	}
	if held && p.paused == "" && p.detail.Status == catalog.StatusActive && p.kick == "" {
		// Kicks were dropped while it was held, and the mark is disarmed.
		p.kick = "resumed"
	}
	if p.detail.Checktime > 0 && p.checkAt.IsZero() {
		p.checkAt = p.now.Add(p.detail.Checktime)
	}
}

// runDone takes the outcome of the run; it reports whether it arms
// autokick (whose outcome comes next).
func (p *stepper) runDone(res replicate.Result, err error) (arming bool) {
	reason := p.running
	p.running = ""
	o := runs.Classify(err)
	if len(o.Lost) > 0 {
		p.noteTargets(res, o.Lost)
	} else if err == nil {
		p.noteTargets(res, nil)
	}
	if p.detail.Checktime > 0 {
		p.checkAt = p.now.Add(p.detail.Checktime)
	}
	if !p.detail.Kidsalive {
		p.do(action{kind: actStopKid, reason: "kidsalive is off"})
	}
	var paused *catalog.PausedError
	switch {
	case errors.As(err, &paused):
		// Paused after the catalog was last read: StartRun refused the run
		// (mcp pause counts on that); wait as a paused sync does.
		p.busy, p.settling, p.kick = false, nil, ""
		p.paused = paused.Reason
		if p.paused == "" {
			p.paused = "paused"
		}
		return false // the pass shows it paused
	case o.Kind == runs.Cancelled:
		// Not a failure: the next kick or checktime runs it again.
		p.busy, p.settling, p.failures, p.retryAt = false, nil, 0, time.Time{}
		p.log(zapcore.InfoLevel, "run cancelled", zap.String("reason", reason), zap.String("why", oneLine(err.Error())))
		return false
	case err != nil:
		p.busy, p.settling = false, nil
		p.failures++
		wait := p.retryPolicy().Delay(p.failures)
		p.retryAt = p.now.Add(wait)
		msg := oneLine(err.Error())
		if o.Kind == runs.ConflictAbort {
			// The run paused the sync (catalog.FinishRun): the pass shows it.
			p.retryAt = time.Time{}
			p.paused = msg
			return false
		}
		p.board(catalog.ProcessRetrying, fmt.Sprintf("run failed, retry in %s: %s", wait, msg))
		p.log(zapcore.WarnLevel, "run failed", zap.String("reason", reason), zap.String("error", msg), zap.Duration("retry_in", wait))
		return false
	}
	p.failures, p.retryAt = 0, time.Time{}
	if res.OneTimeCopyDone && !(forgetEmpty(reason) && res.Empty()) {
		p.loaded = false // the run cleared onetimecopy
	}
	switch {
	case !p.detail.HasDeltaRole():
		// fullcopy only: each run copies everything, so run only when asked.
		p.busy, p.settling = false, nil
	case !res.Empty():
		p.busy, p.settling = true, nil
	case reason == reasonSettle:
		p.busy, p.settling = false, nil
	default:
		p.busy = false
		if p.detail.Autokick {
			p.settling = nil
			p.do(action{kind: actArm, dbs: p.detail.Sources()})
			return true
		}
	}
	return false
}

// armDone takes the sources armed; one that could not be armed may not
// kick: the loop polls it by retrying.
func (p *stepper) armDone(as []armed, unarmed int) {
	p.settling = as
	for range unarmed {
		p.failures++
		p.retryAt = p.now.Add(p.retryPolicy().Delay(p.failures))
	}
	p.settleWait = 5 * time.Millisecond
	p.settleAt = p.now
}

// settleDone takes the sources whose writers of the arming moment are not
// all done: none left, the settle run starts.
func (p *stepper) settleDone(left []armed) time.Time {
	p.settling = left
	if len(left) == 0 {
		p.begin(reasonSettle)
		return time.Time{}
	}
	p.settleWait = min(p.settleWait*2, time.Second)
	p.settleAt = p.now.Add(p.settleWait)
	p.board(catalog.ProcessSettling, fmt.Sprintf("waiting for transactions in progress on %d db(s)", len(left)))
	return p.rest()
}

// inactiveSource names a source db of the sync whose status is inactive.
func (p *stepper) inactiveSource() string {
	for _, m := range p.detail.Members {
		if m.Role == replicate.RoleSource && p.detail.DBs[m.DB].Status == catalog.StatusInactive {
			return m.DB
		}
	}
	return ""
}

// reactivated names a db of the sync that was inactive in before and is
// active in after ("" when none).
func reactivated(before, after catalog.SyncDetail) string {
	for _, m := range after.Members {
		was, ok := before.DBs[m.DB]
		if ok && was.Status == catalog.StatusInactive && after.DBs[m.DB].Status == catalog.StatusActive {
			return m.DB
		}
	}
	return ""
}

// startProbes tries to reach every held target whose next try is due.
func (p *stepper) startProbes() {
	if next := p.nextProbe(); next.IsZero() || p.now.Before(next) {
		return
	}
	for name, h := range p.holds {
		if p.now.Before(h.next) {
			continue
		}
		db, ok := p.detail.DBs[name]
		if !ok { // no longer a db of the sync
			delete(p.holds, name)
			continue
		}
		h.next = time.Time{}
		p.holds[name] = h
		p.do(action{kind: actProbe, db: db})
	}
}

// probeDone takes the outcome of a try: a target that answered is no
// longer held, and a run catches it up now; else it is tried later.
func (p *stepper) probeDone(pr probed) {
	h, ok := p.holds[pr.db]
	switch {
	case !ok:
	case pr.err == nil:
		p.log(zapcore.InfoLevel, "target reachable again: a run catches it up", zap.String("db", pr.db))
		delete(p.holds, pr.db)
		if p.kick == "" {
			p.kick = "target " + pr.db + " reachable again"
		}
	default:
		h.tries++
		h.next, h.reason = p.now.Add(p.holdPolicy().Delay(h.tries)), "unreachable: "+oneLine(pr.err.Error())
		p.holds[pr.db] = h
	}
}

// noteTargets updates the holds after a run: a target it could not reach,
// or whose connection broke, is left out of the runs for a while, longer
// each time; one it reached is no longer.
func (p *stepper) noteTargets(res replicate.Result, lost []string) {
	if p.holds == nil {
		p.holds = map[string]hold{}
	}
	skipped := map[string]string{}
	for _, s := range res.Skipped {
		skipped[s.DB] = s.Reason
	}
	unreachable := func(db, reason string) {
		h, ok := p.holds[db]
		if !ok {
			p.log(zapcore.WarnLevel, "target unreachable: runs leave it out, and it catches up once back", zap.String("db", db), zap.String("reason", reason))
		}
		h.tries++
		h.next, h.reason = p.now.Add(p.holdPolicy().Delay(h.tries)), reason
		p.holds[db] = h
	}
	for _, db := range lost {
		unreachable(db, "its connection broke during a run")
	}
	if len(lost) == 0 {
		for _, m := range p.detail.Members {
			if m.Role == replicate.RoleSource {
				continue
			}
			// A held target was left out without a try: its own tries tell.
			if reason, left := skipped[m.DB]; left && !p.held(m.DB) && strings.HasPrefix(reason, "unreachable") {
				unreachable(m.DB, reason)
			}
		}
	}
}

func (p *stepper) held(db string) bool {
	_, ok := p.holds[db]
	return ok
}

// nextProbe is the earliest due try of a held target (zero when none: no
// target held, or every try out).
func (p *stepper) nextProbe() time.Time {
	var next time.Time
	for _, h := range p.holds {
		if !h.next.IsZero() && (next.IsZero() || h.next.Before(next)) {
			next = h.next
		}
	}
	return next
}

// withHolds is the run's specification with the held targets left out:
// the loop's own tries find when they are back.
func (p *stepper) withHolds(s replicate.Sync) replicate.Sync {
	for i := range s.DBs {
		h, ok := p.holds[s.DBs[i].Name]
		if !ok || s.DBs[i].Role == replicate.RoleSource {
			continue
		}
		s.DBs[i].Hold = "not reached lately, tried again every few seconds: " + h.reason
	}
	return s
}
