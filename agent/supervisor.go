package agent

import (
	"github.com/snakepit-go/snakepit/telemetry"

	"sync"
	"time"
)

// Why a worker process is started, as logged.
const (
	whyStart   = "start"
	whyRestart = "restart"
)

// retireGrace is how long a replaced worker, idle by then, may take to exit
// after SHUTDOWN.
const retireGrace = 5 * time.Second

// supervisor keeps one unit supplied with a worker process until the pool
// stops: it starts processes, replaces one that exits (after the restart
// policy's backoff) or stops answering heartbeats (which kills it), replaces
// one due for recycling before it stops serving, and shuts down replaced
// workers once their requests are done. It is one goroutine per unit, an event
// loop; the goroutines it starts (a spawn, exit watchers, heartbeats,
// shutdowns) have ended when it returns.
type supervisor struct {
	p       *Pool
	u       *unit
	policy  *restartPolicy
	recycle recyclePolicy
	first   chan<- error // the first start's outcome goes here, once
	attempt int

	spawned  chan spawnResult // capacity 1: one spawn at a time
	spawning bool
	exits    chan *worker // a watched worker exited
	cleanups chan *cleanupRequest
	quit     chan struct{} // closed when the loop has ended
	wg       sync.WaitGroup

	retry    *time.Timer // a delayed start; nil when none is pending
	retryWhy string
	ttl      *time.Timer // worker_ttl of ttlFor
	ttlFor   *worker
	ending   map[*worker]bool // replaced workers being shut down
}

type spawnResult struct {
	w   *worker
	err error
	why string
}

// supervise runs the supervisor of u; the outcome of its first start goes to
// first.
func (p *Pool) supervise(u *unit, first chan<- error) {
	defer p.sup.Done()
	sv := &supervisor{
		p: p, u: u, policy: newRestartPolicy(), recycle: newRecyclePolicy(p.cfg),
		first: first, spawned: make(chan spawnResult, 1), exits: make(chan *worker),
		cleanups: u.cleanups, quit: make(chan struct{}), ending: map[*worker]bool{},
	}
	defer sv.wait()
	sv.spawn(whyStart)
	for sv.step() {
	}
}

// step handles one event; it reports false when the supervisor is done.
func (sv *supervisor) step() bool {
	select {
	case <-sv.p.ctx.Done():
		sv.stop()
		return false
	case r := <-sv.spawned:
		return sv.onSpawned(r)
	case w := <-sv.exits:
		sv.onExit(w)
	case <-sv.u.kick:
		sv.plan()
	case <-timerC(sv.retry):
		sv.onRetry()
	case <-timerC(sv.ttl):
		sv.onTTL()
	case req := <-sv.cleanups:
		sv.onCleanup(req)
	}
	return true
}

func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

// spawn starts a worker process in the background; its outcome comes back on
// sv.spawned.
func (sv *supervisor) spawn(why string) {
	if sv.spawning {
		return
	}
	sv.spawning = true
	p, u := sv.p, sv.u
	p.mu.Lock()
	u.incarnation++
	inc := u.incarnation
	p.mu.Unlock()
	sp := &spec{pool: p.cfg, workerID: u.id, runtimeDir: p.runtimeDir, stateDir: p.stateDir,
		tmpl: p.template()}
	sv.wg.Add(1)
	go func() {
		defer sv.wg.Done()
		w, err := spawn(p.ctx, sp, inc, p.log)
		sv.spawned <- spawnResult{w: w, err: err, why: why}
	}()
}

// onSpawned puts a started worker to use; it reports false when the first
// start failed, which ends the supervisor.
func (sv *supervisor) onSpawned(r spawnResult) bool {
	sv.spawning = false
	if r.err != nil {
		return sv.spawnFailed(r)
	}
	w := r.w
	w.log.Info().Uint32(keyIncarn, w.incarnation).Str("python", w.hello.Python).
		Str(keyReason, r.why).Msg("worker started")
	emitWorker(EventWorkerStarted, sv.p.cfg.Name, w, map[string]any{"reason": r.why})
	sv.watch(w)
	if sv.first != nil {
		sv.first <- nil
		sv.first = nil
	}
	p, u := sv.p, sv.u
	p.mu.Lock()
	switch {
	case u.worker == nil:
		p.installLocked(u, w, nil)
	case r.why == recycleMaxRequests && !u.dry:
		// Started ahead: it takes over when the serving worker runs dry.
		u.standby = w
	default:
		old := p.installLocked(u, w, nil)
		p.stats.recycles++
		logRecycled(old, w, r.why)
		defer emitWorker(EventWorkerRecycled, p.cfg.Name, w, map[string]any{"reason": r.why, "replaced_pid": old.pid})
	}
	p.mu.Unlock()
	sv.armTTL()
	sv.plan()
	return true
}

func logRecycled(old, w *worker, reason string) {
	w.log.Info().Str(keyReason, reason).Int(keyReplaced, old.pid).
		Msg("worker recycled: the replacement serves, the old worker finishes its requests and stops")
}

// spawnFailed handles a start that did not reach its handshake.
func (sv *supervisor) spawnFailed(r spawnResult) bool {
	if sv.first != nil {
		sv.first <- r.err
		sv.first = nil
		return false
	}
	if sv.p.ctx.Err() != nil {
		return true
	}
	dec := sv.policy.next(0, false)
	p, u := sv.p, sv.u
	p.mu.Lock()
	replacing, dry := u.worker != nil, u.dry
	p.mu.Unlock()
	if !replacing {
		sv.noteRestart(dec, r.err)
		sv.schedule(dec.delay, whyRestart)
		return true
	}
	// The worker being replaced goes on serving unless it ran dry.
	p.log.Warn().Err(r.err).Str(keyWorkerID, u.id).Str(keyReason, r.why).Bool(keyOldServe, !dry).
		Int64(keyDelayMs, dec.delay.Milliseconds()).Msg("replacement worker failed to start; retrying")
	sv.schedule(dec.delay, r.why)
	return true
}

// watch starts the goroutines that follow a live worker: one reports its exit,
// one sends its heartbeats.
func (sv *supervisor) watch(w *worker) {
	sv.wg.Add(1)
	go func() {
		defer sv.wg.Done()
		<-w.exited
		select {
		case sv.exits <- w:
		case <-sv.quit:
		}
	}()
	if hb := sv.p.cfg.Heartbeat; hb.Enabled {
		sv.wg.Add(1)
		go func() {
			defer sv.wg.Done()
			runHeartbeat(w, hb, w.log, w.killHung)
		}()
	}
}

// onExit handles the exit of a worker this unit had.
func (sv *supervisor) onExit(w *worker) {
	p, u := sv.p, sv.u
	p.mu.Lock()
	switch {
	case w == u.worker:
		p.mu.Unlock()
		sv.onCrash(w)
		return
	case w == u.standby:
		u.standby = nil
	default:
		delete(u.retiring, w)
		delete(sv.ending, w)
	}
	p.mu.Unlock()
	sv.plan()
}

// onCrash replaces a serving worker that exited: with its standby at once if
// it has one, else with a new process after the restart policy's delay.
func (sv *supervisor) onCrash(w *worker) {
	p, u := sv.p, sv.u
	p.mu.Lock()
	u.worker, u.state = nil, StateCrashed
	for _, s := range u.slots {
		if !s.busy {
			p.detachLocked(s)
		}
	}
	standby, stopping := u.standby, p.stopping
	u.standby = nil
	if standby != nil && !stopping {
		p.installLocked(u, standby, nil)
	}
	p.mu.Unlock()
	if stopping {
		return
	}
	if standby != nil {
		standby.log.Info().Int(keyReplaced, w.pid).Msg("worker exited; its standby replacement took over")
		sv.armTTL()
		return
	}
	dec := sv.policy.next(time.Since(w.started), true)
	if w.hungReason() != "" {
		dec.reason = "hung"
	}
	sv.noteRestart(dec, nil)
	sv.schedule(dec.delay, whyRestart)
}

// plan acts on what the request path changed: it shuts down replaced workers
// whose requests are done and starts a replacement the serving worker needs.
func (sv *supervisor) plan() {
	p, u := sv.p, sv.u
	p.mu.Lock()
	var done []*worker
	for w, n := range u.retiring {
		if n <= 0 && !sv.ending[w] {
			sv.ending[w] = true
			done = append(done, w)
		}
	}
	need := u.worker != nil && u.standby == nil &&
		(u.dry || sv.recycle.prepare(u.startedLocked(), u.capacity))
	p.mu.Unlock()
	for _, w := range done {
		sv.retire(w)
	}
	if need && sv.retry == nil {
		sv.spawn(recycleMaxRequests)
	}
	sv.armTTL()
}

// retire shuts down a replaced worker that runs nothing any more.
func (sv *supervisor) retire(w *worker) {
	sv.wg.Add(1)
	go func() {
		defer sv.wg.Done()
		w.shutdown(sv.p.ctx, retireGrace)
	}()
}

// armTTL follows worker_ttl of the serving worker.
func (sv *supervisor) armTTL() {
	p, u := sv.p, sv.u
	p.mu.Lock()
	w := u.worker
	p.mu.Unlock()
	if w == sv.ttlFor {
		return
	}
	if sv.ttl != nil {
		sv.ttl.Stop()
		sv.ttl = nil
	}
	sv.ttlFor = w
	if at := sv.recycle.expiry(timeOf(w)); w != nil && !at.IsZero() {
		sv.ttl = time.NewTimer(time.Until(at))
	}
}

func timeOf(w *worker) time.Time {
	if w == nil {
		return time.Time{}
	}
	return w.started
}

// onTTL replaces the serving worker that reached worker_ttl.
func (sv *supervisor) onTTL() {
	sv.ttl = nil
	p, u := sv.p, sv.u
	p.mu.Lock()
	w, standby := u.worker, u.standby
	if w != nil && w == sv.ttlFor && standby != nil {
		u.standby = nil
		p.installLocked(u, standby, nil)
		p.stats.recycles++
		logRecycled(w, standby, recycleTTL)
	}
	p.mu.Unlock()
	if w == nil || w != sv.ttlFor {
		return
	}
	if standby == nil {
		sv.spawn(recycleTTL)
	}
	sv.plan()
}

// schedule starts a worker after d.
func (sv *supervisor) schedule(d time.Duration, why string) {
	if sv.retry != nil {
		sv.retry.Stop()
	}
	sv.retry, sv.retryWhy = time.NewTimer(d), why
}

func (sv *supervisor) onRetry() {
	sv.retry = nil
	p, u := sv.p, sv.u
	p.mu.Lock()
	serving := u.worker != nil
	p.mu.Unlock()
	switch {
	case !serving:
		sv.spawn(whyRestart)
	case sv.retryWhy != whyRestart:
		sv.spawn(sv.retryWhy)
	}
}

// noteRestart counts a restart and shows a crash loop in the unit's state.
func (sv *supervisor) noteRestart(dec restartDecision, startErr error) {
	sv.attempt++
	p, u := sv.p, sv.u
	p.mu.Lock()
	p.stats.restarts++
	u.state = StateCrashed
	if dec.crashLoop {
		u.state = StateCrashLoop
	}
	for _, s := range u.slots {
		if s.worker == nil {
			s.state = u.state
		}
	}
	p.mu.Unlock()
	ev := p.log.Warn()
	if dec.crashLoop {
		ev = p.log.Error()
	}
	if startErr != nil {
		ev = ev.AnErr("error", startErr)
	}
	ev.Str(keyWorkerID, u.id).Str(keyReason, dec.reason).Int(keyAttempt, sv.attempt).
		Int64(keyDelayMs, dec.delay.Milliseconds()).Msg("restarting worker")
	telemetry.Emit(EventWorkerRestarting, map[string]float64{"delay_ms": float64(dec.delay.Milliseconds())},
		map[string]any{"pool": p.cfg.Name, "worker_id": u.id, "reason": dec.reason, "attempt": sv.attempt,
			"crash_loop": dec.crashLoop})
}

// stop shuts down every process of the unit, bounded by the pool's hard stop.
func (sv *supervisor) stop() {
	p, u := sv.p, sv.u
	p.mu.Lock()
	live := u.processesLocked()
	p.mu.Unlock()
	if sv.spawning {
		// The spawn sees the pool's context end and gives up.
		if r := <-sv.spawned; r.w != nil {
			live = append(live, r.w)
		}
		sv.spawning = false
	}
	var wg sync.WaitGroup
	for _, w := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.shutdown(p.hardStop, time.Second)
		}()
	}
	wg.Wait()
}

// processesLocked lists the unit's live workers: serving, standby, retiring.
func (u *unit) processesLocked() []*worker {
	var out []*worker
	for _, w := range []*worker{u.worker, u.standby} {
		if w != nil {
			out = append(out, w)
		}
	}
	for w := range u.retiring {
		out = append(out, w)
	}
	return out
}

// wait ends the loop's goroutines and timers.
func (sv *supervisor) wait() {
	close(sv.quit)
	for _, t := range []*time.Timer{sv.retry, sv.ttl} {
		if t != nil {
			t.Stop()
		}
	}
	sv.wg.Wait()
}
