package agent

import (
	"errors"
	"testing"
	"time"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/schemas"
)

func pipelinedPool(t *testing.T, size int) *Pool {
	t.Helper()
	cfg := config.Default().Pools[0]
	cfg.PoolSize = size
	p, err := NewPool(cfg, PoolOptions{AgentID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	for i, u := range p.units {
		p.installLocked(u, fakeProcess(uint32(i+1), 1), nil)
	}
	p.mu.Unlock()
	return p
}

// take acquires for a pipe request of command and marks it running, as
// executeOnce does.
func (p *Pool) take(t *testing.T, command string) *slot {
	t.Helper()
	s, err := p.acquire(t.Context(), &schemas.Request{RequestID: "r", Command: command},
		attempt{pipe: true, since: time.Now()})
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	p.mu.Lock()
	s.command, s.pipe, s.began = command, true, time.Now()
	p.mu.Unlock()
	return s
}

// TestSpareIsNotAFreeWorker: a pipelined pool of 2 reports 2 workers and 2
// free; the spares are taken only once both workers run a request, and then
// the pool reports none free and both busy.
func TestSpareIsNotAFreeWorker(t *testing.T) {
	p := pipelinedPool(t, 2)
	if c := p.Capacity(); c.Workers != 2 || c.Free != 2 {
		t.Fatalf("idle capacity %+v, want 2 workers, 2 free", c)
	}
	p.mu.Lock()
	p.took["ping"] = 100 * time.Microsecond
	p.mu.Unlock()
	a, b := p.take(t, "ping"), p.take(t, "ping")
	if a.unit == b.unit {
		t.Fatal("second request pipelined behind the first while another worker was free")
	}
	if c, st := p.Capacity(), p.Stats(); c.Free != 0 || st.Busy != 2 || st.Available != 0 {
		t.Fatalf("both running: capacity %+v, stats %+v; want none free, 2 busy", c, st)
	}
	c := p.take(t, "ping")
	if c.unit != a.unit && c.unit != b.unit {
		t.Fatal("third request got no spare")
	}
	d := p.take(t, "ping")
	if d.unit == c.unit {
		t.Fatal("fourth request took the spare already taken")
	}
	if p.Stats().Queued != 0 {
		t.Fatal("a request queued while a spare was free")
	}
}

// TestSpareOnlyBehindShortRequests: no spare is taken behind a command never
// timed, one whose last run was long, or a request already running long.
func TestSpareOnlyBehindShortRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		took time.Duration // 0: never timed
		age  time.Duration
	}{
		{"untimed command", 0, 0},
		{"long command", 50 * time.Millisecond, 0},
		{"long running request", 100 * time.Microsecond, 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pipelinedPool(t, 1)
			a := p.take(t, "work")
			p.mu.Lock()
			if tc.took > 0 {
				p.took["work"] = tc.took
			}
			a.began = time.Now().Add(-tc.age)
			s := p.takeSpareLocked()
			p.mu.Unlock()
			if s != nil {
				t.Fatal("took a spare")
			}
		})
	}
}

// TestReleaseKeepsOneFreeWorkerPerUnit: the free slots of an idle pipelined
// unit are one free worker and one spare, however its two requests ended.
func TestReleaseKeepsOneFreeWorkerPerUnit(t *testing.T) {
	p := pipelinedPool(t, 1)
	p.mu.Lock()
	p.took["ping"] = 100 * time.Microsecond
	p.mu.Unlock()
	for _, order := range []string{"first ends first", "second ends first"} {
		a, b := p.take(t, "ping"), p.take(t, "ping")
		if a.unit != b.unit {
			t.Fatal("one unit, two units used")
		}
		if order == "first ends first" {
			p.release(a, true)
			p.release(b, true)
		} else {
			p.release(b, true)
			p.release(a, true)
		}
		p.mu.Lock()
		idle, spare := p.idle.Len(), p.spare.Len()
		p.mu.Unlock()
		if idle != 1 || spare != 1 || p.Stats().Available != 1 {
			t.Fatalf("%s: %d in idle, %d spare; want 1 and 1", order, idle, spare)
		}
	}
}

// TestRequeuedRequestIsNotServed: a request handed back unstarted does not
// count toward worker_max_requests.
func TestRequeuedRequestIsNotServed(t *testing.T) {
	p := pipelinedPool(t, 1)
	s := p.take(t, "ping")
	p.release(s, false)
	if u := p.units[0]; u.served != 0 {
		t.Fatalf("served %d after a handed-back request, want 0", u.served)
	}
}

// TestReplacementIsFreeWhileTheOldWorkerFinishes: a request still running on
// a worker being replaced does not make the replacement's slot a spare: the new
// worker is free at once.
func TestReplacementIsFreeWhileTheOldWorkerFinishes(t *testing.T) {
	p := pipelinedPool(t, 1)
	p.mu.Lock()
	p.took["ping"] = 100 * time.Microsecond
	p.mu.Unlock()
	a, b := p.take(t, "ping"), p.take(t, "ping")
	u := a.unit
	p.mu.Lock()
	p.installLocked(u, fakeProcess(9, 1), nil)
	p.mu.Unlock()
	p.release(a, true)
	if c := p.Capacity(); c.Free != 1 || p.Stats().Available != 1 {
		t.Fatalf("replacement idle while the old worker finishes: capacity %+v, stats %+v; want 1 free",
			c, p.Stats())
	}
	p.release(b, true)
	p.mu.Lock()
	idle, spare := p.idle.Len(), p.spare.Len()
	p.mu.Unlock()
	if idle != 1 || spare != 1 {
		t.Fatalf("after both ended: %d idle, %d spare; want 1 and 1", idle, spare)
	}
}

// TestQueueWaitCountsFromTheFirstTry: a request handed back after waiting in
// a pipe has only what is left of its queue timeout, and is queued even when
// the queue is full (it was admitted already).
func TestQueueWaitCountsFromTheFirstTry(t *testing.T) {
	p := pipelinedPool(t, 1)
	p.cfg.MaxQueueSize = 1
	running := p.take(t, "work")
	// Fill the queue with one waiter of its own.
	queued := make(chan error, 1)
	go func() {
		_, err := p.acquire(t.Context(), &schemas.Request{RequestID: "w"}, attempt{since: time.Now()})
		queued <- err
	}()
	for p.Stats().Queued != 1 {
		time.Sleep(time.Millisecond)
	}
	began := time.Now()
	_, err := p.acquire(t.Context(), &schemas.Request{RequestID: "r"},
		attempt{again: true, since: time.Now().Add(-p.cfg.QueueTimeout + 50*time.Millisecond)})
	var e *schemas.Error
	if !errors.As(err, &e) || e.Reason != schemas.ReasonQueueTimeout {
		t.Fatalf("handed-back request in a full queue: %v, want queue_timeout (not saturated)", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Fatalf("queue timeout after %v: the wait started again", took)
	}
	p.release(running, true)
	if err := <-queued; err != nil {
		t.Fatalf("the queued request: %v", err)
	}
}

// TestStrictQueueWaiterRefusesTheReplacement: a session request queued for its
// worker (strict_queue) that is handed the worker's replacement fails with
// session_worker_unavailable instead of running without the session's state.
func TestStrictQueueWaiterRefusesTheReplacement(t *testing.T) {
	p := pipelinedPool(t, 1)
	u := p.units[0]
	a := p.take(t, "work")
	route := &schemas.SessionRoute{WorkerID: u.id, Incarnation: 1, Mode: config.AffinityStrictQueue}
	done := make(chan error, 1)
	go func() {
		done <- p.execute(t.Context(), &schemas.Request{RequestID: "s", Command: "process",
			Session: route}, true, func(*worker) error {
			t.Error("the session's request ran on the replacement")
			return nil
		})
	}()
	for p.Stats().Queued != 1 {
		time.Sleep(time.Millisecond)
	}
	// The worker crashed (supervisor.onCrash) and its replacement came up.
	p.mu.Lock()
	u.worker = nil
	for _, s := range u.slots {
		if !s.busy {
			p.detachLocked(s)
		}
	}
	p.installLocked(u, fakeProcess(2, 1), nil)
	p.mu.Unlock()
	err := <-done
	var e *schemas.Error
	if !errors.As(err, &e) || e.Reason != schemas.ReasonSessionUnavailable {
		t.Fatalf("strict_queue request on the replacement: %v, want session_worker_unavailable", err)
	}
	p.release(a, true)
}

// TestHintCallOnAnotherWorkerRuns: a hint-mode session call whose leased worker
// is busy runs on another worker, whatever that worker's incarnation.
func TestHintCallOnAnotherWorkerRuns(t *testing.T) {
	p := pipelinedPool(t, 2) // incarnations 1 and 2
	leased := p.take(t, "work")
	route := &schemas.SessionRoute{WorkerID: leased.unit.id, Incarnation: 1,
		Mode: config.AffinityHint}
	ran := false
	err := p.execute(t.Context(), &schemas.Request{RequestID: "s", Command: "process",
		Session: route}, true, func(*worker) error { ran = true; return nil })
	if err != nil || !ran {
		t.Fatalf("hint call with its worker busy: ran %v, err %v; want it run elsewhere", ran, err)
	}
	if !route.Guest {
		t.Fatal("the call ran on a worker that does not hold the session, not as a guest")
	}
	p.release(leased, true)
}

// TestSessionCallsAreGuestsOnlyElsewhere: a session call on its leased worker,
// or on the worker it was just bound to, is no guest there.
func TestSessionCallsAreGuestsOnlyElsewhere(t *testing.T) {
	p := pipelinedPool(t, 2)
	u := p.units[0]
	leased := &schemas.SessionRoute{WorkerID: u.id, Incarnation: 1, Mode: config.AffinityHint}
	fresh := &schemas.SessionRoute{NeedBind: true, Mode: config.AffinityHint,
		Bind: func(string, uint32) (int64, error) { return 9, nil }}
	for name, route := range map[string]*schemas.SessionRoute{"leased": leased, "new": fresh} {
		err := p.execute(t.Context(), &schemas.Request{RequestID: name, Command: "work",
			Session: route}, true, func(*worker) error { return nil })
		if err != nil {
			t.Fatalf("%s session call: %v", name, err)
		}
		if route.Guest || route.WorkerID == "" {
			t.Fatalf("%s session call: guest %v, worker %q; want no guest, bound", name,
				route.Guest, route.WorkerID)
		}
	}
}

// TestLeasedSpareOnlyWherePipeliningMay: a session call whose worker runs a
// request takes that worker's spare only where any request could: a pipe
// request, behind a short one. That holds whichever of the unit's slots is the
// spare; otherwise a hint call goes to any worker instead.
func TestLeasedSpareOnlyWherePipeliningMay(t *testing.T) {
	for _, tc := range []struct {
		name string
		pipe bool
		age  time.Duration // of the running request
		take bool
	}{
		{"pipe request behind a short one", true, 0, true},
		{"pipe request behind a long-running one", true, 10 * time.Millisecond, false},
		{"stream behind a short one", false, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pipelinedPool(t, 1)
			p.mu.Lock()
			p.took["ping"] = 100 * time.Microsecond
			p.mu.Unlock()
			// The first request ends while the one pipelined behind it runs:
			// the unit's first slot is now its spare.
			a, b := p.take(t, "ping"), p.take(t, "ping")
			p.release(a, true)
			p.mu.Lock()
			if p.slots[0] != a || a.idleList != &p.spare || !b.busy {
				p.mu.Unlock()
				t.Fatal("set-up: the unit's first slot is not its spare")
			}
			b.began = time.Now().Add(-tc.age)
			p.mu.Unlock()
			route := &schemas.SessionRoute{WorkerID: a.id, Incarnation: a.incarnation,
				Mode: config.AffinityHint}
			s, err, done := p.acquireLeased(t.Context(), &schemas.Request{RequestID: "s",
				Command: "ping", Session: route}, route, attempt{pipe: tc.pipe, since: time.Now()})
			if err != nil {
				t.Fatalf("acquireLeased: %v", err)
			}
			if tc.take && (s != a || !done) {
				t.Fatalf("got slot %p done %v, want the spare", s, done)
			}
			if !tc.take && (s != nil || done) {
				t.Fatalf("got slot %p done %v, want none: the call goes to any worker", s, done)
			}
			if route.NeedBind || route.Reset {
				t.Fatal("the lease was moved or reset while its worker lives")
			}
		})
	}
}

// TestStrictWaitersDoNotStarveTheQueue: a freed worker serves the oldest
// request waiting for it, whether that one waits in the pool's queue or for
// this worker alone (strict_queue); a stream of strict calls does not keep a
// plain call queued behind them.
func TestStrictWaitersDoNotStarveTheQueue(t *testing.T) {
	p := pipelinedPool(t, 1)
	u := p.units[0]
	a := p.take(t, "work") // never timed: nothing is pipelined behind it
	order := make(chan string, 2)
	run := func(name string) func(*worker) error {
		return func(*worker) error { order <- name; return nil }
	}
	errs := make(chan error, 2)
	go func() {
		errs <- p.execute(t.Context(), &schemas.Request{RequestID: "plain", Command: "work"},
			true, run("plain"))
	}()
	for p.Stats().Queued != 1 {
		time.Sleep(time.Millisecond)
	}
	route := &schemas.SessionRoute{WorkerID: u.id, Incarnation: 1, Mode: config.AffinityStrictQueue}
	go func() {
		errs <- p.execute(t.Context(), &schemas.Request{RequestID: "strict", Command: "work",
			Session: route}, true, run("strict"))
	}()
	for p.Stats().Queued != 2 {
		time.Sleep(time.Millisecond)
	}
	p.release(a, true)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("execute: %v", err)
		}
	}
	if first, second := <-order, <-order; first != "plain" || second != "strict" {
		t.Fatalf("ran %s then %s; want the older plain call first", first, second)
	}
}

// TestHintCallHandedTheReplacementStartsAfresh: a hint call that waited in the
// queue while its worker was replaced (worker_max_requests) and is handed the
// replacement runs there, the session started afresh (Reset, a new lease),
// instead of failing session_worker_unavailable.
func TestHintCallHandedTheReplacementStartsAfresh(t *testing.T) {
	p := pipelinedPool(t, 1)
	u := p.units[0]
	a := p.take(t, "work") // the old worker's last request, still running
	var boundInc uint32
	route := &schemas.SessionRoute{WorkerID: u.id, Incarnation: 1, Mode: config.AffinityHint,
		Bind: func(_ string, inc uint32) (int64, error) { boundInc = inc; return 7, nil }}
	ran := make(chan uint32, 1)
	done := make(chan error, 1)
	go func() {
		done <- p.execute(t.Context(), &schemas.Request{RequestID: "s", Command: "work",
			Session: route}, true, func(w *worker) error { ran <- w.incarnation; return nil })
	}()
	for p.Stats().Queued != 1 {
		time.Sleep(time.Millisecond)
	}
	p.mu.Lock()
	p.installLocked(u, fakeProcess(2, 1), nil)
	p.mu.Unlock()
	if err := <-done; err != nil {
		t.Fatalf("hint call handed the replacement: %v, want it run there afresh", err)
	}
	if inc := <-ran; inc != 2 || boundInc != 2 || !route.Reset || route.Epoch != 7 {
		t.Fatalf("ran on incarnation %d, bound to %d, reset %v, epoch %d; want 2, 2, true, 7",
			inc, boundInc, route.Reset, route.Epoch)
	}
	p.release(a, true)
}

// TestStrictWaiterTakesAnyThreadOfItsWorker: a strict_queue call waiting for a
// thread-profile worker runs on whichever of its threads frees first.
func TestStrictWaiterTakesAnyThreadOfItsWorker(t *testing.T) {
	p, u := bookkeepingPool(t, func(c *config.Pool) {
		c.WorkerProfile, c.ThreadsPerWorker = config.ProfileThread, 2
	})
	p.mu.Lock()
	p.installLocked(u, fakeProcess(1, 2), nil)
	p.mu.Unlock()
	first, second := p.mustAcquire(t), p.mustAcquire(t)
	if first.id != second.id {
		t.Fatal("set-up: two workers, want two threads of one")
	}
	route := &schemas.SessionRoute{WorkerID: u.id, Incarnation: 1, Mode: config.AffinityStrictQueue}
	done := make(chan error, 1)
	go func() {
		done <- p.execute(t.Context(), &schemas.Request{RequestID: "s", Command: "work",
			Session: route}, true, func(*worker) error { return nil })
	}()
	for p.Stats().Queued != 1 {
		time.Sleep(time.Millisecond)
	}
	// Whichever thread the call queued on, the other one frees.
	p.release(second, true)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("strict call: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("strict call still waits while a thread of its worker is free")
	}
	p.release(first, true)
}
