package agent

import (
	"context"
	"time"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/schemas"
)

// acquireLeased finds the worker a session is leased to. It reports done=false
// when the call should go to any worker instead (hint mode), having set
// r.NeedBind when the lease must move to that worker.
func (p *Pool) acquireLeased(ctx context.Context, req *schemas.Request,
	r *schemas.SessionRoute, a attempt) (*slot, error, bool) {
	p.mu.Lock()
	s, free := p.leasedSlotLocked(r.WorkerID, a.pipe)
	if p.stopping {
		p.mu.Unlock()
		return nil, stoppingError(p.cfg.Name), true
	}
	if s == nil || s.worker == nil || s.incarnation != r.Incarnation || !s.worker.usable() {
		p.mu.Unlock()
		if r.Mode != config.AffinityHint {
			return nil, unavailableError(req, r), true
		}
		// The session's state died with its worker: start afresh elsewhere.
		r.Reset, r.NeedBind = true, true
		return nil, nil, false
	}
	if free {
		p.unlistLocked(s)
		p.signalCapacityLocked()
		p.markBusyLocked(s)
		p.mu.Unlock()
		return s, nil, true
	}
	switch r.Mode {
	case config.AffinityStrictFailFast:
		p.mu.Unlock()
		return nil, schemas.NewError(schemas.CategoryPool, schemas.ReasonWorkerBusy,
			"worker %s of session %q is busy", r.WorkerID, req.SessionID), true
	case config.AffinityStrictQueue:
		s, err := p.enqueueLocked(ctx, req, &s.waiters, attempt{again: a.again, since: a.since})
		return s, err, true
	}
	p.mu.Unlock()
	return nil, nil, false
}

// leasedSlotLocked finds the worker named id and reports whether the slot it
// returns may be taken now: an idle one if there is one (a thread-profile worker
// has several slots under one id), else, for a pipe request, the worker's spare
// if any request could take it (pipeline.go). Otherwise it returns one of the
// worker's slots, not to be taken, or nil when the pool has none of that id.
func (p *Pool) leasedSlotLocked(id string, pipe bool) (*slot, bool) {
	var first, spare *slot
	for _, s := range p.slots {
		if s.id != id {
			continue
		}
		switch {
		case !s.busy && s.idleList == &p.idle:
			return s, true
		case !s.busy && s.idleList == &p.spare:
			spare = s
		}
		if first == nil {
			first = s
		}
	}
	if spare != nil && pipe && p.pipelineOKLocked(spare.unit, time.Now()) {
		return spare, true
	}
	return first, false
}

func (p *Pool) slotByIDLocked(id string) *slot {
	for _, s := range p.slots {
		if s.id == id {
			return s
		}
	}
	return nil
}

func unavailableError(req *schemas.Request, r *schemas.SessionRoute) *schemas.Error {
	return schemas.NewError(schemas.CategoryPool, schemas.ReasonSessionUnavailable,
		"worker %s of session %q is gone (crashed or recycled); its state is lost",
		r.WorkerID, req.SessionID).WithDetail("worker_id", r.WorkerID)
}

// EndSession tells the worker holding a session that it ended, so the adapter's
// end hook runs; it does nothing if that worker process is gone.
func (p *Pool) EndSession(workerID string, incarnation uint32, sessionID string, epoch int64,
	reason string) {
	p.mu.Lock()
	s := p.slotByIDLocked(workerID)
	var w *worker
	if s != nil && s.incarnation == incarnation {
		w = s.worker
	}
	p.mu.Unlock()
	if w != nil {
		w.endSession(sessionID, epoch, reason)
	}
}
