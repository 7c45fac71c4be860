package agent

import (
	"context"
	"sync"
	"time"

	"github.com/snakepit-go/snakepit/schemas"
)

// DefaultCleanupTimeout is how long Cleanup lets workers finish what they run
// before it terminates them (the reference's cleanup_timeout).
const DefaultCleanupTimeout = 5 * time.Second

// whyCleanup is why a worker is started after Cleanup.
const whyCleanup = "cleanup"

// cleanupRequest asks a unit's supervisor to end its processes by deadline.
type cleanupRequest struct {
	deadline time.Time
	reply    chan []*schemas.EndedWorker // capacity 1
}

// Cleanup ends every worker process of every pool: each is asked to exit
// (SHUTDOWN, so what it runs may finish) and terminated if it is still there
// after timeout (DefaultCleanupTimeout when zero), its whole process group
// with it. The pools take the ended workers out of service at once and start
// fresh processes in their place, so the agent keeps serving; queued requests
// wait for the fresh workers. It returns once every process ended.
func (a *Agent) Cleanup(ctx context.Context, timeout time.Duration) []*schemas.EndedWorker {
	var mu sync.Mutex
	var out []*schemas.EndedWorker
	var wg sync.WaitGroup
	for _, p := range a.pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ended := p.Cleanup(ctx, timeout)
			mu.Lock()
			out = append(out, ended...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// Cleanup is Agent.Cleanup for one pool.
func (p *Pool) Cleanup(ctx context.Context, timeout time.Duration) []*schemas.EndedWorker {
	if timeout <= 0 {
		timeout = DefaultCleanupTimeout
	}
	deadline := time.Now().Add(timeout)
	var reqs []*cleanupRequest
	for _, u := range p.units {
		req := &cleanupRequest{deadline: deadline, reply: make(chan []*schemas.EndedWorker, 1)}
		select {
		case u.cleanups <- req:
			reqs = append(reqs, req)
		case <-p.ctx.Done():
		case <-ctx.Done():
		}
	}
	var out []*schemas.EndedWorker
	for _, req := range reqs {
		select {
		case ended := <-req.reply:
			out = append(out, ended...)
		case <-ctx.Done():
			return out
		}
	}
	return out
}

// onCleanup ends the unit's processes by the request's deadline and starts a
// fresh one at once.
func (sv *supervisor) onCleanup(req *cleanupRequest) {
	p, u := sv.p, sv.u
	p.mu.Lock()
	targets := u.processesLocked()
	if w := u.worker; w != nil {
		u.retiring[w] = 0
		for _, s := range u.slots {
			if s.busy && s.worker == w {
				u.retiring[w]++
			}
		}
	}
	u.worker, u.standby, u.state = nil, nil, StateStarting
	for _, s := range u.slots {
		if !s.busy {
			p.detachLocked(s)
		}
	}
	for _, w := range targets {
		sv.ending[w] = true
	}
	p.mu.Unlock()

	sv.wg.Add(1)
	go func() {
		defer sv.wg.Done()
		req.reply <- sv.endAll(targets, req.deadline)
	}()
	sv.spawn(whyCleanup)
}

// endAll shuts the workers down by deadline, in parallel.
func (sv *supervisor) endAll(targets []*worker, deadline time.Time) []*schemas.EndedWorker {
	out := make([]*schemas.EndedWorker, len(targets))
	var wg sync.WaitGroup
	for i, w := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inTime := w.shutdown(sv.p.ctx, time.Until(deadline))
			out[i] = &schemas.EndedWorker{
				Pool: sv.p.cfg.Name, WorkerId: w.id, Pid: int32(w.pid), InTime: inTime,
			}
			w.log.Info().Bool(keyInTime, inTime).Msg("cleanup ended worker")
		}()
	}
	wg.Wait()
	return out
}
