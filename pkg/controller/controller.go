// Package controller schedules the runs of one sync: it takes kicks from the
// MCP, runs on checktime, retries failed runs with capped backoff, honours
// pause, stayalive, kidsalive, lifetime and maxkicks, starts and supervises
// its kid, records every run in gobucardo.syncrun, and re-arms autokick when
// the sync goes idle. It serves gobucardo.ctl.v1 to the MCP over its
// stdin/stdout.
//
// Its decisions are one pure function, step (step.go): what it knows, what
// happened and the time in; what it knows next, what to do and when to
// look again out. The loop (loop.go) performs the actions (a run, reading
// the catalog, arming autokick, ...) and feeds their outcomes back as
// events.
package controller

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/ipc"
	"github.com/gobucardo/gobucardo/pkg/ipc/ctlpb"
	"github.com/gobucardo/gobucardo/pkg/version"
)

// Server implements ctlpb.ControllerServer; the scheduling is in loop.
type Server struct {
	ctlpb.UnimplementedControllerServer
	log   *zap.Logger
	level zap.AtomicLevel
	sync  string
	board *board

	configured chan *ctlpb.Config // receives the one configuration
	kicks      chan string        // reasons; buffered, coalesced by the loop
	kickMu     sync.Mutex         // orders Kick with closeKicks
	kicksShut  bool               // the loop exits on purpose: Kick refuses
	reloads    chan struct{}
	stops      chan string
	once       sync.Once
	quit       chan struct{} // closed when the loop is over: Watch streams end
}

// New returns the controller of sync.
func New(log *zap.Logger, level zap.AtomicLevel, syncName string) *Server {
	return &Server{
		log: log, level: level, sync: syncName,
		board:      newBoard(os.Getpid(), os.Getppid()),
		configured: make(chan *ctlpb.Config, 1),
		kicks:      make(chan string, 64),
		reloads:    make(chan struct{}, 1),
		stops:      make(chan string, 1),
		quit:       make(chan struct{}),
	}
}

// Configure takes the configuration; only the first call counts.
func (s *Server) Configure(_ context.Context, c *ctlpb.Config) (*ctlpb.Hello, error) {
	if c.GetSync() != s.sync {
		return nil, status.Errorf(codes.InvalidArgument, "this controller is for sync %s, not %s", s.sync, c.GetSync())
	}
	if c.GetLogLevel() != "" {
		if err := s.level.UnmarshalText([]byte(c.GetLogLevel())); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "log level: %v", err)
		}
	}
	first := false
	s.once.Do(func() { first = true; s.configured <- c })
	if !first {
		return nil, status.Error(codes.FailedPrecondition, "already configured")
	}
	return &ctlpb.Hello{Pid: int32(os.Getpid()), Version: version.Version}, nil
}

// errKicksShut refuses a kick once the loop exits on purpose: the MCP,
// told so, starts a new controller for it rather than losing it.
var errKicksShut = status.Error(codes.Unavailable, "controller exiting: kick not taken")

// Kick asks for a run; once the loop exits on purpose it refuses
// (errKicksShut), so that no kick it took in is left unrun.
func (s *Server) Kick(_ context.Context, r *ctlpb.KickRequest) (*ctlpb.KickReply, error) {
	s.kickMu.Lock()
	defer s.kickMu.Unlock()
	if s.kicksShut {
		return nil, errKicksShut
	}
	select {
	case s.kicks <- r.GetReason():
	default: // plenty already queued: they coalesce anyway
	}
	return &ctlpb.KickReply{}, nil
}

// closeKicks is the last look at the kicks before a planned exit: a kick
// taken in meanwhile (during the last runs, which chain without reading
// them) is returned, and the loop runs it instead of exiting; none, and
// Kick refuses from now on.
func (s *Server) closeKicks() (reason string, pending bool) {
	s.kickMu.Lock()
	defer s.kickMu.Unlock()
	select {
	case reason = <-s.kicks:
		return reason, true
	default:
		s.kicksShut = true
		return "", false
	}
}

// Reload makes the loop reread the sync before its next run.
func (s *Server) Reload(context.Context, *ctlpb.ReloadRequest) (*ctlpb.ReloadReply, error) {
	select {
	case s.reloads <- struct{}{}:
	default:
	}
	return &ctlpb.ReloadReply{}, nil
}

// Stop makes the loop finish its run, stop the kid and return.
func (s *Server) Stop(_ context.Context, r *ctlpb.StopRequest) (*ctlpb.StopReply, error) {
	select {
	case s.stops <- r.GetReason():
	default:
	}
	return &ctlpb.StopReply{}, nil
}

// Watch streams the process states.
func (s *Server) Watch(_ *ctlpb.WatchRequest, stream ctlpb.Controller_WatchServer) error {
	for {
		state, changed := s.board.snapshot()
		if err := stream.Send(state); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-s.quit:
			return nil
		case <-changed:
		}
		// Coalesce bursts of changes (progress) into at most ten a second.
		select {
		case <-stream.Context().Done():
			return nil
		case <-s.quit:
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Serve serves the controller over conn (see ipc.Claim) and runs its loop
// until the MCP asks it to stop or goes away, or ctx is done. kidOut receives
// the kid's stderr lines.
func Serve(ctx context.Context, conn net.Conn, log *zap.Logger, level zap.AtomicLevel, syncName string, kidOut func([]byte)) error {
	s := New(log, level, syncName)
	srv := ipc.NewServer()
	ctlpb.RegisterControllerServer(srv, s)
	served := make(chan error, 1)
	go func() { served <- ipc.Serve(conn, srv) }()

	var cfg *ctlpb.Config
	select {
	case cfg = <-s.configured:
	case err := <-served:
		return err // the MCP went away before configuring us
	case <-ctx.Done():
		srv.Stop()
		return nil
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// The MCP gone (stdin EOF) ends the loop like a stop.
		if err := <-served; err != nil {
			log.Warn("rpc transport ended", zap.Error(err))
		}
		cancel()
	}()
	l := &loop{Server: s, cfg: cfg, kidOut: kidOut, main: catalog.Conn{DSN: cfg.GetMainDsn()}}
	err := l.run(lctx)
	close(s.quit)
	srv.GracefulStop()
	return err
}

// errExit ends the loop on purpose (lifetime, maxkicks, stayalive=false): the
// MCP starts a new controller when one is needed.
var errExit = errors.New("planned exit")

// IsPlannedExit reports whether Serve's error is a planned exit.
func IsPlannedExit(err error) bool { return errors.Is(err, errExit) }

// oneLine keeps an error message on one line for state details.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
