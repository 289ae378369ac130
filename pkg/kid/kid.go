// Package kid is the process that does the replication work of one sync: it
// serves gobucardo.kid.v1 to its controller over its stdin/stdout, one run at
// a time, streaming the run's progress, and logs the run's conflicts in the
// main database.
package kid

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/ipc"
	"github.com/gobucardo/gobucardo/pkg/ipc/kidpb"
	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/pluginhost"
	"github.com/gobucardo/gobucardo/pkg/replicate"
	"github.com/gobucardo/gobucardo/pkg/version"
)

// Server implements kidpb.KidServer.
type Server struct {
	kidpb.UnimplementedKidServer
	log   *zap.Logger
	level zap.AtomicLevel
	// Stopped is closed when the controller asked the kid to stop.
	Stopped chan struct{}

	plugins *pluginhost.Host

	mu      sync.Mutex
	cfg     *kidpb.Config
	running bool
	stop    sync.Once
}

// New returns a kid logging to log, whose level Configure sets.
func New(log *zap.Logger, level zap.AtomicLevel) *Server {
	return &Server{log: log, level: level, Stopped: make(chan struct{}), plugins: pluginhost.New(log)}
}

// pluginsEvent lists the running plugins for the controller's `mcp ps`.
func (s *Server) pluginsEvent() *kidpb.RunEvent {
	var ps []*kidpb.Plugin
	for _, p := range s.plugins.Processes() {
		ps = append(ps, &kidpb.Plugin{Code: p.Code, Pid: int32(p.PID)})
	}
	return &kidpb.RunEvent{Event: &kidpb.RunEvent_Plugins{Plugins: &kidpb.Plugins{Plugins: ps}}}
}

// Configure records the configuration; it must come first.
func (s *Server) Configure(_ context.Context, c *kidpb.Config) (*kidpb.Hello, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = c
	if c.GetLogLevel() != "" {
		if err := s.level.UnmarshalText([]byte(c.GetLogLevel())); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "log level: %v", err)
		}
	}
	return &kidpb.Hello{Pid: int32(os.Getpid()), Version: version.Version}, nil
}

// Stop closes Stopped; the caller's main loop then stops serving once the
// run in progress is over.
func (s *Server) Stop(_ context.Context, r *kidpb.StopRequest) (*kidpb.StopReply, error) {
	s.log.Info("asked to stop", zap.String("reason", r.GetReason()))
	s.stop.Do(func() { close(s.Stopped) })
	return &kidpb.StopReply{}, nil
}

// Run does one run of the sync it is given.
func (s *Server) Run(req *kidpb.RunRequest, stream kidpb.Kid_RunServer) error {
	s.mu.Lock()
	cfg, busy := s.cfg, s.running
	if cfg == nil {
		s.mu.Unlock()
		return status.Error(codes.FailedPrecondition, "Configure first")
	}
	if busy {
		s.mu.Unlock()
		return status.Error(codes.FailedPrecondition, "a run is in progress")
	}
	s.running = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()

	ctx := stream.Context()
	spec := SyncFromProto(req.GetSync())
	log := s.log.With(zap.Int64("run", req.GetRunId()))
	var sendMu sync.Mutex
	send := func(ev *kidpb.RunEvent) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(ev)
	}
	// Progress: every phase change at once, copies at most 5 times a second.
	var last replicate.Progress
	var lastSent time.Time
	progress := func(p replicate.Progress) {
		if p.Phase == last.Phase && p.Table == last.Table && time.Since(lastSent) < 200*time.Millisecond {
			return
		}
		last, lastSent = p, time.Now()
		_ = send(&kidpb.RunEvent{Event: &kidpb.RunEvent_Progress{Progress: &kidpb.Progress{
			Table: p.Table, Phase: p.Phase, Rows: p.Rows, Total: p.Total}}})
	}
	// The main database is reached only when the run has conflicts to log
	// or rows to park.
	var mainConn *pgx.Conn
	defer func() {
		if mainConn != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = mainConn.Close(cctx)
		}
	}()
	main := func() (*pgx.Conn, error) {
		if mainConn == nil {
			c, err := pg.Connect(ctx, cfg.GetMainDsn())
			if err != nil {
				return nil, err
			}
			mainConn = c
		}
		return mainConn, nil
	}
	conflicts := func(cs []replicate.Conflict) error {
		conn, err := main()
		if err != nil {
			return err
		}
		return catalog.LogConflicts(ctx, conn, req.GetRunId(), spec.Name, replicate.ConflictRecords(cs))
	}
	parked := func(ps []replicate.Parked) error {
		conn, err := main()
		if err != nil {
			return err
		}
		return catalog.Park(ctx, conn, req.GetRunId(), replicate.ParkedRecords(ps))
	}
	attempts := int(req.GetAttempts())
	if attempts < 1 {
		attempts = 1
	}
	handlers, err := s.plugins.Load(ctx, spec.CustomCode)
	_ = send(s.pluginsEvent())
	if err != nil {
		msg := pg.RedactError(err, append(spec.Secrets(), pg.Password(cfg.GetMainDsn()))...).Error()
		log.Warn("run failed", zap.String("error", msg))
		return send(&kidpb.RunEvent{Event: &kidpb.RunEvent_Failure{Failure: &kidpb.Failure{Kind: kidpb.Failure_KIND_ERROR, Message: msg}}})
	}
	opts := replicate.Options{Progress: progress, ProgressEvery: 250 * time.Millisecond, Log: log, Conflicts: conflicts,
		Handlers: handlers, Parked: parked}
	res, err := replicate.RunRetrying(ctx, spec, opts, attempts)
	_ = send(s.pluginsEvent())
	out := resultToProto(res)
	if err != nil {
		kind := kidpb.Failure_KIND_ERROR
		switch {
		case errors.Is(err, replicate.ErrConflictAbort):
			kind = kidpb.Failure_KIND_CONFLICT_ABORT
		case errors.Is(err, replicate.ErrCancelled):
			kind = kidpb.Failure_KIND_CANCELLED
		}
		msg := pg.RedactError(err, append(spec.Secrets(), pg.Password(cfg.GetMainDsn()))...).Error()
		log.Warn("run failed", zap.String("error", msg))
		failure := &kidpb.Failure{Kind: kind, Message: msg, Partial: out}
		var lost *replicate.TargetsLostError
		if errors.As(err, &lost) {
			failure.LostTargets = lost.DBs
		}
		return send(&kidpb.RunEvent{Event: &kidpb.RunEvent_Failure{Failure: failure}})
	}
	log.Debug("run done", zap.String("result", res.Summary()))
	return send(&kidpb.RunEvent{Event: &kidpb.RunEvent_Result{Result: out}})
}

func resultToProto(r replicate.Result) *kidpb.Result {
	p := &kidpb.Result{Deletes: r.Deletes, Inserts: r.Inserts, Truncates: r.Truncates, Conflicts: r.Conflicts,
		DurationUs: r.Duration.Microseconds(), OneTimeCopyDone: r.OneTimeCopyDone, Tables: int32(len(r.Tables)), Parked: r.Parked,
		CaughtUp: r.CaughtUp}
	for _, s := range r.Skipped {
		p.Skipped = append(p.Skipped, &kidpb.Skipped{Db: s.DB, Reason: s.Reason})
	}
	return p
}

// SyncFromProto is the run's specification as the controller sent it.
func SyncFromProto(p *kidpb.Sync) replicate.Sync {
	s := replicate.Sync{Name: p.GetName(), OneTimeCopy: int(p.GetOneTimeCopy()), CommitEvery: int(p.GetCommitEvery()),
		IsolationLevel: p.GetIsolationLevel(), DeleteMethod: p.GetDeleteMethod(), ConflictStrategy: p.GetConflictStrategy()}
	for _, d := range p.GetDbs() {
		s.DBs = append(s.DBs, replicate.DB{Name: d.GetName(), Role: d.GetRole(), ConnString: d.GetConnString(), MakeDelta: d.GetMakeDelta(),
			Inactive: d.GetInactive(), Hold: d.GetHold()})
	}
	for _, r := range p.GetRelations() {
		s.Relations = append(s.Relations, replicate.Relation{Schema: r.GetSchema(), Name: r.GetName(), Sequence: r.GetSequence(),
			KeyColumns: r.GetKeyColumns(), ConflictStrategy: r.GetConflictStrategy(), MakeDelta: r.MakeDelta})
	}
	for _, c := range p.GetCustomCode() {
		s.CustomCode = append(s.CustomCode, replicate.CustomCode{Name: c.GetName(), Plugin: c.GetPlugin(), SHA256: c.GetSha256(),
			WhenRun: c.GetWhenrun(), Priority: int(c.GetPriority()), Settings: c.GetSettings(),
			Timeout: time.Duration(c.GetTimeoutMs()) * time.Millisecond, Schema: c.GetSchema(), Table: c.GetTable()})
	}
	return s
}

// Serve serves the kid over conn (see ipc.Claim) until the controller goes
// away, asks it to stop, or ctx is done (SIGTERM: the run in progress is
// rolled back).
func Serve(ctx context.Context, conn net.Conn, log *zap.Logger, level zap.AtomicLevel) error {
	srv := ipc.NewServer()
	k := New(log, level)
	defer k.plugins.Close()
	kidpb.RegisterKidServer(srv, k)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-k.Stopped:
			srv.GracefulStop()
		case <-ctx.Done():
			srv.Stop()
		case <-done:
		}
	}()
	return ipc.Serve(conn, srv)
}
