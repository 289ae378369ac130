// Package sdnotify tells systemd how a service stands, as sd_notify(3) does:
// a datagram of "KEY=VALUE" lines sent to the unix socket named by
// $NOTIFY_SOCKET ("@name" is a name in Linux's abstract namespace).
// mcp run sends READY=1 once it holds the catalog's lock, WATCHDOG=1 while
// its main loop turns when the unit sets WatchdogSec=, and STOPPING=1 when
// it begins to stop (contrib/systemd/gobucardo.service runs it as
// Type=notify).
//
// Outside systemd (no $NOTIFY_SOCKET) FromEnv returns nil, and a nil
// *Notifier does nothing. The package imports only the standard library;
// it is a few lines, not worth a dependency.
package sdnotify
