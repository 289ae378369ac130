package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// The states systemd knows (sd_notify(3)); Status is a free line of text.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// Status is the STATUS= line systemctl status shows.
func Status(text string) string { return "STATUS=" + strings.ReplaceAll(text, "\n", " ") }

// Notifier sends states to systemd's notification socket.
type Notifier struct {
	socket   string
	watchdog time.Duration
}

// Config is what the environment says: the socket, and the watchdog's
// timeout (0: none) when it is meant for this process.
type Config struct {
	Socket   string
	Watchdog time.Duration
}

// ParseEnv reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID through
// getenv, for the process pid (as sd_watchdog_enabled(3): a watchdog meant
// for another pid is not this one's).
func ParseEnv(getenv func(string) string, pid int) (Config, error) {
	c := Config{Socket: getenv("NOTIFY_SOCKET")}
	usec := getenv("WATCHDOG_USEC")
	if usec == "" {
		return c, nil
	}
	n, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || n == 0 {
		return c, fmt.Errorf("WATCHDOG_USEC=%q is not a positive number of microseconds", usec)
	}
	if p := getenv("WATCHDOG_PID"); p != "" {
		wp, err := strconv.Atoi(p)
		if err != nil {
			return c, fmt.Errorf("WATCHDOG_PID=%q is not a pid", p)
		}
		if wp != pid {
			return c, nil
		}
	}
	c.Watchdog = time.Duration(n) * time.Microsecond
	return c, nil
}

// FromEnv returns the Notifier the environment asks for, or nil when this
// process does not run under systemd's notification; with an error about
// the watchdog's variables it returns a Notifier without a watchdog. It
// unsets the variables, so that the processes this one starts do not take
// them for theirs.
func FromEnv() (*Notifier, error) {
	c, err := ParseEnv(os.Getenv, os.Getpid())
	for _, v := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		_ = os.Unsetenv(v)
	}
	if c.Socket == "" {
		return nil, err
	}
	if err != nil {
		c.Watchdog = 0
	}
	return &Notifier{socket: c.Socket, watchdog: c.Watchdog}, err
}

// WatchdogInterval is how often WATCHDOG=1 should be sent: half the
// watchdog's timeout, as sd_watchdog_enabled(3) advises; 0 when there is
// no watchdog (or no Notifier).
func (n *Notifier) WatchdogInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog / 2
}

// Notify sends the states, one per line, in one datagram.
func (n *Notifier) Notify(states ...string) error {
	if n == nil {
		return nil
	}
	// A leading @ is the abstract namespace; package net maps it to the
	// NUL byte the kernel expects.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(states, "\n"))); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}
