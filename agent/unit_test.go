package agent

import (
	"testing"
	"time"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/schemas"
)

// fakeProcess is a worker with no process behind it, for the slot bookkeeping.
func fakeProcess(inc uint32, threads int) *worker {
	return &worker{id: "w", incarnation: inc, exited: make(chan struct{}),
		hello: hello{Threads: threads, ThreadSafe: true}}
}

func bookkeepingPool(t *testing.T, mutate func(*config.Pool)) (*Pool, *unit) {
	t.Helper()
	cfg := config.Default().Pools[0]
	cfg.PoolSize = 1
	mutate(&cfg)
	p, err := NewPool(cfg, PoolOptions{AgentID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	return p, p.units[0]
}

func (p *Pool) mustAcquire(t *testing.T) *slot {
	t.Helper()
	s, err := p.acquire(t.Context(), &schemas.Request{RequestID: "r"}, attempt{since: time.Now()})
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	return s
}

func woken(u *unit) bool {
	select {
	case <-u.kick:
		return true
	default:
		return false
	}
}

// TestMaxRequestsHandover: a worker with worker_max_requests 2 asks for its
// replacement after its first request, takes no third, and the standby takes
// over at the release of the second, in the same slot.
func TestMaxRequestsHandover(t *testing.T) {
	p, u := bookkeepingPool(t, func(c *config.Pool) { c.WorkerMaxRequests = 2 })
	old, standby := fakeProcess(1, 1), fakeProcess(2, 1)
	p.mu.Lock()
	p.installLocked(u, old, nil)
	p.mu.Unlock()

	p.release(p.mustAcquire(t), true)
	if !woken(u) {
		t.Fatal("no wake-up to start the replacement after request 1 of 2")
	}
	p.mu.Lock()
	u.standby = standby
	p.mu.Unlock()

	s := p.mustAcquire(t)
	if s.worker != old {
		t.Fatal("request 2 did not run on the old worker")
	}
	p.release(s, true)
	p.mu.Lock()
	defer p.mu.Unlock()
	if u.worker != standby || s.worker != standby || s.idleElem == nil || s.incarnation != 2 {
		t.Fatalf("after request 2: serving %p, slot %p idle %v incarnation %d; want the standby, idle, 2",
			u.worker, s.worker, s.idleElem != nil, s.incarnation)
	}
	if n, ok := u.retiring[old]; !ok || n != 0 || p.stats.recycles != 1 {
		t.Fatalf("retiring[old] = %d, %v; recycles %d; want 0, true, 1", n, ok, p.stats.recycles)
	}
}

// TestMaxRequestsWithoutStandbyTakesNoNewRequest: a worker that ran dry before
// its replacement is ready is out of service, not offered again.
func TestMaxRequestsWithoutStandbyTakesNoNewRequest(t *testing.T) {
	p, u := bookkeepingPool(t, func(c *config.Pool) { c.WorkerMaxRequests = 1 })
	p.mu.Lock()
	p.installLocked(u, fakeProcess(1, 1), nil)
	p.mu.Unlock()
	p.release(p.mustAcquire(t), true)
	if st := p.Stats(); st.Available != 0 || st.Busy != 0 || p.Workers()[0].State != StateStopping {
		t.Fatalf("dry worker: stats %+v, state %s; want not available, stopping",
			st, p.Workers()[0].State)
	}
	p.mu.Lock()
	p.installLocked(u, fakeProcess(2, 1), nil)
	p.mu.Unlock()
	if st := p.Stats(); st.Available != 1 {
		t.Fatalf("after the replacement: %d available, want 1", st.Available)
	}
}

// TestThreadWorkerRetiresAfterItsLastRequest: a replaced thread worker keeps
// the slots that run on it until they are released, and is let go after the
// last one.
func TestThreadWorkerRetiresAfterItsLastRequest(t *testing.T) {
	p, u := bookkeepingPool(t, func(c *config.Pool) {
		c.WorkerProfile, c.ThreadsPerWorker = config.ProfileThread, 3
	})
	old, fresh := fakeProcess(1, 3), fakeProcess(2, 3)
	p.mu.Lock()
	p.installLocked(u, old, nil)
	p.mu.Unlock()
	a, b := p.mustAcquire(t), p.mustAcquire(t)

	p.mu.Lock()
	p.installLocked(u, fresh, nil)
	busyOnOld := u.retiring[old]
	p.mu.Unlock()
	if busyOnOld != 2 || a.worker != old || b.worker != old {
		t.Fatalf("after the handover %d slots run on the old worker, want 2 kept on it", busyOnOld)
	}
	_ = woken(u)
	p.release(a, true)
	if woken(u) {
		t.Fatal("woken to retire the old worker while a request still runs on it")
	}
	p.release(b, true)
	if !woken(u) || u.retiring[old] != 0 || a.worker != fresh || b.worker != fresh {
		t.Fatalf("after the last release: retiring %d, slots on fresh %v %v; want 0 and woken",
			u.retiring[old], a.worker == fresh, b.worker == fresh)
	}
	if st := p.Stats(); st.Workers != 1 || st.Available != 1 {
		t.Fatalf("stats %+v, want 1 worker available", st)
	}
}

func TestCapacityOf(t *testing.T) {
	thread := config.Pool{WorkerProfile: config.ProfileThread, ThreadsPerWorker: 4}
	cases := []struct {
		strategy   string
		threads    int
		threadSafe bool
		want       int
	}{
		{config.CapacityPool, 4, false, 4},
		{config.CapacityProfile, 4, true, 4},
		{config.CapacityProfile, 4, false, 1},
		{config.CapacityProfile, 8, true, 4}, // never more than the slots
		{config.CapacityHybrid, 2, true, 2},
		{config.CapacityHybrid, 4, false, 1},
	}
	for _, tc := range cases {
		pool := thread
		pool.CapacityStrategy = tc.strategy
		h := &hello{Threads: tc.threads, ThreadSafe: tc.threadSafe}
		if got := capacityOf(&pool, h, 4); got != tc.want {
			t.Errorf("capacityOf(%s, threads %d, thread safe %v) = %d, want %d",
				tc.strategy, tc.threads, tc.threadSafe, got, tc.want)
		}
	}
}
