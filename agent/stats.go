package agent

import "github.com/snakepit-go/snakepit/schemas"

// Stats returns the reference's stats map for this pool. Workers counts worker
// processes; one is available while it can take another request (in the thread
// profile: while one of its threads is free) and busy while it cannot.
func (p *Pool) Stats() *schemas.PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := &schemas.PoolStats{
		Pool: p.cfg.Name, AgentId: p.agentID,
		Requests: p.stats.requests, Errors: p.stats.errors,
		QueueTimeouts: p.stats.queueTimeouts, PoolSaturated: p.stats.saturated,
		Restarts: p.stats.restarts, Recycles: p.stats.recycles,
		Queued:  uint32(p.queued),
		Workers: uint32(len(p.units)),
	}
	for _, u := range p.units {
		switch p.unitStateLocked(u) {
		case StateReady:
			st.Available++
		case StateBusy:
			st.Busy++
		case StateCrashLoop:
			st.CrashLooping++
		}
	}
	return st
}

// unitStateLocked is a worker's state as Workers reports it.
func (p *Pool) unitStateLocked(u *unit) string {
	switch {
	case u.worker == nil:
		return u.state
	case p.stopping || u.dry:
		return StateStopping
	case u.pipelined && u.servingBusyLocked():
		// Its spare is free, but the worker runs a request.
		return StateBusy
	}
	busy := false
	for _, s := range u.slots {
		switch {
		case !s.busy && s.worker == u.worker:
			return StateReady
		case s.busy && s.worker != nil:
			// On the serving worker, or finishing on one being replaced.
			busy = true
		}
	}
	if busy {
		return StateBusy
	}
	return StateStarting
}

// Workers describes every worker process of the pool.
func (p *Pool) Workers() []*schemas.WorkerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*schemas.WorkerInfo, 0, len(p.units))
	for _, u := range p.units {
		wi := &schemas.WorkerInfo{
			Id: u.id, Pool: p.cfg.Name, AgentId: p.agentID, State: p.unitStateLocked(u),
			Incarnation: u.incarnation,
		}
		for _, s := range u.slots {
			wi.Requests += s.requests
		}
		if w := u.worker; w != nil {
			wi.Pid = int32(w.pid)
			wi.StartedUnixMs = w.started.UnixMilli()
			wi.Incarnation = w.incarnation
		}
		out = append(out, wi)
	}
	return out
}

// Ready reports whether every worker process is up: started, its handshake
// done, and taking requests.
func (p *Pool) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range p.units {
		if st := p.unitStateLocked(u); st != StateReady && st != StateBusy {
			return false
		}
	}
	return true
}
