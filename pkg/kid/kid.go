// Package kid is the process that does the replication work of one sync: it
// serves gobucardo.kid.v1 to its controller over its stdin/stdout, one run at
// a time, streaming the run's progress, and logs the run's conflicts in the
// main database.
package kid

import (
	"context"
	"net"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gobucardo/gobucardo/pkg/ipc"
	"github.com/gobucardo/gobucardo/pkg/ipc/kidcodec"
	"github.com/gobucardo/gobucardo/pkg/ipc/kidpb"
	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/pluginhost"
	"github.com/gobucardo/gobucardo/pkg/replicate"
	"github.com/gobucardo/gobucardo/pkg/runs"
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
	// sessions are the database sessions kept from one run to the next
	// (the kid lives on between runs with kidsalive).
	sessions *replicate.Sessions

	mu      sync.Mutex
	cfg     *kidpb.Config
	running bool
	stop    sync.Once
}

// New returns a kid logging to log, whose level Configure sets.
func New(log *zap.Logger, level zap.AtomicLevel) *Server {
	return &Server{log: log, level: level, Stopped: make(chan struct{}), plugins: pluginhost.New(log), sessions: replicate.NewSessions()}
}

// pluginsEvent lists the running plugins for the controller's `mcp ps`,
// with the plugin calls made since the previous one (for the run's end).
func (s *Server) pluginsEvent() *kidpb.RunEvent {
	var ps []*kidpb.Plugin
	for _, p := range s.plugins.Processes() {
		ps = append(ps, &kidpb.Plugin{Code: p.Code, Pid: int32(p.PID)})
	}
	return kidcodec.EncodePlugins(ps, s.plugins.TakeCalls())
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
	spec := kidcodec.DecodeSync(req.GetSync())
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
		_ = send(kidcodec.EncodeProgress(p))
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
	attempts := int(req.GetAttempts())
	if attempts < 1 {
		attempts = 1
	}
	handlers, err := s.plugins.Load(ctx, spec.CustomCode)
	_ = send(s.pluginsEvent())
	var res replicate.Result
	if err == nil {
		opts := replicate.Options{Progress: progress, ProgressEvery: 250 * time.Millisecond, Log: log, Handlers: handlers, Sessions: s.sessions}
		runs.Sink(ctx, main, spec.Name, req.GetRunId(), &opts)
		res, err = replicate.RunRetrying(ctx, spec, opts, attempts)
		_ = send(s.pluginsEvent())
	}
	// The passwords, to redact from a failure (parsing every DSN at every
	// run took a tenth of a kid's CPU at 5 runs/s).
	var secrets []string
	if err != nil {
		secrets = append(spec.Secrets(), pg.Password(cfg.GetMainDsn()))
		log.Warn("run failed", zap.String("error", pg.RedactError(err, secrets...).Error()))
	} else {
		log.Debug("run done", zap.String("result", res.Summary()))
	}
	return send(kidcodec.EncodeOutcome(res, err, secrets...))
}

// Serve serves the kid over conn (see ipc.Claim) until the controller goes
// away, asks it to stop, or ctx is done (SIGTERM: the run in progress is
// rolled back).
func Serve(ctx context.Context, conn net.Conn, log *zap.Logger, level zap.AtomicLevel) error {
	srv := ipc.NewServer()
	k := New(log, level)
	defer k.plugins.Close()
	defer k.sessions.Close(context.WithoutCancel(ctx))
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
