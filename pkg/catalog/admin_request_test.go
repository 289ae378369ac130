package catalog

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

// TestAdminRequestFormat: each request has the payload the MCP has always
// read, and Parse gives the request back.
func TestAdminRequestFormat(t *testing.T) {
	cases := []struct {
		name    string
		req     AdminRequest
		payload string
	}{
		{"reload every sync", AdminRequest{Verb: AdminReload}, "reload"},
		{"reload every sync by star", AdminRequest{Verb: AdminReload, Syncs: []string{ReloadEverySync}}, "reload *"},
		{"reload one sync", AdminRequest{Verb: AdminReload, Syncs: []string{"s1"}}, "reload s1"},
		{"reload two syncs", AdminRequest{Verb: AdminReload, Syncs: []string{"s1", "s-2"}}, "reload s1 s-2"},
		{"kick one sync", AdminRequest{Verb: AdminKick, Syncs: []string{"shop"}}, "kick shop"},
		{"kick three syncs", AdminRequest{Verb: AdminKick, Syncs: []string{"a", "b", "c"}}, "kick a b c"},
		{"stop with a reason", AdminRequest{Verb: AdminStop, Text: "mcp stop"}, "stop mcp stop"},
		{"stop without a reason", AdminRequest{Verb: AdminStop}, "stop"},
		{"message", AdminRequest{Verb: AdminMessage, Text: "started: nightly upgrade"}, "message started: nightly upgrade"},
		{"message keeps its spaces", AdminRequest{Verb: AdminMessage, Text: "  two  spaces"}, "message   two  spaces"},
		{"message of several lines", AdminRequest{Verb: AdminMessage, Text: "one\ntwo"}, "message one\ntwo"},
		{"message that looks like a request", AdminRequest{Verb: AdminMessage, Text: "kick s1"}, "message kick s1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.req.Format(); got != tc.payload {
				t.Errorf("Format() = %q, want %q", got, tc.payload)
			}
			got, err := ParseAdminRequest(tc.payload)
			if err != nil {
				t.Fatalf("ParseAdminRequest(%q): %v", tc.payload, err)
			}
			if !reflect.DeepEqual(got, tc.req) {
				t.Errorf("ParseAdminRequest(%q) = %#v, want %#v", tc.payload, got, tc.req)
			}
		})
	}
}

// TestParseAdminRequest: payloads Format does not make, garbled or unknown.
func TestParseAdminRequest(t *testing.T) {
	cases := []struct {
		name    string
		payload string
		want    AdminRequest
		err     string // "" when the payload is a request
	}{
		{"extra spaces between syncs", "kick  a   b ", AdminRequest{Verb: AdminKick, Syncs: []string{"a", "b"}}, ""},
		{"kick without syncs", "kick", AdminRequest{Verb: AdminKick}, ""},
		{"reload of spaces only", "reload   ", AdminRequest{Verb: AdminReload}, ""},
		{"stop text is everything after the first space", "stop  the  reason ", AdminRequest{Verb: AdminStop, Text: " the  reason "}, ""},
		{"empty", "", AdminRequest{}, `not an admin request: unknown verb "" in ""`},
		{"unknown verb", "restart now", AdminRequest{}, `not an admin request: unknown verb "restart" in "restart now"`},
		{"verbs are lowercase", "KICK s1", AdminRequest{}, `not an admin request: unknown verb "KICK" in "KICK s1"`},
		{"leading space", " kick s1", AdminRequest{}, `not an admin request: unknown verb "" in " kick s1"`},
		{"verb glued to its argument", "kick\ts1", AdminRequest{}, `not an admin request: unknown verb "kick\ts1" in "kick\ts1"`},
		{"garbage", "\x00\xff", AdminRequest{}, `not an admin request: unknown verb "\x00\xff" in "\x00\xff"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAdminRequest(tc.payload)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("ParseAdminRequest(%q): %v", tc.payload, err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("ParseAdminRequest(%q) = %#v, want %#v", tc.payload, got, tc.want)
				}
				return
			}
			if err == nil || err.Error() != tc.err || !errors.Is(err, ErrBadAdminRequest) {
				t.Fatalf("ParseAdminRequest(%q) = %#v, %v; want the error %q (ErrBadAdminRequest)", tc.payload, got, err, tc.err)
			}
			if !reflect.DeepEqual(got, AdminRequest{}) {
				t.Errorf("ParseAdminRequest(%q) returned %#v with its error", tc.payload, got)
			}
		})
	}
}

// TestNotifyMCP: a listener on AdminChannel receives the formatted request,
// and from a transaction only once it commits.
func TestNotifyMCP(t *testing.T) {
	c, conn := installed(t)
	ctx := context.Background()
	listener := c.Connect(t, conn.Config().Database)
	if _, err := listener.Exec(ctx, "LISTEN "+AdminChannel); err != nil {
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := listener.WaitForNotification(wctx)
		if err != nil {
			t.Fatal(err)
		}
		return n.Payload
	}
	if err := NotifyMCP(ctx, conn, AdminRequest{Verb: AdminKick, Syncs: []string{"s1", "s2"}}); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "kick s1 s2" {
		t.Errorf("payload = %q, want %q", got, "kick s1 s2")
	}
	// A rolled-back transaction sends nothing; a committed one sends at commit.
	for _, commit := range []bool{false, true} {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := NotifyMCP(ctx, tx, AdminRequest{Verb: AdminMessage, Text: map[bool]string{false: "rolled back", true: "committed"}[commit]}); err != nil {
			t.Fatal(err)
		}
		end := tx.Rollback
		if commit {
			end = tx.Commit
		}
		if err := end(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := next(); got != "message committed" {
		t.Errorf("payload after a rollback and a commit = %q, want %q", got, "message committed")
	}
}
