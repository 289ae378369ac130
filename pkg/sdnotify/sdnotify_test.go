package sdnotify

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseEnv(t *testing.T) {
	const pid = 4242
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    Config
		wantErr bool
	}{
		{name: "not under systemd", env: nil, want: Config{}},
		{name: "socket only", env: map[string]string{"NOTIFY_SOCKET": "/run/systemd/notify"},
			want: Config{Socket: "/run/systemd/notify"}},
		{name: "abstract socket", env: map[string]string{"NOTIFY_SOCKET": "@sd"}, want: Config{Socket: "@sd"}},
		{name: "watchdog for this pid", env: map[string]string{"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"},
			want: Config{Socket: "/n", Watchdog: 30 * time.Second}},
		{name: "watchdog without a pid", env: map[string]string{"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "500000"},
			want: Config{Socket: "/n", Watchdog: 500 * time.Millisecond}},
		{name: "watchdog of another pid", env: map[string]string{"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"},
			want: Config{Socket: "/n"}},
		{name: "watchdog not a number", env: map[string]string{"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "30s"}, wantErr: true},
		{name: "watchdog zero", env: map[string]string{"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "0"}, wantErr: true},
		{name: "watchdog pid not a number", env: map[string]string{"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "x"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEnv(func(k string) string { return tc.env[k] }, pid)
			if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
				t.Fatalf("ParseEnv(%v) = %+v, %v; want %+v (error: %t)", tc.env, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// listen opens a unixgram socket at name and returns a function reading
// one datagram.
func listen(t *testing.T, name string) func() string {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return func() string {
		t.Helper()
		buf := make([]byte, 4096)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
}

func TestNotify(t *testing.T) {
	for _, tc := range []struct{ name, socket string }{
		{name: "path", socket: filepath.Join(t.TempDir(), "notify")},
		{name: "abstract", socket: fmt.Sprintf("@gobucardo-sdnotify-test-%d", os.Getpid())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := listen(t, tc.socket)
			t.Setenv("NOTIFY_SOCKET", tc.socket)
			t.Setenv("WATCHDOG_USEC", "2000000")
			t.Setenv("WATCHDOG_PID", fmt.Sprint(os.Getpid()))
			n, err := FromEnv()
			if err != nil || n == nil {
				t.Fatalf("FromEnv() = %v, %v", n, err)
			}
			if v, ok := os.LookupEnv("NOTIFY_SOCKET"); ok {
				t.Errorf("NOTIFY_SOCKET=%q left for the children", v)
			}
			if got := n.WatchdogInterval(); got != time.Second {
				t.Errorf("WatchdogInterval() = %s, want 1s", got)
			}
			if err := n.Notify(Ready, Status("holding\nthe lock")); err != nil {
				t.Fatal(err)
			}
			if got := read(); got != "READY=1\nSTATUS=holding the lock" {
				t.Errorf("received %q", got)
			}
			if err := n.Notify(Watchdog); err != nil {
				t.Fatal(err)
			}
			if got := read(); got != "WATCHDOG=1" {
				t.Errorf("received %q", got)
			}
		})
	}
	t.Run("nobody listening", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "none"))
		n, err := FromEnv()
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Notify(Ready); err == nil {
			t.Error("Notify to a socket nobody listens on succeeded")
		}
	})
	t.Run("a bad watchdog still notifies", func(t *testing.T) {
		socket := filepath.Join(t.TempDir(), "notify")
		read := listen(t, socket)
		t.Setenv("NOTIFY_SOCKET", socket)
		t.Setenv("WATCHDOG_USEC", "soon")
		n, err := FromEnv()
		if err == nil || n == nil || n.WatchdogInterval() != 0 {
			t.Fatalf("FromEnv() = %v, %v; want a Notifier without watchdog, and the error", n, err)
		}
		if err := n.Notify(Ready); err != nil {
			t.Fatal(err)
		}
		if got := read(); got != Ready {
			t.Errorf("received %q", got)
		}
	})
	t.Run("not under systemd", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", "")
		n, err := FromEnv()
		if n != nil || err != nil {
			t.Fatalf("FromEnv() = %v, %v; want nil", n, err)
		}
		if err := n.Notify(Ready); err != nil || n.WatchdogInterval() != 0 {
			t.Errorf("a nil Notifier: %v, %s", err, n.WatchdogInterval())
		}
	})
}
