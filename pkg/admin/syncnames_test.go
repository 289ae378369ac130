package admin

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

func TestResolveSyncs(t *testing.T) {
	existing := []string{"api", "web-1", "web_2", "webshop", "Web3"}
	for _, tc := range []struct {
		name    string
		args    []string
		want    []string
		wantErr string // a part of the error; "" for none
	}{
		{name: "plain names in their order", args: []string{"webshop", "api"}, want: []string{"webshop", "api"}},
		{name: "all", args: []string{"all"}, want: existing},
		{name: "ALL in capitals", args: []string{"ALL"}, want: existing},
		{name: "percent as in LIKE", args: []string{"web%"}, want: []string{"web-1", "web_2", "webshop"}},
		{name: "star as mcp list takes it", args: []string{"web*"}, want: []string{"web-1", "web_2", "webshop"}},
		{name: "wildcard inside", args: []string{"w%1"}, want: []string{"web-1"}},
		{name: "case matters", args: []string{"Web%"}, want: []string{"Web3"}},
		{name: "underscore is no wildcard", args: []string{"web_%"}, want: []string{"web_2"}},
		{name: "a bare percent is every sync", args: []string{"%"}, want: existing},
		{name: "each name once", args: []string{"webshop", "web%", "all"},
			want: []string{"webshop", "web-1", "web_2", "api", "Web3"}},
		{name: "unknown name", args: []string{"api", "nope"}, wantErr: `unknown sync "nope"`},
		{name: "pattern matching none", args: []string{"api", "db%"}, wantErr: `no sync matches "db%"`},
		{name: "pattern with a dot matches none", args: []string{"web.%"}, wantErr: `no sync matches "web.%"`},
		{name: "pattern with a quote matches none", args: []string{`"web%`}, wantErr: `no sync matches "\"web%"`},
		{name: "all of no sync", args: []string{"all"}, wantErr: "there is none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := existing
			if tc.name == "all of no sync" {
				ex = nil
			}
			got, err := resolveSyncs(tc.args, ex)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || got != nil {
					t.Fatalf("resolveSyncs(%q) = %q, %v; want an error with %q", tc.args, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("resolveSyncs(%q) = %q, %v; want %q", tc.args, got, err, tc.want)
			}
		})
	}
	var nf *catalog.NotFoundError
	if _, err := resolveSyncs([]string{"nope"}, existing); !errors.As(err, &nf) {
		t.Errorf("an unknown name gave %v, want a catalog.NotFoundError", err)
	}
}

func TestKickArgs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		syncs   []string
		timeout time.Duration
		set     bool
		wantErr bool
	}{
		{name: "syncs only", args: []string{"a", "b"}, syncs: []string{"a", "b"}},
		{name: "trailing seconds", args: []string{"a", "10"}, syncs: []string{"a"}, timeout: 10 * time.Second, set: true},
		{name: "several syncs then seconds", args: []string{"a", "b%", "3"}, syncs: []string{"a", "b%"}, timeout: 3 * time.Second, set: true},
		{name: "zero waits as long as it takes", args: []string{"a", "0"}, syncs: []string{"a"}, set: true},
		{name: "a number alone leaves no sync", args: []string{"10"}, syncs: []string{}, timeout: 10 * time.Second, set: true},
		{name: "a number not last is an argument", args: []string{"10", "a"}, syncs: []string{"10", "a"}},
		{name: "a duration is no bare number", args: []string{"a", "10s"}, syncs: []string{"a", "10s"}},
		{name: "negative is no bare number", args: []string{"a", "-1"}, syncs: []string{"a", "-1"}},
		{name: "no arguments", args: nil, syncs: nil},
		{name: "too long", args: []string{"a", "99999999999"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			syncs, timeout, set, err := kickArgs(tc.args)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("kickArgs(%q) = %q %s %t, want an error", tc.args, syncs, timeout, set)
				}
				return
			}
			if err != nil || !slices.Equal(syncs, tc.syncs) || timeout != tc.timeout || set != tc.set {
				t.Fatalf("kickArgs(%q) = %q %s %t %v; want %q %s %t", tc.args, syncs, timeout, set, err, tc.syncs, tc.timeout, tc.set)
			}
		})
	}
}
