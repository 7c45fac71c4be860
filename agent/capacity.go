package agent

import (
	"fmt"

	"github.com/snakepit-go/snakepit/schemas"
)

// Capacity returns how much work the pool can take now: idle workers, queued
// requests and the room left in the queue.
func (p *Pool) Capacity() *schemas.Capacity {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &schemas.Capacity{
		AgentId: p.agentID, Pool: p.cfg.Name,
		Workers: uint32(len(p.slots) - p.spareSlots()), Free: uint32(p.idle.Len()),
		Queued: uint32(p.queued),
		Room:   uint32(max(p.cfg.MaxQueueSize-p.queued, 0)), Draining: p.stopping,
	}
}

// CapacityChanged signals, coalesced, that Capacity may have changed.
func (p *Pool) CapacityChanged() <-chan struct{} { return p.capChanged }

// signalCapacityLocked notes a change of idle workers or queue length.
func (p *Pool) signalCapacityLocked() {
	select {
	case p.capChanged <- struct{}{}:
	default:
	}
}

// Reroute hands up to n of the oldest queued requests that may move (Movable)
// back to their callers with an error matching schemas.ErrElsewhere, so they can
// be sent to an agent with a free worker. It returns how many it handed back.
func (p *Pool) Reroute(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	moved := 0
	for e := p.waiters.Front(); e != nil && moved < n; {
		next := e.Next()
		if wt := e.Value.(*waiter); wt.movable {
			p.takeWaiterLocked(e)
			wt.rerouted = true
			wt.got <- nil
			moved++
		}
		e = next
	}
	return moved
}

func reroutedError(req *schemas.Request) error {
	return fmt.Errorf("request %s moved to another agent: %w", req.RequestID, schemas.ErrElsewhere)
}
