package sdk

import (
	"context"
	"os"
	"reflect"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/gobucardo/gobucardo/pkg/sdk/internal/handlerpb"
)

// ProtocolVersion is the version of the protocol between host and plugin.
// A host refuses a plugin that speaks another version: rebuild the plugin
// against the SDK of the gobucardo it runs with.
const ProtocolVersion = 1

// Handshake is the go-plugin handshake shared by host and plugins. The cookie
// only keeps a plugin binary from being run by mistake from a shell or by
// another go-plugin host; it is not a security measure (the host pins each
// plugin's sha256 instead).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "GOBUCARDO_PLUGIN",
	MagicCookieValue: "5f0c2b4e-gobucardo-handler-7d1a9e63",
}

// pluginKey is the name of the one plugin in the go-plugin plugin set.
const pluginKey = "handler"

// Plugin is what a plugin binary serves: any subset of the three handlers,
// at least one.
type Plugin struct {
	// Name names the plugin in the host's logs. Optional.
	Name      string
	Conflict  ConflictHandler
	Exception ExceptionHandler
	Hook      RunHook
}

// Configurable is implemented by handlers that take settings. The settings
// are the key=value pairs recorded with the customcode; the host calls
// Configure once, after starting the plugin and before any other call, with
// them (possibly none). A handler should reject keys it does not know, so
// that a typo is caught when the customcode is used rather than ignored; the
// error is shown to the operator.
//
// When the same value is more than one of a Plugin's handlers, its Configure
// is called once.
type Configurable interface {
	Configure(ctx context.Context, settings map[string]string) error
}

// Serve serves p to the host over go-plugin and returns when the host is
// done with the plugin. Call it from main, and nothing else: a plugin binary
// is started by the host (a gobucardo kid), never from a shell, where it says
// so and exits with status 1. Serve panics if p has no handler.
func Serve(p Plugin) {
	if p.Conflict == nil && p.Exception == nil && p.Hook == nil {
		panic("sdk.Serve: the Plugin has no handler: set Conflict, Exception or Hook")
	}
	log := Logger()
	if p.Name != "" {
		log = log.Named(p.Name)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         serverSet(p, log),
		GRPCServer:      newGRPCServer,
		Logger:          log,
	})
}

// maxMessage bounds one message either way: a row may hold values of up to
// 1 GiB, PostgreSQL's limit for one field, far above gRPC's default of 4 MiB.
const maxMessage = 1 << 30

// newGRPCServer is the plugin's gRPC server; go-plugin passes its TLS options.
func newGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(maxMessage), grpc.MaxSendMsgSize(maxMessage))...)
}

// stderr is the plugin's own stderr, taken before plugin.Serve points
// os.Stderr at a pipe of its own. go-plugin reads this one, line by line, as
// hclog JSON.
var stderr = os.Stderr

// Logger returns a logger for a plugin: JSON lines on the plugin's stderr
// with the keys go-plugin reads (@level, @message, @timestamp, @module), so
// the host logs each line at its level with the plugin's name. Every level is
// written; the host filters. Build it in main and hand it to your handlers.
func Logger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Output:     stderr,
		JSONFormat: true,
		Level:      hclog.Trace,
	})
}

// PluginMap is the go-plugin plugin set a host passes as
// plugin.ClientConfig.Plugins; Dispense then returns the plugin's Client.
func PluginMap() map[string]plugin.Plugin {
	return map[string]plugin.Plugin{pluginKey: &grpcPlugin{}}
}

// Dispense returns the Client of a started plugin: rpc is what
// (*plugin.Client).Client returned for a client configured with Handshake and
// PluginMap. It fails when the plugin speaks another protocol version.
func Dispense(rpc plugin.ClientProtocol) (*Client, error) {
	raw, err := rpc.Dispense(pluginKey)
	if err != nil {
		return nil, err
	}
	c, ok := raw.(*Client)
	if !ok {
		return nil, errorf("dispense: got %T, not an sdk plugin (is PluginMap the client's plugin set?)", raw)
	}
	return c, nil
}

// grpcPlugin is the go-plugin glue, on both sides: impl is set in the
// plugin process, nil in the host.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl *Plugin
	log  hclog.Logger
}

func serverSet(p Plugin, log hclog.Logger) map[string]plugin.Plugin {
	return map[string]plugin.Plugin{pluginKey: &grpcPlugin{impl: &p, log: log}}
}

func (g *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if g.impl == nil {
		return errorf("no plugin to serve")
	}
	handlerpb.RegisterHandlerServer(s, newServer(*g.impl, g.log))
	return nil
}

func (g *grpcPlugin) GRPCClient(ctx context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return newClient(ctx, conn)
}

// configurables returns the distinct handlers of p that are Configurable.
func (p Plugin) configurables() []Configurable {
	var out []Configurable
	for _, h := range []any{p.Conflict, p.Exception, p.Hook} {
		c, ok := h.(Configurable)
		if !ok {
			continue
		}
		dup := false
		for _, seen := range out {
			if sameValue(seen, c) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, c)
		}
	}
	return out
}

// sameValue reports whether a and b are the same value, without panicking
// on values (funcs, structs holding maps) that cannot be compared.
func sameValue(a, b any) (same bool) {
	if reflect.TypeOf(a) != reflect.TypeOf(b) || !reflect.TypeOf(a).Comparable() {
		return false
	}
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}
