package mcp

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gobucardo/gobucardo/pkg/metrics"
)

// healthz reports whether http://addr/healthz answers 200.
func healthz(addr string) bool {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestRebindMetrics: the metrics server follows a change of address; a
// new address that is taken leaves the old one served; one taken by the
// old listener itself (all interfaces to loopback on the same port) is
// bound once the old one is closed; empty stops it.
func TestRebindMetrics(t *testing.T) {
	d := &daemon{log: zaptest.NewLogger(t), metrics: metrics.NewDaemon(), ready: &readiness{}, runCtx: context.Background()}
	t.Cleanup(d.closeMetrics)
	ln, err := listenMetrics("0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	all, loop := "0.0.0.0:"+port, "127.0.0.1:"+port
	d.startMetrics(ln, all)
	if !healthz(loop) {
		t.Fatal("no metrics on all interfaces")
	}

	if got := d.rebindMetrics(all, loop); got != loop || !healthz(loop) || d.served.addr != loop {
		t.Fatalf("rebind %s -> %s: %q, served %+v", all, loop, got, d.served)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if got := d.rebindMetrics(loop, taken.Addr().String()); got != loop || !healthz(loop) {
		t.Fatalf("rebind to a taken address: %q (want %s kept), served: %v", got, loop, healthz(loop))
	}

	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	next := other.Addr().String()
	_ = other.Close()
	if got := d.rebindMetrics(loop, next); got != next || !healthz(next) || healthz(loop) {
		t.Fatalf("rebind %s -> %s: %q; new served %v, old served %v", loop, next, got, healthz(next), healthz(loop))
	}

	if got := d.rebindMetrics(next, ""); got != "" || healthz(next) || d.served != nil {
		t.Fatalf("rebind to none: %q, still served %v", got, healthz(next))
	}
}
