package kidcodec

import (
	"time"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/ipc/kidpb"
	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/replicate"
	"github.com/gobucardo/gobucardo/pkg/runs"
)

// EncodeSync is the run's specification for the kid.
func EncodeSync(s replicate.Sync) *kidpb.Sync {
	p := &kidpb.Sync{Name: s.Name, OneTimeCopy: int32(s.OneTimeCopy), CommitEvery: int32(s.CommitEvery),
		IsolationLevel: s.IsolationLevel, DeleteMethod: s.DeleteMethod, ConflictStrategy: s.ConflictStrategy}
	for _, d := range s.DBs {
		p.Dbs = append(p.Dbs, &kidpb.DB{Name: d.Name, Role: d.Role, ConnString: d.ConnString, MakeDelta: d.MakeDelta, Inactive: d.Inactive,
			Hold: d.Hold})
	}
	for _, r := range s.Relations {
		p.Relations = append(p.Relations, &kidpb.Relation{Schema: r.Schema, Name: r.Name, Sequence: r.Sequence,
			KeyColumns: r.KeyColumns, ConflictStrategy: r.ConflictStrategy, MakeDelta: r.MakeDelta, Lenient: r.Lenient})
	}
	for _, c := range s.CustomCode {
		p.CustomCode = append(p.CustomCode, &kidpb.CustomCode{Name: c.Name, Plugin: c.Plugin, Sha256: c.SHA256, Whenrun: c.WhenRun,
			Priority: int32(c.Priority), Settings: c.Settings, TimeoutMs: c.Timeout.Milliseconds(), Schema: c.Schema, Table: c.Table})
	}
	return p
}

// DecodeSync is the run's specification as the controller sent it.
func DecodeSync(p *kidpb.Sync) replicate.Sync {
	s := replicate.Sync{Name: p.GetName(), OneTimeCopy: int(p.GetOneTimeCopy()), CommitEvery: int(p.GetCommitEvery()),
		IsolationLevel: p.GetIsolationLevel(), DeleteMethod: p.GetDeleteMethod(), ConflictStrategy: p.GetConflictStrategy()}
	for _, d := range p.GetDbs() {
		s.DBs = append(s.DBs, replicate.DB{Name: d.GetName(), Role: d.GetRole(), ConnString: d.GetConnString(), MakeDelta: d.GetMakeDelta(),
			Inactive: d.GetInactive(), Hold: d.GetHold()})
	}
	for _, r := range p.GetRelations() {
		s.Relations = append(s.Relations, replicate.Relation{Schema: r.GetSchema(), Name: r.GetName(), Sequence: r.GetSequence(),
			KeyColumns: r.GetKeyColumns(), ConflictStrategy: r.GetConflictStrategy(), MakeDelta: r.MakeDelta, Lenient: r.GetLenient()})
	}
	for _, c := range p.GetCustomCode() {
		s.CustomCode = append(s.CustomCode, replicate.CustomCode{Name: c.GetName(), Plugin: c.GetPlugin(), SHA256: c.GetSha256(),
			WhenRun: c.GetWhenrun(), Priority: int(c.GetPriority()), Settings: c.GetSettings(),
			Timeout: time.Duration(c.GetTimeoutMs()) * time.Millisecond, Schema: c.GetSchema(), Table: c.GetTable()})
	}
	return s
}

// EncodeOutcome is the last event of a run that ended with res and err: a
// Result, or a Failure with the partial result, its kind, the targets lost
// and the message with the secrets removed.
func EncodeOutcome(res replicate.Result, err error, secrets ...string) *kidpb.RunEvent {
	out := encodeResult(res)
	if err == nil {
		return &kidpb.RunEvent{Event: &kidpb.RunEvent_Result{Result: out}}
	}
	o := runs.Classify(err)
	kind := kidpb.Failure_KIND_ERROR
	switch o.Kind {
	case runs.ConflictAbort:
		kind = kidpb.Failure_KIND_CONFLICT_ABORT
	case runs.Cancelled:
		kind = kidpb.Failure_KIND_CANCELLED
	}
	msg := pg.RedactError(err, secrets...).Error()
	return &kidpb.RunEvent{Event: &kidpb.RunEvent_Failure{Failure: &kidpb.Failure{Kind: kind, Message: msg, Partial: out,
		LostTargets: o.Lost}}}
}

// DecodeOutcome reads a run's last event: its result, and its error (nil
// for a Result; for a Failure one whose message is the kid's and that
// runs.Classify reads as the kid did). ok is false for any other event.
func DecodeOutcome(ev *kidpb.RunEvent) (res replicate.Result, ok bool, err error) {
	switch e := ev.GetEvent().(type) {
	case *kidpb.RunEvent_Result:
		return decodeResult(e.Result), true, nil
	case *kidpb.RunEvent_Failure:
		f := e.Failure
		err = &remoteError{msg: f.GetMessage(), kind: f.GetKind()}
		if lost := f.GetLostTargets(); len(lost) > 0 {
			err = &replicate.TargetsLostError{DBs: lost, Err: err}
		}
		return decodeResult(f.GetPartial()), true, err
	}
	return replicate.Result{}, false, nil
}

// remoteError is a run's error as the kid sent it.
type remoteError struct {
	msg  string
	kind kidpb.Failure_Kind
}

func (e *remoteError) Error() string { return e.msg }

// Is makes errors.Is(err, replicate.ErrCancelled) and
// errors.Is(err, replicate.ErrConflictAbort) hold as they did in the kid.
func (e *remoteError) Is(target error) bool {
	switch e.kind {
	case kidpb.Failure_KIND_CANCELLED:
		return target == replicate.ErrCancelled
	case kidpb.Failure_KIND_CONFLICT_ABORT:
		return target == replicate.ErrConflictAbort
	}
	return false
}

func encodeResult(r replicate.Result) *kidpb.Result {
	p := &kidpb.Result{Deletes: r.Deletes, Inserts: r.Inserts, Truncates: r.Truncates, Conflicts: r.Conflicts,
		DurationUs: r.Duration.Microseconds(), OneTimeCopyDone: r.OneTimeCopyDone, Parked: r.Parked, CaughtUp: r.CaughtUp,
		OmittedColumns: r.OmittedColumns}
	for _, s := range r.Skipped {
		p.Skipped = append(p.Skipped, &kidpb.Skipped{Db: s.DB, Reason: s.Reason})
	}
	for _, t := range r.Tables {
		p.Tables = append(p.Tables, &kidpb.TableResult{Table: t.Table, Mode: t.Mode, Keys: t.Keys, Deletes: t.Deletes,
			Inserts: t.Inserts, Truncated: t.Truncated, Conflicts: t.Conflicts})
	}
	return p
}

func decodeResult(r *kidpb.Result) replicate.Result {
	res := replicate.Result{Deletes: r.GetDeletes(), Inserts: r.GetInserts(), Truncates: r.GetTruncates(),
		Conflicts: r.GetConflicts(), Duration: time.Duration(r.GetDurationUs()) * time.Microsecond,
		OneTimeCopyDone: r.GetOneTimeCopyDone(), Parked: r.GetParked(), CaughtUp: r.GetCaughtUp(),
		OmittedColumns: r.GetOmittedColumns()}
	for _, s := range r.GetSkipped() {
		res.Skipped = append(res.Skipped, replicate.Skipped{DB: s.GetDb(), Reason: s.GetReason()})
	}
	for _, t := range r.GetTables() {
		res.Tables = append(res.Tables, replicate.TableResult{Table: t.GetTable(), Mode: t.GetMode(), Keys: t.GetKeys(),
			Deletes: t.GetDeletes(), Inserts: t.GetInserts(), Truncated: t.GetTruncated(), Conflicts: t.GetConflicts()})
	}
	return res
}

// EncodeProgress is a progress event of the run.
func EncodeProgress(p replicate.Progress) *kidpb.RunEvent {
	return &kidpb.RunEvent{Event: &kidpb.RunEvent_Progress{Progress: &kidpb.Progress{
		Table: p.Table, Phase: p.Phase, Rows: p.Rows, Total: p.Total}}}
}

// DecodeProgress reads a progress event; ok is false for any other event.
func DecodeProgress(ev *kidpb.RunEvent) (p replicate.Progress, ok bool) {
	e, ok := ev.GetEvent().(*kidpb.RunEvent_Progress)
	if !ok {
		return replicate.Progress{}, false
	}
	return replicate.Progress{Table: e.Progress.GetTable(), Phase: e.Progress.GetPhase(), Rows: e.Progress.GetRows(),
		Total: e.Progress.GetTotal()}, true
}

// EncodePlugins is the kid's running plugins (for mcp ps) and the calls
// made to them since its previous Plugins event.
func EncodePlugins(ps []*kidpb.Plugin, calls []catalog.PluginCalls) *kidpb.RunEvent {
	p := &kidpb.Plugins{Plugins: ps}
	for _, c := range calls {
		p.Calls = append(p.Calls, &kidpb.PluginCalls{Code: c.Code, Outcome: c.Outcome, Calls: c.Calls, Seconds: c.Seconds})
	}
	return &kidpb.RunEvent{Event: &kidpb.RunEvent_Plugins{Plugins: p}}
}

// DecodePluginCalls reads the plugin calls of a Plugins event; none for any
// other event.
func DecodePluginCalls(ev *kidpb.RunEvent) []catalog.PluginCalls {
	var out []catalog.PluginCalls
	for _, c := range ev.GetPlugins().GetCalls() {
		out = append(out, catalog.PluginCalls{Code: c.GetCode(), Outcome: c.GetOutcome(), Calls: c.GetCalls(), Seconds: c.GetSeconds()})
	}
	return out
}
