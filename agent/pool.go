package agent

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/schemas"
)

// Worker states as reported by Workers.
const (
	StateStarting  = "starting"
	StateReady     = "ready"
	StateBusy      = "busy"
	StateStopping  = "stopping"
	StateCrashed   = "crashed"
	StateCrashLoop = "crash_loop"
)

// slot is one place for a worker in the pool; the worker in it changes as
// processes crash and are replaced. Fields are guarded by Pool.mu.
type slot struct {
	index       int
	id          string
	worker      *worker // nil while (re)starting
	busy        bool
	idleElem    *list.Element
	idleList    *list.List // the list idleElem is in: Pool.idle or Pool.spare
	state       string
	incarnation uint32
	requests    uint64
	// waiters are session requests queued for this worker alone (strict_queue).
	waiters list.List
	// unit is the worker process's place this slot belongs to (unit.go).
	unit *unit
	// The request the slot runs, for pipelining (pipeline.go): its command,
	// whether it could have been pipelined itself (a call with small
	// arguments; not a stream), and when it took the slot (zero while free).
	command string
	pipe    bool
	began   time.Time
}

// waiter is a request queued for a worker; the pool hands it a slot on got.
type waiter struct {
	got   chan *slot // capacity 1
	elem  *list.Element
	queue *list.List // the list elem is in: the pool's or one slot's
	// movable requests may be handed back by Reroute; rerouted says one was.
	movable, rerouted bool
	// pipe lets the waiter take a worker that still runs a short request.
	pipe bool
	// seq orders every waiter of the pool, whichever queue it is in: the
	// lowest is the oldest (negative for one queued in front again).
	seq int64
}

// Pool is one named pool on this agent: a fixed number of worker slots, a bounded
// FIFO queue of requests waiting for a free worker, and the reference's stats.
type Pool struct {
	cfg        config.Pool
	agentID    string
	runtimeDir string
	stateDir   string // absolute; "" keeps no worker records
	log        zerolog.Logger

	ctx    context.Context // ends when the pool stops
	cancel context.CancelCauseFunc
	// hardStop bounds worker shutdown; set by Stop before cancel.
	hardStop context.Context
	sup      sync.WaitGroup // slot supervisors
	stopOnce sync.Once

	units []*unit // one per worker process, each with its slots; fixed

	tmplMu sync.Mutex
	tmpl   *template // forks the workers (worker_start: fork); nil: exec

	mu    sync.Mutex
	slots []*slot
	idle  list.List // of *slot, free workers
	// spare holds the free second slots of pipelined workers (pipeline.go).
	spare list.List
	// took is how long the last request of each command held its slot.
	took    map[string]time.Duration
	waiters list.List // of *waiter, oldest first
	// capChanged signals (capacity 1) that idle workers or the queue changed.
	capChanged chan struct{}
	queued     int // waiters here and on every slot
	waiterSeq  int64
	stopping   bool
	running    sync.WaitGroup // requests holding a worker
	stats      counters
}

type counters struct {
	requests, errors, queueTimeouts, saturated, restarts, recycles uint64
}

// PoolOptions are what a pool needs besides its configuration.
type PoolOptions struct {
	AgentID string
	// RuntimeDir holds the snakepit_worker package; it goes first on PYTHONPATH.
	RuntimeDir string
	// StateDir keeps a record of each worker process, so that a later agent on
	// the same dir can end what a killed one left. Empty: no records.
	StateDir string
	Log      zerolog.Logger
}

// NewPool returns a pool that has not started its workers.
func NewPool(cfg config.Pool, opts PoolOptions) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new pool %s: %w", cfg.Name, err)
	}
	p := &Pool{cfg: cfg, agentID: opts.AgentID, runtimeDir: opts.RuntimeDir,
		capChanged: make(chan struct{}, 1), took: map[string]time.Duration{}}
	if opts.StateDir != "" {
		p.stateDir, _ = filepath.Abs(opts.StateDir)
	}
	p.log = opts.Log.With().Str(keyPool, cfg.Name).Logger()
	p.ctx, p.cancel = context.WithCancelCause(context.Background())
	p.units, p.slots = newUnits(cfg, opts.AgentID)
	return p, nil
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.cfg.Name }

// Config returns the pool's configuration.
func (p *Pool) Config() config.Pool { return p.cfg }

// Start launches the workers in batches of startup_batch_size, one batch every
// startup_batch_delay_ms, and waits until each has finished its handshake. If a
// worker fails its first start, Start stops the pool and returns that error.
func (p *Pool) Start(ctx context.Context) error {
	began := time.Now()
	if p.runtimeDir != "" {
		if err := CompileRuntime(ctx, p.cfg.Python, p.runtimeDir); err != nil {
			p.log.Warn().Err(err).Msg("could not compile the worker runtime")
		}
	}
	p.startTemplate()
	results := make(chan error, len(p.units))
	for i, u := range p.units {
		if i > 0 && i%p.cfg.StartupBatchSize == 0 && !sleepCtx(ctx, p.cfg.StartupBatchDelay) {
			break
		}
		p.sup.Add(1)
		go p.supervise(u, results)
	}
	var first error
	for range p.units {
		var err error
		select {
		case err = <-results:
		case <-ctx.Done():
			err = fmt.Errorf("start pool %s: %w", p.cfg.Name, context.Cause(ctx))
		}
		if err != nil && first == nil {
			first = err
			break
		}
	}
	if first != nil {
		p.Stop(context.Background())
		return first
	}
	p.log.Info().Int("workers", len(p.units)).Int64(keyElapsedMs, time.Since(began).Milliseconds()).
		Msg("pool ready")
	return nil
}

// offerLocked gives a free slot to the oldest waiter, or marks it idle. The
// second free slot of a pipelined worker is its spare instead (pipeline.go).
func (p *Pool) offerLocked(s *slot) {
	p.signalCapacityLocked()
	if p.spareLocked(s) {
		p.offerSpareLocked(s)
		return
	}
	if front := p.nextWaiterLocked(s); front != nil {
		p.handLocked(s, front)
		return
	}
	p.listFreeLocked(s, &p.idle)
}

// handLocked gives the free slot s to the waiter queued at e.
func (p *Pool) handLocked(s *slot, e *list.Element) {
	wt := p.takeWaiterLocked(e)
	p.markBusyLocked(s)
	wt.got <- s
}

// listFreeLocked puts the free slot s in l, Pool.idle or Pool.spare.
func (p *Pool) listFreeLocked(s *slot, l *list.List) {
	s.busy = false
	s.state = StateReady
	s.idleElem, s.idleList = l.PushBack(s), l
}

// nextWaiterLocked returns the request a freed slot s serves: the older of the
// first queued for s's worker alone (strict_queue) and the first of the pool's
// queue, so that neither queue starves the other.
func (p *Pool) nextWaiterLocked(s *slot) *list.Element {
	mine, any := s.unitWaiter(), p.waiters.Front()
	if mine == nil || (any != nil && any.Value.(*waiter).seq < mine.Value.(*waiter).seq) {
		return any
	}
	return mine
}

// unlistLocked takes a free slot out of the list it waits in (Pool.idle or
// Pool.spare), if any.
func (p *Pool) unlistLocked(s *slot) {
	if s.idleElem != nil {
		s.idleList.Remove(s.idleElem)
		s.idleElem, s.idleList = nil, nil
	}
}

// markBusyLocked gives a slot to a request.
func (p *Pool) markBusyLocked(s *slot) {
	s.busy = true
	s.state = StateBusy
	p.running.Add(1)
}

// Execute runs one request on a free worker, waiting in the queue for one if
// needed. Errors are *schemas.Error.
func (p *Pool) Execute(ctx context.Context, req *schemas.Request) (*schemas.Result, error) {
	var res *schemas.Result
	// Only small requests are pipelined: a frame waiting in a pipe must never
	// fill it and block the writer (and the heartbeat behind it).
	pipe := len(req.Args) <= maxPipelinedArgs
	err := p.execute(ctx, req, pipe, func(w *worker) error {
		var err error
		res, err = w.call(req)
		return err
	})
	return res, err
}

// ExecuteStream runs a streaming request on a free worker; see schemas.StreamCall.
// It returns once the worker has ended the stream.
func (p *Pool) ExecuteStream(ctx context.Context, req *schemas.Request,
	sc *schemas.StreamCall) error {
	return p.execute(ctx, req, false, func(w *worker) error { return w.stream(ctx, req, sc) })
}

// execute admits a request, finds it a worker and runs it there, counting it in
// the stats. A worker found dead before the request reached it is replaced by
// another, transparently, and a pipelined request its worker handed back
// unstarted waits again at the front of the queue. pipe lets the request be
// pipelined (pipeline.go).
func (p *Pool) execute(ctx context.Context, req *schemas.Request, pipe bool,
	run func(*worker) error) error {
	p.mu.Lock()
	p.stats.requests++
	p.mu.Unlock()
	a := attempt{pipe: pipe, since: time.Now()}
	err := p.executeOnce(ctx, req, a, run)
	for errors.Is(err, errWorkerGone) || errors.Is(err, errRequeued) {
		a.again = errors.Is(err, errRequeued)
		err = p.executeOnce(ctx, req, a, run)
	}
	switch {
	case errors.Is(err, schemas.ErrElsewhere):
		// Forwarded to the agent holding the session, which counts it.
		p.mu.Lock()
		p.stats.requests--
		p.mu.Unlock()
	case err != nil:
		p.mu.Lock()
		p.stats.errors++
		p.mu.Unlock()
	}
	return err
}

// attempt is how one try of execute finds its worker.
type attempt struct {
	// pipe lets the request be pipelined (pipeline.go).
	pipe bool
	// again is set for a request its worker handed back: it was admitted
	// already, so it queues in front, past the queue's bound.
	again bool
	// since is when the first try began: the queue wait of every try counts
	// from it.
	since time.Time
}

// executeOnce is one attempt of execute.
func (p *Pool) executeOnce(ctx context.Context, req *schemas.Request, a attempt,
	run func(*worker) error) (err error) {
	if expired(req.Deadline) {
		return deadlineError(req)
	}
	s, err := p.acquire(ctx, req, a)
	if err != nil {
		return err
	}
	defer func() { p.release(s, !errors.Is(err, errRequeued)) }()
	if expired(req.Deadline) {
		return deadlineError(req)
	}
	p.mu.Lock()
	w, inc := s.worker, s.incarnation
	s.requests++
	s.command, s.pipe, s.began = req.Command, a.pipe, time.Now()
	p.mu.Unlock()
	if w == nil {
		return errWorkerGone
	}
	if r := req.Session; r != nil {
		if s.id == r.WorkerID && inc != r.Incarnation && !r.NeedBind {
			// While it waited, its worker was replaced (crashed or recycled),
			// and it was handed the replacement: the session's state died
			// with the old process. Strict modes refuse; hint starts the
			// session afresh there. (A hint call that went to another worker
			// is not its worker's.)
			if r.Mode != config.AffinityHint {
				return unavailableError(req, r)
			}
			r.Reset, r.NeedBind = true, true
		}
		if r.NeedBind {
			epoch, err := r.Bind(s.id, inc)
			if err != nil {
				return err
			}
			r.NeedBind, r.Epoch, r.WorkerID, r.Incarnation = false, epoch, s.id, inc
		}
		r.Guest = s.id != r.WorkerID
	}
	return run(w)
}

// acquire returns a busy-marked slot with a live worker, or a queue error. A
// pipe request takes a pipelined worker's spare before it would queue.
func (p *Pool) acquire(ctx context.Context, req *schemas.Request, a attempt) (*slot, error) {
	if r := req.Session; r != nil && r.WorkerID != "" {
		if s, err, done := p.acquireLeased(ctx, req, r, a); done {
			return s, err
		}
	}
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return nil, stoppingError(p.cfg.Name)
	}
	if front := p.idle.Front(); front != nil {
		s := front.Value.(*slot)
		p.unlistLocked(s)
		p.signalCapacityLocked()
		p.markBusyLocked(s)
		p.mu.Unlock()
		return s, nil
	}
	if a.pipe {
		if s := p.takeSpareLocked(); s != nil {
			p.mu.Unlock()
			return s, nil
		}
	}
	return p.enqueueLocked(ctx, req, &p.waiters, a)
}

// enqueueLocked queues a request on q (the pool's queue or one slot's), at its
// back (or, a.again, its front), and waits for a slot; it is called with p.mu
// held and releases it.
func (p *Pool) enqueueLocked(ctx context.Context, req *schemas.Request,
	q *list.List, a attempt) (*slot, error) {
	if !a.again && p.queuedLocked() >= p.cfg.MaxQueueSize {
		p.stats.saturated++
		p.mu.Unlock()
		emitPool(EventPoolSaturated, p.cfg.Name)
		return nil, schemas.NewError(schemas.CategoryPool, schemas.ReasonPoolSaturated,
			"pool %s is saturated: %d requests queued", p.cfg.Name, p.cfg.MaxQueueSize)
	}
	p.waiterSeq++
	wt := &waiter{got: make(chan *slot, 1), queue: q, movable: req.Movable, pipe: a.pipe,
		seq: p.waiterSeq}
	if a.again {
		// Older than every waiter: ahead of the ones queued in front before.
		wt.seq = -p.waiterSeq
		wt.elem = q.PushFront(wt)
	} else {
		wt.elem = q.PushBack(wt)
	}
	p.queued++
	p.signalCapacityLocked()
	p.mu.Unlock()
	return p.await(ctx, req, wt, a.since)
}

// queuedLocked counts every waiting request, targeted ones included.
func (p *Pool) queuedLocked() int { return p.queued }

// takeWaiterLocked removes a waiter from its queue.
func (p *Pool) takeWaiterLocked(e *list.Element) *waiter {
	wt := e.Value.(*waiter)
	wt.queue.Remove(e)
	wt.elem = nil
	p.queued--
	p.signalCapacityLocked()
	return wt
}

// await waits in the queue for a slot until pool_queue_timeout after since, the
// caller's deadline, or the pool stopping.
func (p *Pool) await(ctx context.Context, req *schemas.Request, wt *waiter,
	since time.Time) (*slot, error) {
	wait := p.cfg.QueueTimeout
	if req.QueueTimeout > 0 {
		wait = min(wait, req.QueueTimeout)
	}
	limit := wait
	wait -= time.Since(since)
	if !req.Deadline.IsZero() {
		wait = min(wait, time.Until(req.Deadline))
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	var cause error
	select {
	case s := <-wt.got:
		if s == nil && wt.rerouted {
			return nil, reroutedError(req)
		}
		if s == nil {
			return nil, stoppingError(p.cfg.Name)
		}
		return s, nil
	case <-t.C:
	case <-ctx.Done():
		cause = context.Cause(ctx)
	case <-p.ctx.Done():
		cause = ErrPoolStopped
	}
	p.mu.Lock()
	if wt.elem == nil {
		// A slot was handed over (or the queue closed) while the timer fired.
		p.mu.Unlock()
		if s := <-wt.got; s != nil {
			return s, nil
		}
		if wt.rerouted {
			return nil, reroutedError(req)
		}
		return nil, stoppingError(p.cfg.Name)
	}
	p.takeWaiterLocked(wt.elem)
	if cause == nil && !expired(req.Deadline) {
		p.stats.queueTimeouts++
	}
	p.mu.Unlock()
	switch {
	case errors.Is(cause, ErrPoolStopped):
		return nil, stoppingError(p.cfg.Name)
	case expired(req.Deadline):
		return nil, deadlineError(req)
	case cause != nil:
		return nil, schemas.NewError(schemas.CategoryTimeout, schemas.ReasonCancelled,
			"request %s cancelled while queued: %v", req.RequestID, cause)
	}
	emitPool(EventQueueTimeout, p.cfg.Name)
	return nil, schemas.NewError(schemas.CategoryTimeout, schemas.ReasonQueueTimeout,
		"no worker of pool %s became free within %v", p.cfg.Name, limit)
}

// release returns a slot after a request: to the next waiter if its worker
// lives. ran is false for a request its worker handed back unstarted: it
// counts neither toward worker_max_requests nor as its command's duration.
func (p *Pool) release(s *slot, ran bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running.Done()
	s.busy = false
	if ran {
		p.tookLocked(s)
	} else {
		s.requests--
	}
	s.began = time.Time{}
	p.releasedLocked(s, ran)
	if s.worker != nil && s.worker.usable() && !p.stopping {
		p.offerLocked(s)
		return
	}
	if s.worker != nil && !p.stopping {
		s.state = StateReady
	}
}

func expired(deadline time.Time) bool {
	return !deadline.IsZero() && !time.Now().Before(deadline)
}

func deadlineError(req *schemas.Request) *schemas.Error {
	return schemas.NewError(schemas.CategoryTimeout, schemas.ReasonDeadlineExceeded,
		"request %s: caller deadline passed before a worker started it", req.RequestID)
}

func stoppingError(pool string) *schemas.Error {
	return schemas.NewError(schemas.CategoryPool, schemas.ReasonPoolStopping,
		"pool %s is shutting down", pool)
}

// Stop stops taking work, answers queued requests with an error, lets running
// requests finish up to shutdown_grace_ms, then shuts the workers down. It
// returns when every worker process is gone or ctx ends.
func (p *Pool) Stop(ctx context.Context) {
	p.stopOnce.Do(func() { p.stop(ctx) })
}

func (p *Pool) stop(ctx context.Context) {
	p.mu.Lock()
	p.stopping = true
	for e := p.waiters.Front(); e != nil; e = p.waiters.Front() {
		close(p.takeWaiterLocked(e).got)
	}
	for _, s := range p.slots {
		for e := s.waiters.Front(); e != nil; e = s.waiters.Front() {
			close(p.takeWaiterLocked(e).got)
		}
	}
	p.mu.Unlock()

	graceCtx, cancel := context.WithTimeout(ctx, p.cfg.ShutdownGrace)
	done := make(chan struct{})
	go func() { p.running.Wait(); close(done) }()
	waitCtx(graceCtx, done)
	cancel()

	p.mu.Lock()
	for _, s := range p.slots {
		if s.worker != nil {
			s.state = StateStopping
		}
	}
	p.mu.Unlock()
	// Each supervisor shuts its own worker down once the pool context ends.
	p.hardStop = ctx
	p.cancel(ErrPoolStopped)
	p.sup.Wait()
	p.tmplMu.Lock()
	if p.tmpl != nil {
		p.tmpl.stop()
	}
	p.tmplMu.Unlock()
	p.log.Info().Msg("pool stopped")
}
