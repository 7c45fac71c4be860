package agent

import (
	"container/list"
	"time"
)

// Pipelining (worker_pipelining, the process profile): each unit has one slot
// more than its worker runs at once, its spare. When every worker is busy, a
// request may take the spare of a worker whose running request is short: it
// is written to that worker's pipe at once and starts the moment the running
// one ends, instead of waiting in the queue for the round trip through the
// agent. Under load the worker then finds its next request already in the pipe
// and never sleeps between requests.
//
// The spare is taken only behind a request of a command whose last run took
// less than pipelineShort, and only while the running request is younger than
// that; never by a stream or behind one. A pipelined request the worker still
// finds waiting behind a running one after its hold (PIPELINE_HOLD in the
// runtime) is handed back unstarted, and the pool queues it again in front.
// A worker that dies with a pipelined request it has not started has that
// request run elsewhere, as if the worker had died before it was sent.
//
// The free slots of a pipelined unit are kept so that an idle unit has one in
// Pool.idle (a free worker) and one in Pool.spare; a busy unit's free slot is
// in Pool.spare. Capacity and stats count only the former: a spare is not a
// free worker.

// pipelineShort bounds the running request a spare may be taken behind: its
// command's last run and its own age so far.
const pipelineShort = 2 * time.Millisecond

// maxPipelinedArgs bounds the arguments of a request that may be pipelined: far
// below the 1 MiB pipe buffer, so a frame waiting in a pipe never blocks.
const maxPipelinedArgs = 64 << 10

// maxTimedCommands bounds the commands whose last run the pool remembers;
// callers choose command names, so the map must not grow without end.
const maxTimedCommands = 256

// spareLocked reports whether the free slot s is its unit's spare: the unit is
// pipelined and its serving worker runs a request, or the unit's free worker is
// already offered through another of its slots. (A request still running on a
// worker being replaced leaves the new worker free.)
func (p *Pool) spareLocked(s *slot) bool {
	u := s.unit
	if !u.pipelined {
		return false
	}
	for _, o := range u.slots {
		if o != s && ((o.busy && o.worker == u.worker) || o.idleList == &p.idle) {
			return true
		}
	}
	return false
}

// offerSpareLocked gives a spare to the oldest waiter if it may be pipelined
// behind the unit's running request; else the spare waits in Pool.spare.
func (p *Pool) offerSpareLocked(s *slot) {
	if front := p.waiters.Front(); front != nil && front.Value.(*waiter).pipe &&
		p.pipelineOKLocked(s.unit, time.Now()) {
		p.handLocked(s, front)
		return
	}
	p.listFreeLocked(s, &p.spare)
}

// takeSpareLocked takes, busy-marked, the first spare whose unit may pipeline
// now, or returns nil.
func (p *Pool) takeSpareLocked() *slot {
	now := time.Now()
	for e := p.spare.Front(); e != nil; e = e.Next() {
		s := e.Value.(*slot)
		if !p.pipelineOKLocked(s.unit, now) {
			continue
		}
		p.unlistLocked(s)
		p.markBusyLocked(s)
		return s
	}
	return nil
}

// pipelineOKLocked reports whether a request may wait in the pipe of u's
// worker: the worker runs exactly one request, one that could have been
// pipelined itself (not a stream, not large), of a command whose
// last run was short, that began less than pipelineShort ago, and one more
// request stays within worker_max_requests.
func (p *Pool) pipelineOKLocked(u *unit, now time.Time) bool {
	if !u.pipelined || u.dry || u.worker == nil {
		return false
	}
	var running *slot
	for _, s := range u.slots {
		if !s.busy {
			continue
		}
		if running != nil {
			return false
		}
		running = s
	}
	if running == nil || running.worker != u.worker || !running.pipe || running.began.IsZero() ||
		newRecyclePolicy(p.cfg).exhausted(u.startedLocked()) {
		return false
	}
	took, ok := p.took[running.command]
	return ok && took < pipelineShort && now.Sub(running.began) < pipelineShort
}

// tookLocked remembers how long the request just released held slot s.
func (p *Pool) tookLocked(s *slot) {
	if s.began.IsZero() || !s.pipe || !s.unit.pipelined {
		return
	}
	if _, ok := p.took[s.command]; !ok && len(p.took) >= maxTimedCommands {
		return
	}
	p.took[s.command] = time.Since(s.began)
}

// unitWaiter returns the oldest request queued for s's worker alone
// (strict_queue). They wait on one of the worker's slots, and whichever of its
// slots frees (another thread of a thread-profile worker, the other slot of a
// pipelined one) serves them.
func (s *slot) unitWaiter() *list.Element {
	if front := s.waiters.Front(); front != nil {
		return front
	}
	for _, o := range s.unit.slots {
		if front := o.waiters.Front(); front != nil {
			return front
		}
	}
	return nil
}

// servingBusyLocked reports whether the unit's serving worker runs a request.
func (u *unit) servingBusyLocked() bool {
	for _, s := range u.slots {
		if s.busy && s.worker == u.worker {
			return true
		}
	}
	return false
}

// spareSlots counts the slots that are spares rather than workers: one per
// unit of a pipelined pool.
func (p *Pool) spareSlots() int {
	if p.cfg.Pipelined() {
		return len(p.units)
	}
	return 0
}
