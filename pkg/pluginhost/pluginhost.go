// Package pluginhost runs a sync's customcode plugins for the kid: it starts
// each plugin binary with hashicorp/go-plugin (gRPC only, AutoMTLS, the
// sha256 recorded by `mcp add customcode` checked before it runs), configures
// it once, reuses it across runs, restarts it when it died or stopped
// answering, and kills it when the kid exits. What it hands a run is a
// replicate.Handlers whose every call has the customcode's deadline, the
// SDK's types translated to replicate's (convert.go).
//
// A plugin runs in a process group of its own with Pdeathsig SIGKILL, and
// is killed as a group, also as soon as it exits: whatever it forked dies
// with it, and neither a start timeout nor a stop waits for a child that
// holds its pipes (process.go).
package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/logging"
	"github.com/gobucardo/gobucardo/pkg/replicate"
	"github.com/gobucardo/gobucardo/pkg/sdk"
)

// StartTimeout bounds a plugin's start, up to its handshake.
const StartTimeout = 10 * time.Second

// Host holds the running plugins of one kid.
type Host struct {
	log   *zap.Logger
	mu    sync.Mutex
	run   map[string]*instance // by customcode name
	calls *callCounts
}

// instance is one running plugin.
type instance struct {
	code   replicate.CustomCode
	key    string // what, changed, needs a new process
	pc     *plugin.Client
	client *sdk.Client
	pid    int
	broken atomic.Bool // a call timed out: it may be wedged
	calls  *callCounts // nil: not counted
}

// Process is a running plugin, for `mcp ps`.
type Process struct {
	Code string // the customcode's name
	PID  int
}

// New returns a host logging to log.
func New(log *zap.Logger) *Host {
	return &Host{log: log, run: map[string]*instance{}, calls: &callCounts{}}
}

// key is what a plugin process was started and configured with.
func key(c replicate.CustomCode) string {
	names := make([]string, 0, len(c.Settings))
	for k := range c.Settings {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "%s\x00%s", c.Plugin, c.SHA256)
	for _, k := range names {
		fmt.Fprintf(&b, "\x00%s=%s", k, c.Settings[k])
	}
	return b.String()
}

// Load makes sure a plugin runs for every code, stops those no longer
// wanted (and those that died or timed out, to start them again), and
// returns the handlers of a run. codes are in the order they run (see
// catalog.SyncCustomCode). Any failure to start or configure a plugin is an
// error naming the customcode.
func (h *Host) Load(ctx context.Context, codes []replicate.CustomCode) (replicate.Handlers, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	want := map[string]replicate.CustomCode{}
	for _, c := range codes {
		want[c.Name] = c
	}
	for name, in := range h.run {
		c, ok := want[name]
		switch {
		case !ok, key(c) != in.key:
			h.stop(in, "its customcode changed or went away")
		case in.pc.Exited():
			h.stop(in, "it exited")
		case in.broken.Load():
			h.stop(in, "a call timed out")
		default:
			in.code = c // the timeout may have changed
		}
	}
	var hs replicate.Handlers
	for _, c := range codes {
		in := h.run[c.Name]
		if in == nil {
			var err error
			if in, err = h.start(ctx, c); err != nil {
				return replicate.Handlers{}, err
			}
			h.run[c.Name] = in
		}
		if err := add(&hs, in); err != nil {
			return replicate.Handlers{}, err
		}
	}
	return hs, nil
}

// add puts in's handler where its whenrun says.
func add(hs *replicate.Handlers, in *instance) error {
	c := in.code
	conflict, exception, hook := in.client.Capabilities()
	lacks := func(what string) error {
		return fmt.Errorf("customcode %s is attached at %s, but plugin %s has no %s: attach it where it belongs (mcp update customcode %s whenrun=...)",
			c.Name, c.WhenRun, c.Plugin, what, c.Name)
	}
	scope := c.Scope()
	switch c.WhenRun {
	case "conflict":
		if !conflict {
			return lacks("conflict handler")
		}
		if hs.Conflict == nil {
			hs.Conflict = map[string]replicate.ConflictCode{}
		}
		if _, ok := hs.Conflict[scope]; !ok { // the first in order decides
			hs.Conflict[scope] = replicate.ConflictCode{Name: c.Name, Handler: conflictCall{in}}
		}
	case "exception":
		if !exception {
			return lacks("exception handler")
		}
		if hs.Exception == nil {
			hs.Exception = map[string][]replicate.ExceptionCode{}
		}
		hs.Exception[scope] = append(hs.Exception[scope], replicate.ExceptionCode{Name: c.Name, Handler: exceptionCall{in}})
	default:
		point := sdk.HookPoint(c.WhenRun)
		if !point.Valid() {
			return fmt.Errorf("customcode %s: whenrun %q is not a hook point", c.Name, c.WhenRun)
		}
		if !hook {
			return lacks("run hook")
		}
		if hs.Hooks == nil {
			hs.Hooks = map[replicate.HookPoint][]replicate.HookCode{}
		}
		at := replicate.HookPoint(point)
		hs.Hooks[at] = append(hs.Hooks[at], replicate.HookCode{Name: c.Name, Handler: hookCall{in}})
	}
	return nil
}

// Start starts the plugin of c and configures it. The caller stops it with
// Kill. `mcp add customcode` uses it to check a plugin before registering it.
func Start(ctx context.Context, log *zap.Logger, c replicate.CustomCode) (*sdk.Client, *plugin.Client, error) {
	in, err := start(ctx, log, c, StartTimeout)
	if err != nil {
		return nil, nil, err
	}
	return in.client, in.pc, nil
}

// start starts and configures the plugin of c, giving it startTimeout to
// start and hand-shake.
func start(ctx context.Context, log *zap.Logger, c replicate.CustomCode, startTimeout time.Duration) (*instance, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("customcode %s: plugin %s: "+format, append([]any{c.Name, c.Plugin}, args...)...)
	}
	want, err := hex.DecodeString(c.SHA256)
	if err != nil || len(want) != sha256.Size {
		return nil, fail("the recorded sha256 %q is not a sha256", c.SHA256)
	}
	var p *process
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: sdk.Handshake,
		Plugins:         sdk.PluginMap(),
		RunnerFunc: func(_ hclog.Logger, cmd *exec.Cmd, socketDir string) (runner.Runner, error) {
			p = newProcess(c.Plugin, &plugin.SecureConfig{Checksum: want, Hash: sha256.New()}, cmd, socketDir)
			return p, nil
		},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     startTimeout,
		Logger:           logging.HCLog(log.With(zap.String("customcode", c.Name)), "plugin"),
	})
	rpc, err := pc.Client()
	if err != nil {
		pc.Kill()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			_, now, _ := catalog.PluginChecksum(c.Plugin)
			return nil, fail("the file has changed since it was registered (sha256 %s, now %s): if the new binary is "+
				"the one to run, register it again with mcp update customcode %s plugin=%s", short(c.SHA256), short(now), c.Name, c.Plugin)
		}
		msg, _, _ := strings.Cut(err.Error(), "\n") // go-plugin adds a paragraph of guesses
		return nil, fail("cannot start it (is it a gobucardo plugin, built with pkg/sdk?): %s", strings.TrimSuffix(strings.TrimSpace(msg), ":"))
	}
	client, err := sdk.Dispense(rpc)
	if err != nil {
		pc.Kill()
		return nil, fail("%v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout(c))
	defer cancel()
	if err := client.Configure(cctx, c.Settings); err != nil {
		pc.Kill()
		return nil, fail("its settings were refused: %v", err)
	}
	return &instance{code: c, key: key(c), pc: pc, client: client, pid: p.Pid()}, nil
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

func timeout(c replicate.CustomCode) time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return catalog.DefaultPluginTimeout
}

func (h *Host) start(ctx context.Context, c replicate.CustomCode) (*instance, error) {
	began := time.Now()
	in, err := start(ctx, h.log, c, StartTimeout)
	if err != nil {
		h.calls.add(c.Name, catalog.PluginCallStartFailed, time.Since(began))
		return nil, err
	}
	in.calls = h.calls
	h.log.Info("plugin started", zap.String("customcode", c.Name), zap.String("plugin", c.Plugin), zap.Int("pid", in.pid))
	return in, nil
}

func (h *Host) stop(in *instance, why string) {
	h.log.Info("stopping plugin", zap.String("customcode", in.code.Name), zap.Int("pid", in.pid), zap.String("why", why))
	in.pc.Kill()
	delete(h.run, in.code.Name)
}

// Processes lists the running plugins, by customcode name.
func (h *Host) Processes() []Process {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Process
	for name, in := range h.run {
		if !in.pc.Exited() {
			out = append(out, Process{Code: name, PID: in.pid})
		}
	}
	slices.SortFunc(out, func(a, b Process) int { return strings.Compare(a.Code, b.Code) })
	return out
}

// Close kills every plugin.
func (h *Host) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, in := range h.run {
		h.stop(in, "the kid is exiting")
	}
}

// TakeCalls returns the plugin calls counted since the last TakeCalls (by
// customcode and outcome), and starts counting anew.
func (h *Host) TakeCalls() []catalog.PluginCalls { return h.calls.take() }

// call runs f with the customcode's deadline; a call that misses it marks
// the plugin broken, to be restarted before the next run. The call is
// counted with its outcome (callOutcome).
func call[T any](ctx context.Context, in *instance, f func(context.Context) (T, error)) (res T, err error) {
	d := timeout(in.code)
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	began := time.Now()
	defer func() {
		if o := callOutcome(err, parent.Err() != nil, in.pc.Exited()); o != "" {
			in.calls.add(in.code.Name, o, time.Since(began))
		}
	}()
	res, err = f(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		in.broken.Store(true)
		return res, fmt.Errorf("%w (no answer within its timeout of %s: raise it with mcp update customcode %s timeout=...)", err, d, in.code.Name)
	}
	if err != nil && status.Code(errors.Unwrap(err)) == codes.Unavailable {
		// The connection broke: the process may be gone (go-plugin learns it
		// a moment later).
		for i := 0; i < 20 && !in.pc.Exited(); i++ {
			time.Sleep(25 * time.Millisecond)
		}
	}
	if err != nil && in.pc.Exited() {
		return res, fmt.Errorf("the plugin process (pid %d) died during the call, and is started again for the next run: %w", in.pid, err)
	}
	return res, err
}

type conflictCall struct{ in *instance }

func (c conflictCall) Resolve(ctx context.Context, k replicate.ConflictRow) (replicate.Resolution, error) {
	res, err := call(ctx, c.in, func(ctx context.Context) (sdk.Resolution, error) { return c.in.client.Resolve(ctx, conflictToSDK(k)) })
	return resolutionFromSDK(res), err
}

type exceptionCall struct{ in *instance }

func (c exceptionCall) Handle(ctx context.Context, e replicate.Exception) (replicate.ExceptionDecision, error) {
	d, err := call(ctx, c.in, func(ctx context.Context) (sdk.ExceptionDecision, error) {
		return c.in.client.Handle(ctx, exceptionToSDK(e))
	})
	return exceptionDecisionFromSDK(d), err
}

type hookCall struct{ in *instance }

func (c hookCall) Run(ctx context.Context, e replicate.HookEvent) (replicate.HookDecision, error) {
	d, err := call(ctx, c.in, func(ctx context.Context) (sdk.HookDecision, error) { return c.in.client.Run(ctx, hookEventToSDK(e)) })
	return hookDecisionFromSDK(d), err
}
