package sdk

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/gobucardo/gobucardo/pkg/sdk/internal/handlerpb"
)

// server is the plugin side of the protocol: it decodes the host's calls,
// calls the handlers and encodes their answers. A handler's error, or panic,
// travels as a HandlerError in the reply; gRPC errors are left for the
// transport, a missing handler (UNIMPLEMENTED) and a request no host would
// send (INVALID_ARGUMENT).
type server struct {
	pb.UnimplementedHandlerServer
	p   Plugin
	log hclog.Logger
}

// Log field names.
const (
	logCall        = "call"
	logPanic       = "panic"
	logStack       = "stack"
	logVersion     = "version"
	logHostVersion = "host_version"
)

func newServer(p Plugin, log hclog.Logger) *server {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &server{p: p, log: log}
}

func (s *server) Capabilities(_ context.Context, req *pb.CapabilitiesRequest) (*pb.CapabilitiesReply, error) {
	if v := req.GetHostVersion(); v != ProtocolVersion {
		s.log.Warn("host speaks another protocol version", logHostVersion, v, logVersion, ProtocolVersion)
	}
	return &pb.CapabilitiesReply{
		Version:      ProtocolVersion,
		Name:         s.p.Name,
		Conflict:     s.p.Conflict != nil,
		Exception:    s.p.Exception != nil,
		Hook:         s.p.Hook != nil,
		Configurable: len(s.p.configurables()) > 0,
	}, nil
}

func (s *server) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureReply, error) {
	settings := req.GetSettings()
	if settings == nil {
		settings = map[string]string{}
	}
	for _, c := range s.p.configurables() {
		_, err := call(s.log, "configure", func() (struct{}, error) { return struct{}{}, c.Configure(ctx, settings) })
		if err != nil {
			return &pb.ConfigureReply{Error: &pb.HandlerError{Message: valid(err.Error())}}, nil
		}
	}
	return &pb.ConfigureReply{}, nil
}

func (s *server) Resolve(ctx context.Context, req *pb.ResolveRequest) (*pb.ResolveReply, error) {
	if s.p.Conflict == nil {
		return nil, status.Error(codes.Unimplemented, "this plugin has no conflict handler")
	}
	c, err := conflictFromPB(req.GetConflict())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "conflict: %v", err)
	}
	res, err := call(s.log, "resolve", func() (Resolution, error) { return s.p.Conflict.Resolve(ctx, c) })
	if err != nil {
		return &pb.ResolveReply{Outcome: &pb.ResolveReply_Error{Error: &pb.HandlerError{Message: valid(err.Error())}}}, nil
	}
	return resolutionToPB(res), nil
}

func (s *server) Handle(ctx context.Context, req *pb.HandleRequest) (*pb.HandleReply, error) {
	if s.p.Exception == nil {
		return nil, status.Error(codes.Unimplemented, "this plugin has no exception handler")
	}
	e, err := exceptionFromPB(req.GetException())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "exception: %v", err)
	}
	d, err := call(s.log, "handle", func() (ExceptionDecision, error) { return s.p.Exception.Handle(ctx, e) })
	if err != nil {
		return &pb.HandleReply{Outcome: &pb.HandleReply_Error{Error: &pb.HandlerError{Message: valid(err.Error())}}}, nil
	}
	return exceptionDecisionToPB(d), nil
}

func (s *server) Hook(ctx context.Context, req *pb.HookRequest) (*pb.HookReply, error) {
	if s.p.Hook == nil {
		return nil, status.Error(codes.Unimplemented, "this plugin has no run hook")
	}
	e := hookEventFromPB(req.GetEvent())
	d, err := call(s.log, "hook", func() (HookDecision, error) { return s.p.Hook.Run(ctx, e) })
	if err != nil {
		return &pb.HookReply{Outcome: &pb.HookReply_Error{Error: &pb.HandlerError{Message: valid(err.Error())}}}, nil
	}
	return hookDecisionToPB(d), nil
}

// call runs a handler, turning a panic into an error (and a log line with the
// stack) so that one bad row does not kill the plugin.
func call[T any](log hclog.Logger, what string, f func() (T, error)) (res T, err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("handler panicked", logCall, what, logPanic, fmt.Sprint(r), logStack, string(debug.Stack()))
			err = fmt.Errorf("%s panicked: %v", what, r)
		}
	}()
	return f()
}
