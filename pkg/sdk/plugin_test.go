package sdk_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/gobucardo/gobucardo/pkg/sdk"
	"github.com/gobucardo/gobucardo/pkg/sdk/sdktest"
	"github.com/gobucardo/gobucardo/pkg/testbin"
)

// These tests run plugins as the kid does: a real binary, started by
// go-plugin with gRPC only, AutoMTLS and its sha256 pinned.

func TestMain(m *testing.M) {
	m.Run()
	testbin.Cleanup()
}

// build compiles the package pkg (once per test binary) and returns the
// binary and its sha256.
func build(t *testing.T, pkg string) (string, []byte) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds plugin binaries")
	}
	bin := filepath.Join(testbin.Build(t, pkg), filepath.Base(pkg))
	f, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return bin, h.Sum(nil)
}

// logBuffer collects the host's log; it is printed when the test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start runs the plugin binary bin, pinned to sum, and dispenses its client.
func start(t *testing.T, bin string, sum []byte) (*sdk.Client, *plugin.Client, *logBuffer, error) {
	t.Helper()
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("host log:\n%s", logs)
		}
	})
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          sdk.PluginMap(),
		Cmd:              exec.Command(bin),
		SecureConfig:     &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     30 * time.Second,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "kid", Output: logs, Level: hclog.Debug, JSONFormat: true}),
	})
	t.Cleanup(pc.Kill)
	rpc, err := pc.Client()
	if err != nil {
		return nil, pc, logs, err
	}
	c, err := sdk.Dispense(rpc)
	return c, pc, logs, err
}

func TestHighestPluginProcess(t *testing.T) {
	bin, sum := build(t, "github.com/gobucardo/gobucardo/plugins/highest")

	t.Run("resolve", func(t *testing.T) {
		c, _, _, err := start(t, bin, sum)
		if err != nil {
			t.Fatal(err)
		}
		if conflict, exception, hook := c.Capabilities(); !conflict || exception || hook || c.Name() != "highest" {
			t.Fatalf("capabilities %v %v %v, name %q", conflict, exception, hook, c.Name())
		}
		ctx := sdktest.Context(t)
		if err := c.Configure(ctx, map[string]string{"column": "version"}); err != nil {
			t.Fatal(err)
		}
		k := sdk.Conflict{
			Sync: "s1", Table: "public.item", Key: sdktest.Row("id", int64(1)),
			Sources: []sdk.SourceRow{
				{DB: "A", Row: sdktest.Row("id", int64(1), "version", int64(4)), ChangedAt: time.Now()},
				{DB: "B", Row: sdktest.Row("id", int64(1), "version", int64(9)), ChangedAt: time.Now().Add(-time.Hour)},
				{DB: "C", Row: sdktest.Row("id", int64(1), "version", int64(2)), ChangedAt: time.Now()},
			},
		}
		res, err := c.Resolve(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if res.Action != sdk.ActionWinner || res.DB != "B" {
			t.Fatalf("got %+v, want winner B", res)
		}
	})

	t.Run("settings refused", func(t *testing.T) {
		c, _, _, err := start(t, bin, sum)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Configure(sdktest.Context(t), map[string]string{"colum": "version"})
		var he *sdk.HandlerError
		if !errors.As(err, &he) || !strings.Contains(err.Error(), `unknown setting "colum"`) {
			t.Fatalf("got %v, want the plugin's refusal", err)
		}
	})

	t.Run("checksum mismatch", func(t *testing.T) {
		wrong := sha256.Sum256([]byte("another binary"))
		_, _, _, err := start(t, bin, wrong[:])
		if !errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			t.Fatalf("got %v, want %v", err, plugin.ErrChecksumsDoNotMatch)
		}
	})

	t.Run("wrong handshake", func(t *testing.T) {
		pc := plugin.NewClient(&plugin.ClientConfig{
			HandshakeConfig:  plugin.HandshakeConfig{ProtocolVersion: 1, MagicCookieKey: "OTHER_HOST", MagicCookieValue: "x"},
			Plugins:          sdk.PluginMap(),
			Cmd:              exec.Command(bin),
			AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
			AutoMTLS:         true,
			StartTimeout:     10 * time.Second,
			Logger:           hclog.NewNullLogger(),
		})
		t.Cleanup(pc.Kill)
		if _, err := pc.Client(); err == nil {
			t.Fatal("a plugin started without its cookie")
		}
	})
}

func TestMisbehavingPluginProcess(t *testing.T) {
	bin, sum := build(t, "github.com/gobucardo/gobucardo/pkg/sdk/testdata/misbehave")
	conflict := func(table string) sdk.Conflict {
		return sdk.Conflict{
			Sync: "s1", Table: table, Key: sdktest.Row("id", int64(1)),
			Sources: []sdk.SourceRow{
				{DB: "A", Row: sdktest.Row("id", int64(1), "v", "a")},
				{DB: "B", Row: sdktest.Row("id", int64(1), "v", "b")},
			},
		}
	}

	t.Run("logs reach the host at their level", func(t *testing.T) {
		c, _, logs, err := start(t, bin, sum)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Resolve(sdktest.Context(t), conflict("public.ok")); err != nil {
			t.Fatal(err)
		}
		// go-plugin re-logs each JSON line of the plugin's stderr at its own
		// level; a line it cannot parse would arrive at debug.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(logs.String(), `"@level":"info","@message":"misbehave starting"`) {
			if time.Now().After(deadline) {
				t.Fatalf("the plugin's info line did not arrive as info:\n%s", logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("malformed answers", func(t *testing.T) {
		c, _, _, err := start(t, bin, sum)
		if err != nil {
			t.Fatal(err)
		}
		for table, want := range map[string]string{
			"public.unknown_winner": `plugin "misbehave" resolve public.unknown_winner: malformed answer: winner "Z" is not a source of the conflict (sources: A, B)`,
			"public.bad_merge":      `names column "no_such_column", which public.bad_merge does not have`,
			"public.no_answer":      "no resolution (winner, merge, skip or abort)",
		} {
			res, err := c.Resolve(sdktest.Context(t), conflict(table))
			if !errors.Is(err, sdk.ErrMalformed) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: got %+v, %v; want ErrMalformed with %q", table, res, err, want)
			}
		}
	})

	t.Run("handler error and panic", func(t *testing.T) {
		c, pc, _, err := start(t, bin, sum)
		if err != nil {
			t.Fatal(err)
		}
		var he *sdk.HandlerError
		if _, err := c.Resolve(sdktest.Context(t), conflict("public.error")); !errors.As(err, &he) || he.Message != "the handler gives up" {
			t.Fatalf("error: got %v", err)
		}
		if _, err := c.Resolve(sdktest.Context(t), conflict("public.panic")); !errors.As(err, &he) || !strings.Contains(he.Message, "the handler panics") {
			t.Fatalf("panic: got %v", err)
		}
		if pc.Exited() {
			t.Fatal("a panic in a handler killed the plugin")
		}
		if res, err := c.Resolve(sdktest.Context(t), conflict("public.ok")); err != nil || res.DB != "A" {
			t.Fatalf("after the panic: %+v, %v", res, err)
		}
	})

	t.Run("deadline", func(t *testing.T) {
		c, _, _, err := start(t, bin, sum)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		begin := time.Now()
		_, err = c.Resolve(ctx, conflict("public.sleep"))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(begin); d > 10*time.Second {
			t.Fatalf("returned after %v", d)
		}
		// The hung handler does not block other calls.
		if _, err := c.Resolve(sdktest.Context(t), conflict("public.ok")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("crash", func(t *testing.T) {
		c, pc, _, err := start(t, bin, sum)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Resolve(sdktest.Context(t), conflict("public.exit"))
		if err == nil {
			t.Fatalf("a crashed plugin answered %+v", res)
		}
		var he *sdk.HandlerError
		if errors.As(err, &he) || errors.Is(err, sdk.ErrMalformed) {
			t.Fatalf("a crash reported as %v", err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !pc.Exited() {
			if time.Now().After(deadline) {
				t.Fatal("the plugin did not exit")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
