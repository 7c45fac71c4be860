package snakepit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startStray starts a process that looks like one of the run's (the
// runtime's Python runtime on PYTHONPATH) but no worker owns. ignoreTerm
// makes it survive SIGTERM.
// startStray starts a process that looks like a leftover of the run. It
// returns the process with its start time, so a check after it is ended cannot
// mistake a new process that got the same pid (pids wrap fast here) for it.
func startStray(t *testing.T, stateDir string, ignoreTerm bool) process {
	t.Helper()
	script := "exec sleep 30"
	if ignoreTerm {
		script = "trap '' TERM; exec sleep 30"
	}
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(stateDir, "runtime-stray"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start stray: %v", err)
	}
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waited
	})
	pid := cmd.Process.Pid
	// Once sh has exec'd sleep, its trap is in place (an ignored signal stays
	// ignored across exec) and the environment is readable.
	eventually(t, 5*time.Second, "stray visible", func() bool {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return err == nil && strings.TrimSpace(string(comm)) == "sleep" &&
			slices.Contains(pids(runtimeTargets(stateDir)), pid)
	})
	p, ok := readProcess(pid)
	if !ok {
		t.Fatalf("stray pid %d gone before the test", pid)
	}
	return p
}

func runtimeTargets(stateDir string) []process {
	return (&Runtime{stateDir: stateDir, done: make(chan struct{})}).captureTargets()
}

func alivePid(pid int) bool {
	_, ok := readProcess(pid)
	return ok
}

func TestCleanupWhileRunningSparesLiveWorkers(t *testing.T) {
	rt := newRuntime(t, testOptions(t, testConfig(2)))
	stray := startStray(t, rt.StateDir(), false)
	workers := rt.host.Agent().Pools()[0].Workers()

	if err := rt.Cleanup(t.Context()); err != nil {
		t.Fatalf("Cleanup() = %v, want nil", err)
	}
	if stray.alive() {
		t.Fatalf("stray pid %d alive after Cleanup", stray.pid)
	}
	for _, w := range workers {
		if !alivePid(int(w.Pid)) {
			t.Fatalf("live worker %s (pid %d) ended by Cleanup", w.Id, w.Pid)
		}
	}
	if _, err := rt.Execute(t.Context(), "ping", nil); err != nil {
		t.Fatalf("Execute() after Cleanup = %v", err)
	}
}

func TestCleanupAfterStop(t *testing.T) {
	cases := []struct {
		name       string
		ignoreTerm bool
		wantReason string
	}{
		{"ends what is left", false, ""},
		{"reports what outlives the timeout", true, ReasonCleanupTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rt := newRuntime(t, testOptions(t, testConfig(1)))
			stray := startStray(t, rt.StateDir(), tc.ignoreTerm)
			targets := rt.captureTargets()
			stopAndCheckWorkers(t, rt)

			err := rt.cleanup(t.Context(), targets, 200*time.Millisecond)
			if tc.wantReason == "" {
				if err != nil {
					t.Fatalf("cleanup() = %v, want nil", err)
				}
			} else {
				var e *Error
				if !errors.As(err, &e) || e.Category != CategoryTimeout || e.Reason != tc.wantReason {
					t.Fatalf("cleanup() = %v, want timeout/%s", err, tc.wantReason)
				}
				if got, _ := e.Details["pids"].([]int); !slices.Contains(got, stray.pid) {
					t.Fatalf("cleanup() pids = %v, want the stray %d", e.Details["pids"], stray.pid)
				}
			}
			if stray.alive() {
				t.Fatalf("stray pid %d alive after cleanup", stray.pid)
			}
			if err := rt.Cleanup(t.Context()); err != nil {
				t.Fatalf("second Cleanup() = %v, want nil (idempotent)", err)
			}
		})
	}
}

// stopAndCheckWorkers stops rt and waits until its workers are gone.
func stopAndCheckWorkers(t *testing.T, rt *Runtime) {
	t.Helper()
	var procs []process
	for _, w := range rt.host.Agent().Pools()[0].Workers() {
		if p, ok := readProcess(int(w.Pid)); ok {
			procs = append(procs, p)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	rt.Stop(ctx)
	for _, p := range procs {
		// By identity, not pid: pids wrap fast on a busy machine.
		eventually(t, 3*time.Second, "worker gone", func() bool { return !p.alive() })
	}
}

func TestCleanupRemoteHasNothingLocal(t *testing.T) {
	local := newRuntime(t, testOptions(t, testConfig(1)))
	remote := newRuntime(t, Options{NATSURL: local.URL(), Log: testLogger(t)})
	if err := remote.Cleanup(t.Context()); err != nil {
		t.Fatalf("Cleanup() on a remote runtime = %v, want nil", err)
	}
}

func TestReadProcess(t *testing.T) {
	p, ok := readProcess(os.Getpid())
	if !ok || p.pid != os.Getpid() || p.start == 0 || !p.alive() {
		t.Fatalf("readProcess(self) = %+v, %v; want this live process", p, ok)
	}
	if (process{pid: p.pid, start: p.start + 1}).alive() {
		t.Fatalf("a process with another start time reads as alive; pid reuse would fool cleanup")
	}
}
