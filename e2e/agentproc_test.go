package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/schemas"
)

// These tests run bin/pool-agent as a real child process, so that it can be
// killed with kill -9 and signalled like in production.

// agentProc is one pool-agent process started by a test.
type agentProc struct {
	cmd      *exec.Cmd
	stateDir string
	logs     *logBuffer
	nc       *nats.Conn
	client   *dispatch.Client
	exited   chan struct{} // closed once the process is reaped
	exitErr  error
}

// poolAgentBinary builds cmd/pool-agent into the test's temp dir (the build
// cache makes every build after the first a link).
func poolAgentBinary(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pool-agent")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(gobin, "build", "-o", path, "../cmd/pool-agent").CombinedOutput()
	if err != nil {
		t.Fatalf("go build pool-agent: %v\n%s", err, out)
	}
	return path
}

// startAgentProc runs pool-agent with the YAML configuration on its own
// embedded server and state dir (stateDir, or a fresh one when empty), and
// waits until its pools are ready.
func startAgentProc(t *testing.T, yaml, stateDir string) *agentProc {
	t.Helper()
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	cfgFile := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	a := &agentProc{stateDir: stateDir, logs: &logBuffer{}, exited: make(chan struct{})}
	a.cmd = exec.Command(poolAgentBinary(t), "--config", cfgFile, "--listen", listen,
		"--state-dir", stateDir, "--agent-id", "proc-agent", "--log-format", "json")
	a.cmd.Stderr = a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start pool-agent: %v", err)
	}
	go func() { a.exitErr = a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		_ = a.cmd.Process.Kill()
		<-a.exited
		if a.nc != nil {
			a.nc.Close()
		}
		assertNoWorkerProcesses(t, stateDir)
	})
	a.connect(t, "nats://"+listen)
	return a
}

// freeAddr returns a 127.0.0.1 address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// connect waits for the embedded server and the pools.
func (a *agentProc) connect(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	a.nc, a.client = nc, dispatch.NewClient(nc)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := a.client.AwaitReady(ctx, "default"); err != nil {
		t.Fatalf("pool-agent not ready: %v\n%s", err, a.logs.tail(20))
	}
}

// signal sends sig to the agent process.
func (a *agentProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := a.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to pool-agent: %v", sig, err)
	}
}

// stats is the agent's one pool, as it reports it.
func (a *agentProc) stats(t *testing.T) *schemas.PoolStats {
	t.Helper()
	reports, err := a.client.Reports(t.Context(), false)
	if err != nil || len(reports) != 1 || len(reports[0].Pools) != 1 {
		return &schemas.PoolStats{}
	}
	return reports[0].Pools[0]
}

// workerPIDs lists the pids of the agent's workers.
func (a *agentProc) workerPIDs(t *testing.T) []int {
	t.Helper()
	reports, err := a.client.Reports(t.Context(), true)
	if err != nil {
		t.Fatalf("workers: %v", err)
	}
	var out []int
	for _, r := range reports {
		for _, w := range r.Workers {
			out = append(out, int(w.Pid))
		}
	}
	return out
}

// TestKilledAgentLeavesNoProcess: kill -9 of the agent while every worker is
// busy and has started a child of its own; 2 s later no process of that agent
// exists.
func TestKilledAgentLeavesNoProcess(t *testing.T) {
	a := startAgentProc(t,
		"pools:\n  - name: default\n    pool_size: 3\n    startup_batch_delay_ms: 0\n", "")
	var children []int
	for range 3 {
		v, err := a.client.Execute(t.Context(), "default", "spawn_child", map[string]int{"seconds": 120})
		if err != nil {
			t.Fatalf("spawn_child: %v", err)
		}
		children = append(children, pidOf(t, v))
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for range 3 {
		go func() {
			_, _ = a.client.Execute(ctx, "default", "long_running_task", map[string]int{"seconds": 120})
		}()
	}
	eventually(t, 10*time.Second, "every worker busy", func() bool { return a.stats(t).Busy == 3 })
	before := processesMentioning(a.stateDir)
	workers := a.workerPIDs(t)
	tracked := append(slices.Clone(workers), children...)
	requireRunning(t, tracked...)

	a.signal(t, syscall.SIGKILL)
	<-a.exited
	killed := time.Now()
	// A process being killed drops its environment before it stops running,
	// so "no process names the state dir" alone can hold while a worker or a
	// child still runs: both must hold.
	eventually(t, 2*time.Second, "no process of the killed agent", func() bool {
		return len(processesMentioning(a.stateDir)) == 0 &&
			!slices.ContainsFunc(tracked, alive)
	})
	t.Logf("%d processes (the agent, 3 workers %v, their guards, 3 children %v) gone %v after kill -9",
		len(before), workers, children, time.Since(killed))
}

// TestSIGTERMFinishesRunningAndAnswersQueued: SIGTERM while 4 requests run and
// 10 wait: the 4 complete, the 10 get an error reply, and the agent exits 0
// within the grace.
func TestSIGTERMFinishesRunningAndAnswersQueued(t *testing.T) {
	const grace = 10 * time.Second
	a := startAgentProc(t,
		"pools:\n  - name: default\n    pool_size: 4\n    startup_batch_delay_ms: 0\n"+
			"    shutdown_grace_ms: 10000\n", "")
	type outcome struct {
		err     error
		running bool
	}
	results := make(chan outcome, 14)
	call := func(running bool, command string, args any) {
		_, err := a.client.Execute(t.Context(), "default", command, args,
			dispatch.WithTimeout(30*time.Second))
		results <- outcome{err, running}
	}
	for range 4 {
		go call(true, "long_running_task", map[string]float64{"seconds": 2})
	}
	eventually(t, 10*time.Second, "4 requests running", func() bool { return a.stats(t).Busy == 4 })
	for range 10 {
		go call(false, "ping", nil)
	}
	eventually(t, 10*time.Second, "10 requests queued", func() bool { return a.stats(t).Queued == 10 })

	a.signal(t, syscall.SIGTERM)
	signalled := time.Now()
	completed, refused := 0, 0
	for range 14 {
		o := <-results
		var e *dispatch.Error
		switch {
		case o.running && o.err == nil:
			completed++
		case !o.running && errors.As(o.err, &e) && e.Reason == schemas.ReasonPoolStopping:
			refused++
		default:
			t.Errorf("request (running %v) ended with %v", o.running, o.err)
		}
	}
	select {
	case <-a.exited:
	case <-time.After(grace):
		t.Fatalf("agent still running %v after SIGTERM", grace)
	}
	took := time.Since(signalled)
	t.Logf("SIGTERM: %d running completed, %d queued got pool_stopping; exit %v after %v",
		completed, refused, a.exitErr, took)
	if completed != 4 || refused != 10 || a.exitErr != nil || took > grace {
		t.Fatalf("completed %d, refused %d, exit %v after %v; want 4, 10, status 0 within %v",
			completed, refused, a.exitErr, took, grace)
	}
}

// TestSecondSignalStopsAtOnce: a second SIGTERM during the grace stops the
// agent without waiting for running requests.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	a := startAgentProc(t,
		"pools:\n  - name: default\n    pool_size: 2\n    startup_batch_delay_ms: 0\n", "")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for range 2 {
		go func() {
			_, _ = a.client.Execute(ctx, "default", "long_running_task", map[string]int{"seconds": 60})
		}()
	}
	eventually(t, 10*time.Second, "2 requests running", func() bool { return a.stats(t).Busy == 2 })
	a.signal(t, syscall.SIGTERM)
	eventually(t, 5*time.Second, "agent stopping", func() bool {
		return a.logs.count(`"agent stopping"`) > 0
	})
	again := time.Now()
	a.signal(t, syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("agent still running 10s after the second SIGTERM")
	}
	t.Logf("second SIGTERM: exited %v later (grace 30s, requests of 60s running)", time.Since(again))
}

// TestLeftoversOfPreviousRunAreEnded: an agent killed with its guards gone
// leaves its workers' children behind; the next agent on that state dir ends
// them, and leaves another agent's processes alone even when a record names
// them.
func TestLeftoversOfPreviousRunAreEnded(t *testing.T) {
	other := startAgentProc(t, "pools:\n  - name: default\n    pool_size: 1\n", "")
	otherWorker := other.workerPIDs(t)[0]

	stateDir := t.TempDir()
	first := startAgentProc(t,
		"pools:\n  - name: default\n    pool_size: 2\n    startup_batch_delay_ms: 0\n", stateDir)
	var children []int
	for range 2 {
		v, err := first.client.Execute(t.Context(), "default", "spawn_child",
			map[string]int{"seconds": 120})
		if err != nil {
			t.Fatalf("spawn_child: %v", err)
		}
		children = append(children, pidOf(t, v))
	}
	// Without their guards the children outlive the killed agent.
	workers := first.workerPIDs(t)
	requireRunning(t, append(slices.Clone(workers), children...)...)
	requireRunning(t, otherWorker)
	for _, pid := range guardsOf(workers) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	first.signal(t, syscall.SIGKILL)
	<-first.exited
	eventually(t, 2*time.Second, "workers gone", func() bool {
		return !alive(workers[0]) && !alive(workers[1])
	})
	for _, pid := range children {
		if !alive(pid) {
			t.Fatalf("child %d died with its agent; the test needs a leftover", pid)
		}
	}
	forgeRecord(t, stateDir, otherWorker)

	second := startAgentProc(t, "pools:\n  - name: default\n    pool_size: 1\n", stateDir)
	eventually(t, 2*time.Second, "leftover children ended", func() bool {
		return !alive(children[0]) && !alive(children[1])
	})
	if !alive(otherWorker) || !slices.Equal(other.workerPIDs(t), []int{otherWorker}) {
		t.Fatalf("the other agent's worker %d was touched", otherWorker)
	}
	t.Logf("second agent ended leftovers %v; other agent's worker %d untouched (log: %d lines about leftovers)",
		children, otherWorker, second.logs.count("ended leftover process of a previous run"))
}

// guardsOf finds the guard processes in the workers' process groups.
func guardsOf(workers []int) []int {
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmdline, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		if !bytes.Contains(cmdline, []byte("snakepit-guard")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		for _, w := range workers {
			if pgrpOf(pid) == w {
				out = append(out, pid)
			}
		}
	}
	return out
}

// statFields returns the fields of /proc/<pid>/stat after the command name.
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
}

func pgrpOf(pid int) int {
	f := statFields(pid)
	if len(f) < 3 {
		return 0
	}
	n, _ := strconv.Atoi(f[2])
	return n
}

// forgeRecord writes a record naming pid, with its true start time, into the
// state dir, as if the agent there had run it.
func forgeRecord(t *testing.T, stateDir string, pid int) {
	t.Helper()
	f := statFields(pid)
	start, _ := strconv.ParseUint(f[19], 10, 64)
	b, _ := json.Marshal(map[string]any{"pid": pid, "start": start, "worker_id": "forged"})
	record := filepath.Join(stateDir, "workers", strconv.Itoa(pid)+".json")
	if err := os.WriteFile(record, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
