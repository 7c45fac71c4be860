package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/snakepit-go/snakepit/config"
)

// A pool's template is one Python process that has started the interpreter and
// imported the worker runtime, and forks each worker of the pool on request
// (worker_start: fork). A forked worker skips both costs: on a small host a
// batch of workers started at once costs one start instead of one per core's
// share. The worker still imports and constructs its adapter itself, so no
// adapter code runs in the template. The protocol is in
// python/snakepit_worker/_template.py.
//
// The worker's parent is the template, not the agent: the template reports
// each exit, and a worker dies with its template (PR_SET_PDEATHSIG), as the
// template dies with the agent. Guards and records work as for any worker.

// spawnTimeout bounds a template's answer to a spawn request.
const spawnTimeout = 10 * time.Second

// errTemplateGone is returned by spawn once the template has exited.
var errTemplateGone = errors.New("template process has exited")

type template struct {
	cmd    *exec.Cmd
	pid    int
	fd     int // the agent's end of the control socket
	record string
	log    zerolog.Logger

	spawnMu sync.Mutex      // one spawn request at a time
	replies chan spawnReply // the answer to the request in flight

	mu    sync.Mutex
	exits map[int]chan exitStatus // pid → where its exit goes
	early map[int]exitStatus      // exits seen before their spawn answer
	dead  bool
	// unanswered: it was killed for not answering a spawn.
	unanswered bool
	done       chan struct{} // closed once the template has exited
}

type spawnReply struct {
	pid    int
	failed string
}

// templateMessage is one packet from the template.
type templateMessage struct {
	Spawned *int   `json:"spawned"`
	Failed  string `json:"failed"`
	Exited  *int   `json:"exited"`
	Status  int    `json:"status"`
}

// startTemplate starts the template of the pool s belongs to.
func startTemplate(s *spec, log zerolog.Logger) (*template, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("start template of pool %s: socketpair: %w", s.pool.Name, err)
	}
	child := os.NewFile(uintptr(fds[1]), "template-control")
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll(child)
		unix.Close(fds[0])
		return nil, fmt.Errorf("start template of pool %s: output pipe: %w", s.pool.Name, err)
	}
	cmd := exec.Command(s.pool.Python, "-u", "-m", "snakepit_worker",
		"--template", "--control-fd", "3")
	cmd.Env = workerEnv(s)
	cmd.Stdout = outW
	cmd.Stderr = outW
	cmd.ExtraFiles = []*os.File{child}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	closeAll(child, outW)
	if err != nil {
		closeAll(outR)
		unix.Close(fds[0])
		return nil, fmt.Errorf("start template of pool %s: %s: %w", s.pool.Name, s.pool.Python, err)
	}
	t := &template{
		cmd: cmd, pid: cmd.Process.Pid, fd: fds[0],
		log:     log.With().Int("template_pid", cmd.Process.Pid).Logger(),
		replies: make(chan spawnReply, 1),
		exits:   map[int]chan exitStatus{}, early: map[int]exitStatus{},
		done: make(chan struct{}),
	}
	if dir := recordDir(s.stateDir); dir != "" {
		if t.record, err = writeRecord(dir, t.pid, "template-"+s.pool.Name); err != nil {
			t.log.Warn().Err(err).Msg("template not recorded: a later run cannot end it")
		}
	}
	go t.drain(outR)
	go t.read()
	go t.wait()
	return t, nil
}

// drain logs what the template writes (a traceback if it fails).
func (t *template) drain(r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		t.log.Warn().Str("line", sc.Text()).Msg("template output")
	}
}

// read takes the template's packets until its end of the socket closes.
func (t *template) read() {
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(t.fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			break
		}
		var m templateMessage
		if err := json.Unmarshal(buf[:n], &m); err != nil {
			t.log.Warn().Err(err).Msg("unreadable message from template")
			continue
		}
		switch {
		case m.Exited != nil:
			t.exited(*m.Exited, statusOf(syscall.WaitStatus(m.Status)))
		case m.Spawned != nil:
			t.replies <- spawnReply{pid: *m.Spawned}
		default:
			t.replies <- spawnReply{failed: m.Failed}
		}
	}
	t.gone()
	// No spawn holds the socket now (spawnMu), and none will use it again.
	t.spawnMu.Lock()
	unix.Close(t.fd)
	t.spawnMu.Unlock()
}

// wait reaps the template process itself.
func (t *template) wait() {
	err := t.cmd.Wait()
	t.log.Debug().AnErr("error", err).Msg("template exited")
	if t.record != "" {
		_ = os.Remove(t.record)
	}
}

// exited delivers a worker's exit to whoever waits for it.
func (t *template) exited(pid int, st exitStatus) {
	t.mu.Lock()
	ch, ok := t.exits[pid]
	if ok {
		delete(t.exits, pid)
	} else {
		t.early[pid] = st
	}
	t.mu.Unlock()
	if ok {
		ch <- st
	}
}

// gone marks the template dead: its workers die with it (each was told to by
// PR_SET_PDEATHSIG), so each still waiting is killed for certain and reported
// killed.
func (t *template) gone() {
	t.mu.Lock()
	t.dead = true
	exits := t.exits
	t.exits = map[int]chan exitStatus{}
	t.mu.Unlock()
	for pid, ch := range exits {
		killGroup(pid, syscall.SIGKILL)
		ch <- exitStatus{code: -1, signal: syscall.SIGKILL.String()}
	}
	close(t.done)
	select {
	case t.replies <- spawnReply{failed: errTemplateGone.Error()}:
	default:
	}
}

// alive reports whether the template can still spawn.
func (t *template) alive() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.dead
}

// hung reports whether the template was killed for not answering a spawn.
func (t *template) hung() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.unanswered
}

// spawn forks a worker with the given runtime arguments and the child's ends of
// its pipes (frames in, frames out, stdout, stderr), and returns its pid and a
// channel that receives its exit.
func (t *template) spawn(argv []string, files []*os.File) (int, <-chan exitStatus, error) {
	msg, err := json.Marshal(map[string][]string{"argv": argv})
	if err != nil {
		return 0, nil, fmt.Errorf("spawn request: %w", err)
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	t.spawnMu.Lock()
	defer t.spawnMu.Unlock()
	if !t.alive() {
		return 0, nil, errTemplateGone
	}
	if err := unix.Sendmsg(t.fd, msg, unix.UnixRights(fds...), nil, 0); err != nil {
		// The template is exiting and its socket is closing.
		return 0, nil, fmt.Errorf("spawn request to template %d: %w: %w", t.pid, errTemplateGone, err)
	}
	var r spawnReply
	select {
	case r = <-t.replies:
	case <-t.done:
		return 0, nil, errTemplateGone
	case <-time.After(spawnTimeout):
		// A template that does not answer is broken (stopped, stuck): end it,
		// and this worker and the next start on their own.
		t.log.Warn().Dur("timeout", spawnTimeout).Msg("template did not answer a spawn; killing it")
		// No later spawn may take this one's late answer for its own.
		t.mu.Lock()
		t.dead, t.unanswered = true, true
		t.mu.Unlock()
		_ = t.cmd.Process.Kill()
		return 0, nil, errTemplateGone
	}
	if r.failed != "" {
		return 0, nil, fmt.Errorf("template %d: %s", t.pid, r.failed)
	}
	ch := make(chan exitStatus, 1)
	t.mu.Lock()
	if st, ok := t.early[r.pid]; ok {
		delete(t.early, r.pid)
		ch <- st
	} else if t.dead {
		ch <- exitStatus{code: -1, signal: syscall.SIGKILL.String()}
	} else {
		t.exits[r.pid] = ch
	}
	t.mu.Unlock()
	return r.pid, ch, nil
}

// stop ends the template: closing its socket makes it exit, and its remaining
// workers with it. Pools stop their workers first.
func (t *template) stop() {
	t.spawnMu.Lock()
	if t.alive() {
		_ = unix.Shutdown(t.fd, unix.SHUT_WR)
	}
	t.spawnMu.Unlock()
	select {
	case <-t.done:
	case <-time.After(2 * time.Second):
		_ = t.cmd.Process.Kill()
		<-t.done
	}
}

// startTemplate starts the pool's template when its workers are to be forked.
// If it cannot start, workers are started on their own, which is slower but
// the same.
func (p *Pool) startTemplate() {
	if p.cfg.WorkerStart != config.StartFork {
		return
	}
	p.tmplMu.Lock()
	defer p.tmplMu.Unlock()
	p.tmpl = p.newTemplateLocked()
}

func (p *Pool) newTemplateLocked() *template {
	t, err := startTemplate(&spec{pool: p.cfg, runtimeDir: p.runtimeDir, stateDir: p.stateDir}, p.log)
	if err != nil {
		p.log.Warn().Err(err).Msg("no template: workers start on their own")
		return nil
	}
	return t
}

// template returns the live template to fork a worker from, starting a new one
// if the last has exited; nil means the worker is started on its own.
func (p *Pool) template() *template {
	p.tmplMu.Lock()
	defer p.tmplMu.Unlock()
	if p.tmpl == nil {
		return nil
	}
	if !p.tmpl.alive() {
		if p.tmpl.hung() {
			// A new one would most likely hang too, and each start would
			// wait out spawnTimeout again.
			p.log.Error().Int("template_pid", p.tmpl.pid).
				Msg("template did not answer; workers of this pool start on their own from now on")
			p.tmpl = nil
			return nil
		}
		p.log.Warn().Int("template_pid", p.tmpl.pid).Msg("template exited; starting a new one")
		p.tmpl = p.newTemplateLocked()
	}
	return p.tmpl
}

// TemplatePID is the pid of the pool's live template, 0 when it has none.
func (p *Pool) TemplatePID() int {
	p.tmplMu.Lock()
	defer p.tmplMu.Unlock()
	if p.tmpl == nil || !p.tmpl.alive() {
		return 0
	}
	return p.tmpl.pid
}
