package controller

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/zap"

	"github.com/gobucardo/gobucardo/pkg/ipc/ctlpb"
)

// TestCloseKicks: the last look before a planned exit returns a kick taken
// in meanwhile (the loop runs it instead of exiting) and keeps taking
// kicks; with none pending, every later kick is refused, so the MCP keeps
// it for the next controller instead of it being lost with this one.
func TestCloseKicks(t *testing.T) {
	ctx := context.Background()
	s := New(zap.NewNop(), zap.NewAtomicLevel(), "s")
	if _, err := s.Kick(ctx, &ctlpb.KickRequest{Reason: "autokick db A"}); err != nil {
		t.Fatalf("kick before the exit: %v", err)
	}
	if reason, pending := s.closeKicks(); !pending || reason != "autokick db A" {
		t.Fatalf("closeKicks with a kick taken in: %q, %v; want it back", reason, pending)
	}
	if _, err := s.Kick(ctx, &ctlpb.KickRequest{Reason: "mcp kick"}); err != nil {
		t.Fatalf("kick after a closeKicks that found one: %v; want it taken", err)
	}
	if reason, pending := s.closeKicks(); !pending || reason != "mcp kick" {
		t.Fatalf("second closeKicks: %q, %v; want the second kick", reason, pending)
	}
	if reason, pending := s.closeKicks(); pending {
		t.Fatalf("closeKicks with no kick: %q; want none", reason)
	}
	if _, err := s.Kick(ctx, &ctlpb.KickRequest{Reason: "late"}); !errors.Is(err, errKicksShut) {
		t.Fatalf("kick after the exit was decided: %v; want %v", err, errKicksShut)
	}
}
