package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/internal/procfs"
)

// framePipeSize is the kernel buffer asked for each frame pipe.
const framePipeSize = 1 << 20

// spec is what one worker process is started from.
type spec struct {
	pool       config.Pool
	workerID   string
	runtimeDir string
	// stateDir is the agent's state dir (absolute), named in the worker's
	// environment and holding its record; "" for none.
	stateDir string
	// extraEnv is added after the agent's environment and before adapter_env.
	extraEnv []string
	// tmpl forks the worker when set and alive (worker_start: fork); else the
	// worker is started on its own.
	tmpl *template
}

// procHandles are the parent's ends of a started worker process.
type procHandles struct {
	pid int
	// wait blocks until the process has exited and tells how.
	wait   func() exitStatus
	toW    *os.File // frames to the worker (its fd 3)
	fromW  *os.File // frames from the worker (its fd 4)
	stdout *os.File
	stderr *os.File
}

// startProcess starts the Python runtime in its own process group with the
// private pipe pair as fds 3 and 4. The child is killed if the agent dies.
func startProcess(s *spec) (*procHandles, error) {
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start worker %s: request pipe: %w", s.workerID, err)
	}
	respR, respW, err := os.Pipe()
	if err != nil {
		closeAll(reqR, reqW)
		return nil, fmt.Errorf("start worker %s: response pipe: %w", s.workerID, err)
	}
	// Bigger frame pipes move large arguments, results and chunks in fewer
	// kernel round trips; a kernel that refuses keeps the default.
	for _, f := range []*os.File{reqW, respW} {
		_, _ = unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, framePipeSize)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll(reqR, reqW, respR, respW)
		return nil, fmt.Errorf("start worker %s: stdout pipe: %w", s.workerID, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(reqR, reqW, respR, respW, outR, outW)
		return nil, fmt.Errorf("start worker %s: stderr pipe: %w", s.workerID, err)
	}

	h := &procHandles{toW: reqW, fromW: respR, stdout: outR, stderr: errR}
	if s.tmpl != nil {
		err = forkWorker(s, h, []*os.File{reqR, respW, outW, errW})
		if errors.Is(err, errTemplateGone) {
			err = execWorker(s, h, reqR, respW, outW, errW)
		}
	} else {
		err = execWorker(s, h, reqR, respW, outW, errW)
	}
	// The child holds its own copies now; the parent keeps only its ends, so EOF
	// on fromW means every writer is gone.
	closeAll(reqR, respW, outW, errW)
	if err != nil {
		closeAll(reqW, respR, outR, errR)
		return nil, err
	}
	return h, nil
}

// execWorker starts the worker as a child of the agent.
func execWorker(s *spec, h *procHandles, reqR, respW, outW, errW *os.File) error {
	cmd := exec.Command(s.pool.Python, workerArgs(s)...)
	cmd.Env = workerEnv(s)
	cmd.Stdin = nil
	cmd.Stdout = outW
	cmd.Stderr = errW
	cmd.ExtraFiles = []*os.File{reqR, respW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start worker %s: %s: %w", s.workerID, s.pool.Python, err)
	}
	h.pid = cmd.Process.Pid
	h.wait = func() exitStatus {
		_ = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
			return statusOf(ws)
		}
		return exitStatus{code: cmd.ProcessState.ExitCode()}
	}
	return nil
}

// forkWorker has the pool's template fork the worker; files are the child's
// ends: frames in, frames out, stdout, stderr.
func forkWorker(s *spec, h *procHandles, files []*os.File) error {
	pid, exited, err := s.tmpl.spawn(workerArgs(s)[len(interpreterArgs):], files)
	if err != nil {
		return fmt.Errorf("start worker %s from template: %w", s.workerID, err)
	}
	h.pid = pid
	st, err := procfs.ReadStat(pid)
	if err != nil {
		// Gone already (its exit is on its way) or /proc unreadable: the
		// template's report is all there is to wait for.
		h.wait = func() exitStatus { return <-exited }
		return nil
	}
	h.wait = func() exitStatus { return awaitForked(pid, st.Start, exited) }
	return nil
}

// forkedExitGrace is how long a forked worker that is seen gone may wait for
// its template's report before its exit is taken as unknown.
const forkedExitGrace = 2 * time.Second

// awaitForked waits for the template's report of the worker's exit. A template
// that cannot report (stopped, stuck) must not keep the pool waiting on a
// worker that is gone: once the process (the one started at start ticks) no
// longer runs, the report gets forkedExitGrace more, then the exit is unknown.
func awaitForked(pid int, start uint64, exited <-chan exitStatus) exitStatus {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case st := <-exited:
			return st
		case <-tick.C:
		}
		if st, err := procfs.ReadStat(pid); err == nil && st.Start == start && !st.Zombie {
			continue
		}
		select {
		case st := <-exited:
			return st
		case <-time.After(forkedExitGrace):
			return exitStatus{code: -1}
		}
	}
}

// interpreterArgs come before the runtime's own arguments on a worker's
// command line.
var interpreterArgs = []string{"-u", "-m", "snakepit_worker"}

func workerArgs(s *spec) []string {
	threads := 1
	if s.pool.WorkerProfile == config.ProfileThread {
		threads = s.pool.ThreadsPerWorker
	}
	args := append(slices.Clone(interpreterArgs),
		"--adapter", s.pool.AdapterModule,
		"--worker-id", s.workerID,
		"--in-fd", "3", "--out-fd", "4",
		"--threads", strconv.Itoa(threads),
	)
	if len(s.pool.AdapterArgs) > 0 {
		args = append(args, "--")
		args = append(args, s.pool.AdapterArgs...)
	}
	return args
}

// workerEnv is the agent's environment with the runtime first on PYTHONPATH and
// the pool's adapter_env last, so adapter_env wins.
func workerEnv(s *spec) []string {
	env := os.Environ()
	pyPath := s.runtimeDir
	if old := os.Getenv("PYTHONPATH"); old != "" {
		pyPath += string(filepath.ListSeparator) + old
	}
	if v, ok := s.pool.AdapterEnv["PYTHONPATH"]; ok {
		pyPath = s.runtimeDir + string(filepath.ListSeparator) + v
	}
	env = append(env, "PYTHONPATH="+pyPath, "PYTHONUNBUFFERED=1")
	if s.stateDir != "" {
		env = append(env, stateDirEnv+"="+s.stateDir)
	}
	env = append(env, s.extraEnv...)
	for k, v := range s.pool.AdapterEnv {
		if k != "PYTHONPATH" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// killGroup signals the worker's whole process group, so children it started go
// with it.
func killGroup(pid int, sig syscall.Signal) {
	if pid > 0 {
		_ = syscall.Kill(-pid, sig)
	}
}

// exitStatus is how a worker process ended.
type exitStatus struct {
	code   int    // exit code, -1 when killed by a signal
	signal string // the signal's name, "" when it exited
}

// statusOf reads a wait status, the agent's own (exec) or one the template
// reported (fork).
func statusOf(ws syscall.WaitStatus) exitStatus {
	if ws.Signaled() {
		return exitStatus{code: -1, signal: ws.Signal().String()}
	}
	return exitStatus{code: ws.ExitStatus()}
}

func closeAll(files ...*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// waitCtx waits for done or ctx, whichever comes first, and reports whether done
// came.
func waitCtx(ctx context.Context, done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// tailLines keeps the last lines a worker wrote, for start-up error messages.
type tailLines struct {
	lines []string
	max   int
}

func (t *tailLines) add(line string) {
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

func (t *tailLines) String() string { return strings.Join(t.lines, "\n") }

// sleepCtx sleeps d or until ctx ends; it reports whether the sleep completed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
