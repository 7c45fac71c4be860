package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/schemas"
)

// hello is the worker's handshake meta.
type hello struct {
	Protocol   int      `json:"protocol"`
	PID        int      `json:"pid"`
	WorkerID   string   `json:"worker_id"`
	Python     string   `json:"python"`
	Adapter    string   `json:"adapter"`
	Commands   []string `json:"commands"`
	ThreadSafe bool     `json:"thread_safe"`
	Runtime    string   `json:"runtime"`
	// Threads is how many requests the runtime runs at once (--threads).
	Threads int `json:"threads"`
}

// worker is one live Python process. It is created by spawn and ends when the
// process exits; a slot replaces it with a new worker.
type worker struct {
	id          string
	pool        string
	incarnation uint32
	pid         int
	started     time.Time
	hello       hello
	log         zerolog.Logger

	proc *procHandles
	// guard kills the worker's process group if the agent dies (hygiene.go).
	guard *exec.Cmd
	// record is the worker's file in the state dir (leftovers.go), or "".
	record string
	// exited is closed once the process has exited and every call has been failed.
	exited   chan struct{}
	exitErr  *schemas.Error
	readDone chan struct{}
	// pongCh signals each PONG to the heartbeat; capacity 1.
	pongCh chan uint64

	wmu sync.Mutex // serializes whole frames on proc.toW
	buf []byte     // frame encoding scratch, guarded by wmu

	mu      sync.Mutex
	calls   map[uint32]*pending
	nextID  uint32
	stopped bool // SHUTDOWN sent; the exit is expected
	gone    bool // the process exited; no call may be registered
	// hung says why the heartbeat killed the worker; "" if it did not.
	hung   string
	output tailLines
}

// spawn starts a worker and waits for its handshake within the start timeout. A
// worker that fails to start yields an error naming the pool, the adapter and the
// last lines the process wrote.
func spawn(ctx context.Context, s *spec, incarnation uint32, log zerolog.Logger) (*worker, error) {
	proc, err := startProcess(s)
	if err != nil {
		return nil, err
	}
	w := &worker{
		id: s.workerID, pool: s.pool.Name, incarnation: incarnation, pid: proc.pid,
		started: time.Now(), proc: proc,
		exited: make(chan struct{}), readDone: make(chan struct{}),
		pongCh: make(chan uint64, 1),
		calls:  map[uint32]*pending{}, output: tailLines{max: 20},
	}
	w.log = log.With().Str(keyWorkerID, w.id).Int(keyPID, w.pid).Logger()
	w.protect(s)

	var drains sync.WaitGroup
	drains.Add(2)
	go w.drain(&drains, proc.stdout, "stdout")
	go w.drain(&drains, proc.stderr, "stderr")
	helloCh := make(chan error, 1)
	go w.readLoop(helloCh)
	go w.wait(&drains)

	startCtx, cancel := context.WithTimeout(ctx, s.pool.StartupTimeout)
	defer cancel()
	select {
	case err = <-helloCh:
		if err == nil {
			err = checkProfile(&s.pool, &w.hello)
		}
	case <-startCtx.Done():
		err = fmt.Errorf("no handshake within %v: %w", s.pool.StartupTimeout, ErrStartTimeout)
	}
	if err == nil {
		return w, nil
	}
	w.kill()
	<-w.exited
	return nil, w.startError(s, err)
}

func (w *worker) startError(s *spec, cause error) error {
	w.mu.Lock()
	tail := w.output.String()
	w.mu.Unlock()
	exit := ""
	if w.exitErr != nil {
		exit = " (" + w.exitErr.Message + ")"
	}
	return &StartError{
		Pool: s.pool.Name, Adapter: s.pool.AdapterModule, Python: s.pool.Python,
		Worker: w.id, Exit: exit, Output: tail, Err: cause,
	}
}

// protect starts the worker's guard and keeps its record in the state dir.
// Neither failing stops the worker: it only loses that protection, which is
// logged.
func (w *worker) protect(s *spec) {
	var err error
	if w.guard, err = startGuard(s, w.pid); err != nil {
		w.log.Warn().Err(err).Msg("worker runs without a guard: what it starts may outlive a killed agent")
	}
	if dir := recordDir(s.stateDir); dir != "" {
		if w.record, err = writeRecord(dir, w.pid, w.id); err != nil {
			w.log.Warn().Err(err).Msg("worker not recorded: a later run cannot end its leftovers")
		}
	}
}

// drain reads one of the worker's output streams to the end into the log, a
// line at a time, so a worker writing megabytes never blocks on a full pipe.
func (w *worker) drain(wg *sync.WaitGroup, f *os.File, stream string) {
	defer wg.Done()
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			text := string(trimNewline(line))
			w.mu.Lock()
			w.output.add(text)
			w.mu.Unlock()
			w.log.Info().Str(keyStream, stream).Msg(text)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// readLoop reads answer frames until the pipe closes. The first frame must be
// HELLO; its outcome goes to helloCh.
func (w *worker) readLoop(helloCh chan<- error) {
	defer close(w.readDone)
	r := bufio.NewReaderSize(w.proc.fromW, 64<<10)
	f, err := schemas.ReadFrame(r)
	if err == nil {
		err = w.acceptHello(f)
	}
	helloCh <- err
	if err != nil {
		return
	}
	for {
		f, err := schemas.ReadFrame(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				w.log.Warn().Err(err).Msg("worker pipe broken; killing worker")
				w.kill()
			}
			return
		}
		w.route(f)
	}
}

func (w *worker) acceptHello(f *schemas.Frame) error {
	if f.Kind != schemas.KindHello {
		return fmt.Errorf("first frame is kind %d, want HELLO: %w", f.Kind, ErrHandshake)
	}
	if err := json.Unmarshal(f.Meta, &w.hello); err != nil {
		return fmt.Errorf("decode HELLO: %w: %w", ErrHandshake, err)
	}
	if w.hello.Protocol != schemas.ProtocolVersion {
		return fmt.Errorf("protocol %d, want %d: %w", w.hello.Protocol, schemas.ProtocolVersion, ErrHandshake)
	}
	return nil
}

// route hands an answer frame to the call waiting for it.
func (w *worker) route(f *schemas.Frame) {
	switch f.Kind {
	case schemas.KindResult, schemas.KindError, schemas.KindEnd:
		w.mu.Lock()
		p := w.calls[f.ID]
		delete(w.calls, f.ID)
		if w.oneAtATime() {
			// What waited behind it may start now (pending.behind).
			for _, q := range w.calls {
				q.behind = false
			}
		}
		w.mu.Unlock()
		if p != nil {
			p.deliver(f)
			close(p.frames)
		}
	case schemas.KindChunk:
		w.mu.Lock()
		p := w.calls[f.ID]
		w.mu.Unlock()
		if p != nil && !p.deliver(f) {
			w.log.Warn().Uint32("frame_id", f.ID).Msg("worker sent chunks past the stream window; killing worker")
			w.kill()
		}
	case schemas.KindPong:
		select {
		case w.pongCh <- 0:
		default:
		}
	default:
		w.log.Warn().Int("kind", int(f.Kind)).Uint32("frame_id", f.ID).Msg("unexpected frame from worker")
	}
}

// wait reaps the process, then fails every call still pending. The process is
// waited for directly, so its exit is seen at once even if a child it left behind
// still holds the pipes.
func (w *worker) wait(drains *sync.WaitGroup) {
	st := w.proc.wait()
	// From here no new call may start on this worker; calls already sent are
	// failed below once the reader has drained what the process wrote.
	w.mu.Lock()
	w.gone = true
	expected, hung := w.stopped, w.hung
	w.mu.Unlock()
	// Children of the worker go with it, and so does its guard.
	killGroup(w.pid, syscall.SIGKILL)
	reapGuard(w.guard)
	if w.record != "" {
		_ = os.Remove(w.record)
	}
	code, sig := st.code, st.signal
	w.exitErr = crashError(w.id, code, sig)
	switch {
	case hung != "":
		w.exitErr = hungError(w.id, hung)
	case expected:
		// Stopped on purpose (shutdown, recycle, cleanup) before a request it
		// was running could finish: not a crash.
		w.exitErr = schemas.NewError(schemas.CategoryPool, schemas.ReasonPoolStopping,
			"worker %s was stopped before the request finished", w.id).WithDetail("worker_id", w.id)
	}
	w.closePipes(drains)
	w.failCalls()
	ev := w.log.Info()
	if !expected {
		ev = w.log.Warn()
	}
	ev.Int(keyExitCode, code).Str(keySignal, sig).Bool("expected", expected).Msg("worker exited")
	emitWorker(EventWorkerExited, w.pool, w, map[string]any{"exit_code": code, "signal": sig, "expected": expected})
	close(w.exited)
}

// closePipes lets the reader take the answers written just before the exit,
// without waiting on a descendant that keeps the pipe open, then closes the
// frame pipes.
func (w *worker) closePipes(drains *sync.WaitGroup) {
	select {
	case <-w.readDone:
	case <-time.After(200 * time.Millisecond):
	}
	w.proc.fromW.Close()
	w.proc.toW.Close()
	<-w.readDone
	waitGroupTimeout(drains, 200*time.Millisecond)
}

// failCalls ends every pending call: a closed channel with no final frame tells
// the caller the worker died.
func (w *worker) failCalls() {
	w.mu.Lock()
	calls := w.calls
	w.calls = map[uint32]*pending{}
	w.mu.Unlock()
	for _, p := range calls {
		close(p.frames)
	}
}

func waitGroupTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

func crashError(id string, code int, sig string) *schemas.Error {
	e := schemas.NewError(schemas.CategoryWorker, schemas.ReasonWorkerCrashed,
		"worker %s exited with code %d", id, code)
	if sig != "" {
		e.Message = fmt.Sprintf("worker %s killed by signal %s", id, sig)
		e.WithDetail("signal", sig)
	} else {
		e.WithDetail("exit_code", code)
	}
	return e.WithDetail("worker_id", id)
}

// usable reports whether new calls may be sent to the worker.
func (w *worker) usable() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.gone
}

// alive reports whether the process has not exited yet.
func (w *worker) alive() bool {
	select {
	case <-w.exited:
		return false
	default:
		return true
	}
}

// send writes one whole frame.
func (w *worker) send(f *schemas.Frame) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	buf, err := schemas.AppendFrame(w.buf[:0], f)
	if err != nil {
		return err
	}
	if cap(buf) <= 1<<20 {
		w.buf = buf
	}
	if _, err := w.proc.toW.Write(buf); err != nil {
		return fmt.Errorf("write frame to worker %s: %w", w.id, err)
	}
	return nil
}

// termGrace is how long a worker has between SIGTERM and SIGKILL.
const termGrace = 2 * time.Second

// shutdown asks the worker to finish and exit; after grace it is terminated and
// termGrace later killed. It returns once the process is gone and reports
// whether it left within grace. When ctx ends first it is killed at once.
func (w *worker) shutdown(ctx context.Context, grace time.Duration) bool {
	if !w.alive() {
		return true
	}
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	_ = w.send(&schemas.Frame{Kind: schemas.KindShutdown})
	if w.exitWithin(ctx, grace) {
		return true
	}
	killGroup(w.pid, syscall.SIGTERM)
	if !w.exitWithin(ctx, termGrace) {
		killGroup(w.pid, syscall.SIGKILL)
	}
	<-w.exited
	return false
}

// exitWithin waits up to d for the worker to exit; when ctx ends first it
// kills the worker and reports false.
func (w *worker) exitWithin(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.exited:
		return true
	case <-ctx.Done():
		killGroup(w.pid, syscall.SIGKILL)
		<-w.exited
		return false
	case <-t.C:
		return false
	}
}

// kill ends the worker's process group at once.
func (w *worker) kill() {
	killGroup(w.pid, syscall.SIGKILL)
}

// killHung records why the heartbeat gave up on the worker, so the request it
// runs fails with worker_hung, and kills it.
func (w *worker) killHung(reason string) {
	w.mu.Lock()
	stopping := w.stopped
	if !stopping {
		w.hung = reason
	}
	w.mu.Unlock()
	if stopping {
		// Its shutdown already ends it, escalating on its own.
		return
	}
	w.log.Warn().Str(keyReason, reason).Msg("worker stopped answering heartbeats; killing it")
	w.kill()
}

// hungReason is why the heartbeat killed the worker, or "".
func (w *worker) hungReason() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hung
}

// The heartbeat's view of a worker (heartbeat.go).

func (w *worker) ping(seq uint64) error {
	meta := fmt.Appendf(nil, `{"seq":%d}`, seq)
	return w.send(&schemas.Frame{Kind: schemas.KindPing, Meta: meta})
}

func (w *worker) pongs() <-chan uint64  { return w.pongCh }
func (w *worker) done() <-chan struct{} { return w.exited }
