package agent

import "github.com/snakepit-go/snakepit/schemas"

// Stats returns the reference's stats map for this pool.
func (p *Pool) Stats() *schemas.PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := &schemas.PoolStats{
		Pool: p.cfg.Name, AgentId: p.agentID,
		Requests: p.stats.requests, Errors: p.stats.errors,
		QueueTimeouts: p.stats.queueTimeouts, PoolSaturated: p.stats.saturated,
		Restarts: p.stats.restarts, Recycles: p.stats.recycles,
		Queued:  uint32(p.queued),
		Workers: uint32(len(p.slots)),
	}
	for _, s := range p.slots {
		switch {
		case s.worker != nil && s.busy:
			st.Busy++
		case s.worker != nil && s.state == StateReady:
			st.Available++
		}
	}
	return st
}

// Workers describes every worker slot of the pool.
func (p *Pool) Workers() []*schemas.WorkerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*schemas.WorkerInfo, 0, len(p.slots))
	for _, s := range p.slots {
		wi := &schemas.WorkerInfo{
			Id: s.id, Pool: p.cfg.Name, AgentId: p.agentID, State: s.state,
			Requests: s.requests, Incarnation: s.incarnation,
		}
		if w := s.worker; w != nil {
			wi.Pid = int32(w.pid)
			wi.StartedUnixMs = w.started.UnixMilli()
		}
		out = append(out, wi)
	}
	return out
}

// Ready reports whether every slot has a live worker.
func (p *Pool) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.slots {
		if s.worker == nil {
			return false
		}
	}
	return true
}
