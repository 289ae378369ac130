package mcp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gobucardo/gobucardo/pkg/backoff"
	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/ipc"
	"github.com/gobucardo/gobucardo/pkg/ipc/ctlpb"
	"github.com/gobucardo/gobucardo/pkg/logging"
	"github.com/gobucardo/gobucardo/pkg/proc"
)

// restartPolicy spaces the restarts of a controller that keeps failing: 500ms,
// doubling, at most 30s, reset after a controller ran for a minute.
var restartPolicy = backoff.Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2, ResetAfter: time.Minute}

// ctl supervises the controller of one sync: it starts it, forwards kicks
// and reloads, follows its state, and restarts it with backoff when it dies.
type ctl struct {
	d      *daemon
	sync   string
	kicks  chan string
	reload chan struct{}
	stop   chan string // receives the stop reason once
	done   chan struct{}
	log    *zap.Logger

	mu    sync.Mutex
	procs []*ctlpb.Process // as the controller last reported; nil while it is down
	state string           // the supervisor's own view while the controller is down
}

func newCtl(d *daemon, sync string) *ctl {
	return &ctl{d: d, sync: sync, kicks: make(chan string, 16), reload: make(chan struct{}, 1),
		stop: make(chan string, 1), done: make(chan struct{}), log: d.log.With(zap.String(logging.FieldSync, sync)),
		state: catalog.ProcessStarting}
}

// Kick forwards a kick; kicks coalesce, so a full queue drops it.
func (c *ctl) Kick(reason string) {
	select {
	case c.kicks <- reason:
	default:
	}
}

// Reload forwards a reload.
func (c *ctl) Reload() {
	select {
	case c.reload <- struct{}{}:
	default:
	}
}

// Stop asks the supervisor to stop the controller; Done closes once it has.
func (c *ctl) Stop(reason string) {
	select {
	case c.stop <- reason:
	default:
	}
}

// Processes returns the controller's subtree, or a placeholder while down.
func (c *ctl) Processes() ([]*ctlpb.Process, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs, c.state
}

func (c *ctl) setDown(state string) {
	c.mu.Lock()
	c.procs, c.state = nil, state
	c.mu.Unlock()
}

// supervise runs and restarts the controller until it is stopped; the
// daemon's supervise closes done once it returns.
func (c *ctl) supervise() {
	failures := 0
	pendingKick := ""
	for {
		started := time.Now()
		planned, stopped, refused, exitErr := c.once(pendingKick)
		pendingKick = ""
		if stopped {
			c.setDown("stopped")
			return
		}
		var wait time.Duration
		if planned {
			failures = 0
			if refused != "" {
				// A kick came as it exited: the next controller runs it now.
				pendingKick = refused
				continue
			}
			if !c.d.stayalive(c.sync) {
				// stayalive is off: no controller until something asks for a run.
				c.setDown("dormant until the next kick")
				select {
				case reason := <-c.stop:
					c.log.Info("stopped", zap.String("reason", reason))
					c.setDown("stopped")
					return
				case pendingKick = <-c.kicks:
				}
				continue
			}
		} else {
			failures, wait = restartPolicy.Next(failures, time.Since(started))
			c.d.metrics.ControllerRestarted(c.sync)
			c.log.Warn("controller failed; restarting", zap.Error(exitErr), zap.Duration("retry_in", wait))
			c.setDown(fmt.Sprintf("restarting in %s: %s", wait.Round(time.Millisecond), exitErr))
		}
		t := time.NewTimer(wait)
	waiting:
		for {
			select {
			case reason := <-c.stop:
				t.Stop()
				c.log.Info("stopped", zap.String("reason", reason))
				c.setDown("stopped")
				return
			case <-c.kicks: // the new controller runs at start anyway
			case <-c.reload:
			case <-t.C:
				break waiting
			}
		}
	}
}

// once runs one controller process until it exits or is stopped;
// refused is the reason of a kick it could not be given (it was exiting),
// "" when none.
func (c *ctl) once(kick string) (planned, stopped bool, refused string, exitErr error) {
	d := c.d
	child, err := ipc.Start(proc.Spec{Path: d.o.ControllerPath, Args: []string{"--sync", c.sync},
		Stderr: logging.Forward(d.o.LogOut, d.childLog.With(zap.String(logging.FieldRole, catalog.ProcessRoleController), zap.String(logging.FieldSync, c.sync)))})
	if err != nil {
		return false, false, "", fmt.Errorf("start controller: %w", err)
	}
	client := ctlpb.NewControllerClient(child.Conn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = client.Configure(cctx, &ctlpb.Config{Sync: c.sync, MainDsn: d.o.MainDSN, KidPath: d.o.KidPath, LogLevel: d.o.LogLevel})
	ccancel()
	if err != nil {
		child.Stop(func() error { return child.Close() }, time.Second)
		return false, false, "", fmt.Errorf("configure controller: %w", err)
	}
	c.log.Info("controller started", zap.Int("controller", child.Pid()))
	d.metrics.ControllerStarted(c.sync)
	go c.watch(ctx, client)
	give := func(reason string) {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		if _, err := client.Kick(rctx, &ctlpb.KickRequest{Reason: reason}); err != nil {
			// Exiting (or gone): kept for the next controller, never lost.
			c.log.Debug("kick not taken by the controller", zap.String("reason", reason), zap.Error(err))
			refused = reason
		}
	}
	if kick != "" {
		give(kick)
	}
	for {
		select {
		case reason := <-c.kicks:
			give(reason)
		case <-c.reload:
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			_, _ = client.Reload(rctx, &ctlpb.ReloadRequest{})
			rcancel()
		case reason := <-c.stop:
			how := child.Stop(func() error {
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				defer rcancel()
				_, err := client.Stop(rctx, &ctlpb.StopRequest{Reason: reason})
				return err
			}, d.stopGrace())
			c.log.Info("controller stopped", zap.Int("controller", child.Pid()), zap.String("how", how), zap.String("reason", reason))
			_ = child.Close()
			return false, true, "", nil
		case <-child.Done():
			_ = child.Close()
			if child.Err() == nil {
				c.log.Info("controller exited", zap.Int("controller", child.Pid()))
				return true, false, refused, nil
			}
			return false, false, "", fmt.Errorf("controller %d: %w", child.Pid(), child.Err())
		}
	}
}

// watch follows the controller's reports until ctx ends or it goes away.
func (c *ctl) watch(ctx context.Context, client ctlpb.ControllerClient) {
	st, err := client.Watch(ctx, &ctlpb.WatchRequest{})
	if err != nil {
		return
	}
	var kidRestarts int64 // as this controller last reported
	for {
		s, err := st.Recv()
		if err != nil {
			if !errors.Is(ctx.Err(), context.Canceled) {
				c.log.Debug("watch ended", zap.Error(err))
			}
			return
		}
		if n := s.GetKidRestarts(); n > kidRestarts {
			c.d.metrics.KidRestarted(c.sync, n-kidRestarts)
			kidRestarts = n
		}
		c.mu.Lock()
		c.procs, c.state = s.GetProcesses(), ""
		c.mu.Unlock()
	}
}
