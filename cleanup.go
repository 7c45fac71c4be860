package snakepit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/snakepit-go/snakepit/internal/procfs"
	"github.com/snakepit-go/snakepit/schemas"
	"github.com/snakepit-go/snakepit/telemetry"
)

// Events of Cleanup; measurement "count" is the number of processes.
const (
	EventCleanupStart   = "snakepit.cleanup.start"
	EventCleanupSuccess = "snakepit.cleanup.success"
	EventCleanupTimeout = "snakepit.cleanup.timeout"
)

const (
	// cleanupPoll is how often Cleanup looks whether its targets are gone.
	cleanupPoll = 20 * time.Millisecond
	// killWait is how long a SIGKILLed process may take to disappear.
	killWait = 500 * time.Millisecond
)

// process is one OS process of the run, as /proc showed it when captured.
type process struct {
	pid   int
	pgid  int
	start uint64 // clock ticks after boot; tells a reused pid apart
}

// Cleanup ends the external processes of this run that should no longer
// live, and waits for them: once the runtime has stopped, every process of
// the run; while it runs, only those no live worker owns (leftovers of a
// worker that died, or what such a worker started), since ending a supervised
// worker would fail the requests it runs. Each gets SIGTERM (its process
// group when it leads one), then SIGKILL if it outlives the timeout, which is
// DefaultCleanupTimeout or ctx's deadline if sooner. It returns nil when all
// are gone in time, else a *Error of category timeout, reason
// cleanup_timeout, with the pids in Details["pids"]. A remote runtime has no
// process here and returns nil. Cleanup is idempotent.
func (rt *Runtime) Cleanup(ctx context.Context) error {
	return rt.cleanup(ctx, rt.captureTargets(), DefaultCleanupTimeout)
}

// captureTargets lists the processes of the run: every process whose
// environment puts this runtime's Python runtime first on PYTHONPATH.
func (rt *Runtime) captureTargets() []process {
	if rt.stateDir == "" {
		return nil
	}
	mark := []byte("PYTHONPATH=" + filepath.Join(rt.stateDir, "runtime-"))
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []process
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == os.Getpid() || !environHas(d, mark) {
			continue
		}
		if p, ok := readProcess(pid); ok {
			out = append(out, p)
		}
	}
	return out
}

func environHas(procDir string, prefix []byte) bool {
	b, err := os.ReadFile(filepath.Join(procDir, "environ"))
	if err != nil {
		return false
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if bytes.HasPrefix(kv, prefix) {
			return true
		}
	}
	return false
}

// readProcess reads pid's group and start time; ok is false for a process
// that is gone or a zombie (dead, waiting to be reaped).
func readProcess(pid int) (process, bool) {
	st, err := procfs.ReadStat(pid)
	if err != nil || st.Zombie {
		return process{}, false
	}
	return process{pid: pid, pgid: st.Pgrp, start: st.Start}, true
}

// alive reports whether p still runs as the same process.
func (p process) alive() bool {
	now, ok := readProcess(p.pid)
	return ok && now.start == p.start
}

// cleanup ends the targets that should not live, within timeout.
func (rt *Runtime) cleanup(ctx context.Context, targets []process, timeout time.Duration) error {
	targets = rt.unowned(targets)
	if len(targets) == 0 {
		return nil
	}
	meta := map[string]any{keyRunID: rt.runID}
	telemetry.Emit(EventCleanupStart, map[string]float64{"count": float64(len(targets))}, meta)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	err := signalAll(targets, syscall.SIGTERM)
	left := waitGone(ctx, targets)
	if len(left) == 0 {
		telemetry.Emit(EventCleanupSuccess, map[string]float64{"count": float64(len(targets))}, meta)
		return err
	}
	err = errors.Join(err, signalAll(left, syscall.SIGKILL))
	killCtx, cancelKill := context.WithTimeout(context.WithoutCancel(ctx), killWait)
	defer cancelKill()
	alive := waitGone(killCtx, left)
	telemetry.Emit(EventCleanupTimeout, map[string]float64{"count": float64(len(left))}, meta)
	if err != nil {
		return fmt.Errorf("cleanup run %s: %w", rt.runID, err)
	}
	return schemas.NewError(CategoryTimeout, ReasonCleanupTimeout,
		"%d processes of run %s outlived the %v cleanup timeout (%d still alive after SIGKILL)",
		len(left), rt.runID, timeout, len(alive)).
		WithDetail("pids", pids(left)).WithDetail("still_alive", pids(alive))
}

// unowned drops the targets that a live worker or template owns while the runtime
// runs.
func (rt *Runtime) unowned(targets []process) []process {
	if rt.stopped() || rt.host == nil {
		return targets
	}
	live := map[int]bool{}
	for _, p := range rt.localPools() {
		if pid := p.TemplatePID(); pid > 0 {
			live[pid] = true
		}
		for _, w := range p.Workers() {
			if w.Pid > 0 {
				live[int(w.Pid)] = true
			}
		}
	}
	var out []process
	for _, t := range targets {
		if !live[t.pgid] && !live[t.pid] {
			out = append(out, t)
		}
	}
	return out
}

// signalAll sends sig to each live target, to its whole group when it leads
// one. A process that is already gone is not an error.
func signalAll(targets []process, sig syscall.Signal) error {
	var errs []error
	for _, t := range targets {
		if !t.alive() {
			continue
		}
		dst := t.pid
		if t.pgid == t.pid {
			dst = -t.pid
		}
		if err := syscall.Kill(dst, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("signal %v to pid %d: %w", sig, t.pid, err))
		}
	}
	return errors.Join(errs...)
}

// waitGone polls until every target is gone or ctx ends, and returns those
// still alive.
func waitGone(ctx context.Context, targets []process) []process {
	for {
		var left []process
		for _, t := range targets {
			if t.alive() {
				left = append(left, t)
			}
		}
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return left
		case <-time.After(cleanupPoll):
		}
		targets = left
	}
}

func pids(ps []process) []int {
	out := make([]int, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.pid)
	}
	return out
}

// Cleanup is Runtime.Cleanup on the process-wide runtime, or on the last one
// if it has stopped; nil when there has been none.
func Cleanup(ctx context.Context) error {
	std.mu.Lock()
	rt := std.rt
	if rt == nil {
		rt = std.last
	}
	std.mu.Unlock()
	if rt == nil {
		return nil
	}
	return rt.Cleanup(ctx)
}
