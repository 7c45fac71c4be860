package agent

import (
	"fmt"

	"github.com/snakepit-go/snakepit/config"
)

// unit is the place of one worker process in the pool and the slots it fills:
// one in the process profile, Concurrency() in the thread profile, all with
// the unit's worker id. The request path (acquire, release) sees only slots;
// the unit's supervisor owns the processes (supervisor.go).
//
// A slot is attached to the unit's serving worker while it is idle. A busy
// slot keeps the worker its request runs on until release, so a worker being
// replaced finishes what it runs: it is retiring until its last slot comes
// back, and only then shut down.
type unit struct {
	index int
	id    string
	slots []*slot
	// kick wakes the supervisor when the request path changed something it must
	// act on; capacity 1, sent without blocking.
	kick     chan struct{}
	cleanups chan *cleanupRequest

	// The fields below are guarded by Pool.mu.

	worker *worker // serving; nil while (re)starting
	// standby is a replacement started ahead of need (worker_max_requests),
	// ready but not serving yet.
	standby *worker
	// retiring maps replaced workers to the slots still running on them.
	retiring map[*worker]int
	capacity int // slots the serving worker fills
	// pipelined units have one slot more than their worker runs at once: its
	// spare (pipeline.go).
	pipelined bool
	served    int // requests finished on the serving worker
	// dry is set once the serving worker reached worker_max_requests: it takes
	// no new request.
	dry         bool
	incarnation uint32 // of the newest process started
	state       string // while worker is nil: starting, crashed or crash_loop
}

// newUnits lays out the units of a pool and their slots, unit by unit.
func newUnits(cfg config.Pool, agentID string) ([]*unit, []*slot) {
	per := max(cfg.Concurrency(), 1)
	if cfg.Pipelined() {
		per++
	}
	var units []*unit
	var slots []*slot
	for i := range cfg.PoolSize {
		u := &unit{
			index: i, id: fmt.Sprintf("%s-%d@%s", cfg.Name, i+1, agentID),
			kick: make(chan struct{}, 1), cleanups: make(chan *cleanupRequest),
			retiring: map[*worker]int{}, state: StateStarting, pipelined: cfg.Pipelined(),
		}
		for range per {
			s := &slot{index: len(slots), id: u.id, state: StateStarting, unit: u}
			u.slots = append(u.slots, s)
			slots = append(slots, s)
		}
		units = append(units, u)
	}
	return units, slots
}

// wake tells the supervisor to look at the unit again.
func (u *unit) wake() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// position is a slot's place among its unit's slots.
func (s *slot) position() int { return s.index - s.unit.slots[0].index }

// installLocked makes w the unit's serving worker and returns the one it
// replaces (nil if none), which is then retiring. Idle slots switch to w at
// once and are offered to the queue, except skip, which the caller offers.
func (p *Pool) installLocked(u *unit, w *worker, skip *slot) *worker {
	old := u.worker
	u.worker, u.served, u.dry = w, 0, false
	u.capacity = capacityOf(&p.cfg, &w.hello, len(u.slots))
	if u.pipelined {
		u.capacity = len(u.slots)
	}
	if old != nil {
		u.retiring[old] = 0
	}
	for _, s := range u.slots {
		if s.busy {
			if old != nil && s.worker == old {
				u.retiring[old]++
			}
			continue
		}
		p.attachLocked(s)
		if s.idleList == &p.spare {
			// A spare of the old worker: the new one may need it as its free
			// worker (pipeline.go).
			p.unlistLocked(s)
		}
		if s != skip && s.worker != nil && s.idleElem == nil && !p.stopping {
			p.offerLocked(s)
		}
	}
	if old != nil && u.retiring[old] == 0 {
		u.wake()
	}
	return old
}

// attachLocked points an idle slot at its unit's serving worker, or takes it
// out of service when there is none, it runs dry, or the slot is beyond the
// worker's capacity. It offers nothing to the queue.
func (p *Pool) attachLocked(s *slot) {
	u := s.unit
	if u.worker == nil || u.dry || s.position() >= u.capacity {
		p.detachLocked(s)
		return
	}
	s.worker, s.incarnation = u.worker, u.worker.incarnation
	if s.idleElem == nil {
		s.state = StateReady
	}
}

// detachLocked takes an idle slot out of service.
func (p *Pool) detachLocked(s *slot) {
	if s.idleElem != nil {
		p.unlistLocked(s)
		p.signalCapacityLocked()
	}
	s.worker = nil
	s.state = s.unit.state
	if s.unit.worker != nil {
		// Out of service while its worker lives: it runs dry or the slot is
		// beyond its capacity; the replacement (if any) is on its way.
		s.state = StateStarting
	}
}

// releasedLocked is called by release once a slot's request has ended, before
// the slot is offered again: it counts the request against the worker it ran
// on (if it ran), lets a retiring worker go once its last request ended, and
// re-attaches the slot to the unit's serving worker (or takes it out of
// service).
func (p *Pool) releasedLocked(s *slot, ran bool) {
	u := s.unit
	switch w := s.worker; {
	case w == nil:
	case w == u.worker:
		if ran {
			u.served++
		}
		p.checkRecycleLocked(u, s)
	default:
		if n, ok := u.retiring[w]; ok {
			u.retiring[w] = n - 1
			if n-1 <= 0 {
				u.wake()
			}
		}
	}
	p.attachLocked(s)
}

// startedLocked is how many requests have begun on the serving worker: those
// finished and those its busy slots run.
func (u *unit) startedLocked() int {
	n := u.served
	for _, s := range u.slots {
		if s.busy && s.worker == u.worker {
			n++
		}
	}
	return n
}

// checkRecycleLocked applies worker_max_requests after a request on the
// serving worker ended; releasing is the slot being released.
func (p *Pool) checkRecycleLocked(u *unit, releasing *slot) {
	pol := newRecyclePolicy(p.cfg)
	started := u.startedLocked()
	if !pol.exhausted(started) {
		if pol.prepare(started, u.capacity) && u.standby == nil {
			u.wake()
		}
		return
	}
	u.dry = true
	if nw := u.standby; nw != nil {
		u.standby = nil
		old := p.installLocked(u, nw, releasing)
		p.stats.recycles++
		logRecycled(old, nw, recycleMaxRequests)
		// Not under the pool's lock: a subscriber may ask the pool for stats.
		go emitWorker(EventWorkerRecycled, p.cfg.Name, nw,
			map[string]any{"reason": recycleMaxRequests, "replaced_pid": old.pid})
		u.wake()
		return
	}
	for _, s := range u.slots {
		if !s.busy {
			p.detachLocked(s)
		}
	}
	u.wake()
}
