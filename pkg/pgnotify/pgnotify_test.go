package pgnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gobucardo/gobucardo/pkg/backoff"
	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// recorder collects what a Listener reports.
type recorder struct {
	connects chan struct{}
	notes    chan string
	mu       sync.Mutex
	waits    []time.Duration
}

func newRecorder() *recorder {
	return &recorder{connects: make(chan struct{}, 16), notes: make(chan string, 16)}
}

func (r *recorder) listen(l *Listener) {
	l.OnConnect = func(context.Context, *pgx.Conn) error {
		r.connects <- struct{}{}
		return nil
	}
	l.OnNotify = func(n *pgconn.Notification) { r.notes <- n.Payload }
	l.OnDown = func(_ error, wait time.Duration) {
		r.mu.Lock()
		r.waits = append(r.waits, wait)
		r.mu.Unlock()
	}
}

func (r *recorder) downs() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waits...)
}

// run runs l until the test ends, and checks that Run then returns nil.
func run(t *testing.T, l *Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	})
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s within 30s", what)
		panic("unreachable")
	}
}

// TestListenerReconnects: notifications arrive, the session is reopened
// after the server went away, with the Listener's backoff between the
// attempts, and notifications arrive again.
func TestListenerReconnects(t *testing.T) {
	c := pgtest.New(t)
	db := c.NewDB(t)
	r := newRecorder()
	l := &Listener{Name: "test", ConnString: c.DSN(db), Channels: []string{"ch"}, Ping: 200 * time.Millisecond,
		Backoff: backoff.Policy{Initial: 20 * time.Millisecond, Max: 80 * time.Millisecond, Multiplier: 2}}
	r.listen(l)
	run(t, l)

	receive(t, r.connects, "connection")
	c.Exec(t, db, "SELECT pg_notify('ch', 'one')")
	if got := receive(t, r.notes, "notification"); got != "one" {
		t.Fatalf("notification %q, want one", got)
	}

	c.Stop(t)
	deadline := time.Now().Add(30 * time.Second)
	for len(r.downs()) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("while the server is down: waits %v, want 4 or more", r.downs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.Start(t)
	ms := time.Millisecond
	if got, want := r.downs()[:4], []time.Duration{20 * ms, 40 * ms, 80 * ms, 80 * ms}; !reflect.DeepEqual(got, want) {
		t.Errorf("waits before the reconnection attempts = %v, want %v", got, want)
	}

	receive(t, r.connects, "reconnection")
	c.Exec(t, db, "SELECT pg_notify('ch', 'two')")
	if got := receive(t, r.notes, "notification"); got != "two" {
		t.Fatalf("notification %q after the reconnection, want two", got)
	}
}

// TestListenerDefaultBackoff: a Listener without a Backoff waits as
// DefaultBackoff says.
func TestListenerDefaultBackoff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close() // nothing listens there now
	r := newRecorder()
	l := &Listener{Name: "down", ConnString: fmt.Sprintf("host=127.0.0.1 port=%d dbname=x connect_timeout=2", port)}
	r.listen(l)
	run(t, l)
	deadline := time.Now().Add(30 * time.Second)
	for len(r.downs()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("waits %v, want 2 or more", r.downs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, want := r.downs()[:2], []time.Duration{DefaultBackoff.Delay(1), DefaultBackoff.Delay(2)}; !reflect.DeepEqual(got, want) ||
		want[0] != 250*time.Millisecond {
		t.Errorf("waits = %v, want %v (250ms first)", got, want)
	}
}

// TestListenerPermanent: an OnConnect error wrapped with Permanent ends Run
// with that error; another one makes it reconnect.
func TestListenerPermanent(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	refused := errors.New("refused")
	tries := 0
	l := &Listener{Name: "test", ConnString: c.DSN(db), Channels: []string{"ch"},
		Backoff: backoff.Policy{Initial: time.Millisecond},
		OnConnect: func(context.Context, *pgx.Conn) error {
			tries++
			if tries < 3 {
				return errors.New("not yet")
			}
			return Permanent(refused)
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Run(ctx); err != refused { //nolint:errorlint // Run returns it unwrapped
		t.Errorf("Run = %v, want the permanent error unwrapped", err)
	}
	if tries != 3 {
		t.Errorf("OnConnect ran %d times, want 3", tries)
	}
}
