package ipc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/gobucardo/gobucardo/pkg/ipc"
	"github.com/gobucardo/gobucardo/pkg/proc"
)

// helperEnv makes the test binary, run as a child by the tests, serve the health service.
const helperEnv = "GOBUCARDO_IPC_TEST_HELPER"

// noRaceSleep spares a child built with -race the race detector's one-second sleep at exit.
const noRaceSleep = "GORACE=atexit_sleep_ms=0"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		serveHealth()
		return
	}
	m.Run()
}

const (
	serving    = healthpb.HealthCheckResponse_SERVING
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
)

// flipHealth is the health service, where checking service "flip" sets service "watched" to
// NOT_SERVING, so that the parent can make a Watch stream send a second message. Every Check prints on
// stdout, which after Claim must land on stderr and not in the stream.
type flipHealth struct{ *health.Server }

func (h flipHealth) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	fmt.Println("check", len(req.Service))
	if req.Service == "flip" {
		h.SetServingStatus("watched", notServing)
	}
	return h.Server.Check(ctx, req)
}

// serveHealth is the child: it serves flipHealth over its stdin/stdout and exits 0 when Serve
// returns nil.
func serveHealth() {
	conn, err := ipc.Claim()
	if err != nil {
		fmt.Fprintln(os.Stderr, "claim:", err)
		os.Exit(1)
	}
	fmt.Println("stray print after claim")
	hs := health.NewServer()
	hs.SetServingStatus("watched", serving)
	hs.SetServingStatus("flip", serving)
	srv := ipc.NewServer()
	healthpb.RegisterHealthServer(srv, flipHealth{hs})
	if err := ipc.Serve(conn, srv); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}

// lines collects a child's stderr.
type lines struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lines) add(line []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(line)
	l.b.WriteByte('\n')
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor waits up to 10s for s to appear in l.
func (l *lines) waitFor(t *testing.T, s string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(l.String(), s); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("child stderr has no %q after 10s:\n%s", s, l)
		}
	}
}

// startChild starts the health child, stopped when the test ends.
func startChild(t *testing.T) (*ipc.Child, *lines) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lines{}
	c, err := ipc.Start(proc.Spec{Path: exe, Env: append(os.Environ(), noRaceSleep, helperEnv+"=1"), Stderr: stderr.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		c.Stop(nil, time.Second)
	})
	return c, stderr
}

// ctx returns a context cancelled after 10s or at the end of the test.
func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCalls(t *testing.T) {
	c, stderr := startChild(t)
	client := healthpb.NewHealthClient(c.Conn)
	ctx := ctx(t)

	watch, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "watched"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.Status != serving {
		t.Fatalf("first Watch message = %v, %v; want SERVING", resp, err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 16*20)
	for range 16 {
		wg.Go(func() {
			for range 20 {
				resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "watched"})
				if err == nil && resp.Status != serving {
					err = fmt.Errorf("status %v", resp.Status)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error("Check:", err)
	}

	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "flip"}); err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.Status != notServing {
		t.Fatalf("second Watch message = %v, %v; want NOT_SERVING", resp, err)
	}
	stderr.waitFor(t, "stray print after claim\n")
	stderr.waitFor(t, "check 4\n")
}

// TestLargeMessage sends a request above gRPC's default limit of 4 MiB.
func TestLargeMessage(t *testing.T) {
	c, _ := startChild(t)
	_, err := healthpb.NewHealthClient(c.Conn).Check(ctx(t), &healthpb.HealthCheckRequest{Service: strings.Repeat("s", 5<<20)})
	if status.Code(err) != codes.NotFound { // an unknown service, not ResourceExhausted
		t.Errorf("Check with 5 MiB request = %v, want NotFound", err)
	}
}

func TestCloseExits(t *testing.T) {
	c, stderr := startChild(t)
	if _, err := healthpb.NewHealthClient(c.Conn).Check(ctx(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("child did not exit within 10s of Close")
	}
	if c.ExitCode() != 0 {
		t.Errorf("child exited with %v, stderr:\n%s", c.Err(), stderr)
	}
}

func TestChildKilled(t *testing.T) {
	c, _ := startChild(t)
	client := healthpb.NewHealthClient(c.Conn)
	ctx := ctx(t)
	watch, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "watched"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}

	if err := c.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	begin := time.Now()
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Watch after kill = %v, want Unavailable", err)
	}
	for i := range 3 { // the first call may find the old transport, later ones the failed redial
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Errorf("Check %d after kill = %v, want Unavailable", i, err)
		}
		t.Logf("Check %d after kill: %v", i, err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("calls after kill took %v to fail", d)
	}
}

// pipes returns the two ends of a connection made of two os.Pipes.
func pipes(t *testing.T) (a, b *ipc.Conn) {
	t.Helper()
	r1, w1, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	a, b = ipc.NewConn(r1, w2), ipc.NewConn(r2, w1)
	t.Cleanup(func() { _, _ = a.Close(), b.Close() })
	return a, b
}

// TestServe checks how Serve ends, in process.
func TestServe(t *testing.T) {
	tests := []struct {
		name    string
		end     func(t *testing.T, srv *grpc.Server, parent *ipc.Conn)
		wantErr bool
	}{
		{"parent closes", func(_ *testing.T, _ *grpc.Server, parent *ipc.Conn) { _ = parent.Close() }, false},
		{"GracefulStop", func(_ *testing.T, srv *grpc.Server, _ *ipc.Conn) { srv.GracefulStop() }, false},
		{"Stop", func(_ *testing.T, srv *grpc.Server, _ *ipc.Conn) { srv.Stop() }, false},
		{"not gRPC", func(t *testing.T, _ *grpc.Server, parent *ipc.Conn) {
			if _, err := parent.Write([]byte("this is not an HTTP/2 client preface\n")); err != nil {
				t.Error(err)
			}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, child := pipes(t)
			srv := ipc.NewServer()
			healthpb.RegisterHealthServer(srv, health.NewServer())
			served := make(chan error, 1)
			go func() { served <- ipc.Serve(child, srv) }()

			if !tt.wantErr { // a call first, so the connection is up
				cc := dialOnce(t, parent)
				if _, err := healthpb.NewHealthClient(cc).Check(ctx(t), &healthpb.HealthCheckRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			tt.end(t, srv, parent)
			select {
			case err := <-served:
				if (err != nil) != tt.wantErr {
					t.Errorf("Serve = %v, want error %v", err, tt.wantErr)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return within 10s")
			}
		})
	}
}

// dialOnce returns a client over conn.
func dialOnce(t *testing.T, conn *ipc.Conn) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///child",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return conn, nil }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func TestConnDeadline(t *testing.T) {
	a, _ := pipes(t)
	if err := a.SetReadDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read past deadline = %v, want os.ErrDeadlineExceeded", err)
	}
	c := ipc.NewConn(strings.NewReader(""), &strings.Builder{})
	if err := c.SetDeadline(time.Now()); err == nil {
		t.Error("SetDeadline on streams without deadlines succeeded")
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close of streams that are no Closers = %v", err)
	}
}
