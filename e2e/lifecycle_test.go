package e2e

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/agent"
	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/host"
	"github.com/snakepit-go/snakepit/schemas"
)

// TestStartupInBatches: 16 workers in batches of 8, 750 ms apart, are ready
// within 1.5 s plus the time the Python interpreters take to start (measured
// here as 16 started at once), and AwaitReady, called while the agent starts,
// returns then.
func TestStartupInBatches(t *testing.T) {
	hub := startAgent(t, "", "hub", testPool("hub", 1))

	// What sixteen interpreters take to start on this machine, right now.
	probe := testPool("probe", 16)
	probe.StartupBatchSize = 16
	began := time.Now()
	startAgent(t, hub.url, "probe", probe)
	pythonStart := time.Since(began)

	p := testPool("batch", 16)
	p.StartupBatchSize, p.StartupBatchDelay = 8, 750*time.Millisecond
	began = time.Now()
	started := make(chan time.Duration, 1)
	go func() {
		startAgent(t, hub.url, "batched", p)
		started <- time.Since(began)
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := hub.client.AwaitReady(ctx, "batch"); err != nil {
		t.Fatalf("AwaitReady(batch) = %v", err)
	}
	awaited := time.Since(began)
	ready := <-started
	t.Logf("16 workers at once started in %v; 16 in batches of 8 every 750ms ready in %v; "+
		"AwaitReady returned after %v", pythonStart, ready, awaited)
	if ready > 1500*time.Millisecond+pythonStart {
		t.Errorf("16 workers ready in %v, want under 1.5s + %v", ready, pythonStart)
	}
	if ready < 750*time.Millisecond {
		t.Errorf("16 workers ready in %v: the second batch did not wait 750ms", ready)
	}
	if awaited > ready+time.Second {
		t.Errorf("AwaitReady returned %v after the pool was ready", awaited-ready)
	}
}

func TestAwaitReadyNamesWhatIsMissing(t *testing.T) {
	f := startFleet(t)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	err := f.client.AwaitReady(ctx, "default", "absent")
	var e *dispatch.Error
	if !errors.As(err, &e) || e.Category != "timeout" || e.Reason != dispatch.ReasonNotReady {
		t.Fatalf("AwaitReady(absent) = %v, want timeout/%s", err, dispatch.ReasonNotReady)
	}
	if !strings.Contains(e.Message, "pool absent: no agent serves it") ||
		strings.Contains(e.Message, "pool default") {
		t.Fatalf("AwaitReady(absent) message = %q, want only pool absent named", e.Message)
	}
}

// TestStartErrorNamesPoolAdapterAndOutput: a worker that cannot import its
// adapter stops the agent with one error naming the pool, the adapter and
// what the process wrote last.
func TestStartErrorNamesPoolAdapterAndOutput(t *testing.T) {
	cfg := config.Default()
	p := testPool("broken", 2)
	p.AdapterModule = "no_such_module.inside:Nope"
	cfg.Pools = []config.Pool{p}
	stateDir := t.TempDir()
	_, err := host.Start(t.Context(), host.Options{
		Config: cfg, Listen: "127.0.0.1:0", StateDir: stateDir, AgentID: "broken", Log: zerolog.Nop(),
	})
	var se *agent.StartError
	if !errors.As(err, &se) {
		t.Fatalf("host.Start = %v, want an *agent.StartError", err)
	}
	if se.Pool != "broken" || se.Adapter != p.AdapterModule ||
		!strings.Contains(se.Output, "ModuleNotFoundError") {
		t.Fatalf("StartError = pool %q adapter %q output %q; want broken, %s, a ModuleNotFoundError",
			se.Pool, se.Adapter, se.Output, p.AdapterModule)
	}
	for _, want := range []string{"pool broken", p.AdapterModule, "last output", "No module named"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error text lacks %q:\n%v", want, err)
		}
	}
	assertNoWorkerProcesses(t, stateDir)
}

func heartbeatPool(size int) config.Pool {
	p := testPool("default", size)
	p.Heartbeat = config.Heartbeat{
		Enabled: true, PingInterval: 200 * time.Millisecond, Timeout: time.Second,
		MaxMissed: 100, Dependent: true,
	}
	return p
}

// TestHeartbeatKillsHungWorker: a command that holds the GIL forever stops the
// PONGs; the worker is killed within timeout_ms plus one interval, its request
// gets worker/worker_hung, and the pool is back to full strength.
func TestHeartbeatKillsHungWorker(t *testing.T) {
	p := heartbeatPool(2)
	f := startFleet(t, p)
	pool := f.host.Agent().Pools()[0]

	began := time.Now()
	_, err := f.client.Execute(t.Context(), "default", "hang", nil,
		dispatch.WithTimeout(20*time.Second))
	took := time.Since(began)
	var e *dispatch.Error
	if !errors.As(err, &e) || e.Category != "worker" || e.Reason != schemas.ReasonWorkerHung {
		t.Fatalf("Execute(hang) = %v, want worker/worker_hung", err)
	}
	bound := p.Heartbeat.Timeout + p.Heartbeat.PingInterval
	t.Logf("hang detected and answered after %v (timeout_ms %v + interval %v)", took,
		p.Heartbeat.Timeout, p.Heartbeat.PingInterval)
	// The bound plus what killing, reaping and replying take.
	if took > bound+500*time.Millisecond {
		t.Errorf("hang answered after %v, want within %v", took, bound)
	}
	eventually(t, 10*time.Second, "pool back to 2 available workers", func() bool {
		st := pool.Stats()
		return st.Available == 2 && st.Restarts == 1
	})
	for range 4 {
		if _, err := f.client.Execute(t.Context(), "default", "ping", nil); err != nil {
			t.Fatalf("ping after the hang: %v", err)
		}
	}
}

// TestHeartbeatLeavesLongComputationAlone: a command that runs for many
// timeouts but releases the GIL keeps answering PINGs and is not touched.
func TestHeartbeatLeavesLongComputationAlone(t *testing.T) {
	f := startFleet(t, heartbeatPool(1))
	v, err := f.client.Execute(t.Context(), "default", "sleep_release",
		map[string]float64{"seconds": 3})
	if err != nil {
		t.Fatalf("sleep_release 3s with a 1s heartbeat timeout: %v", err)
	}
	if st := f.host.Agent().Pools()[0].Stats(); st.Restarts != 0 {
		t.Fatalf("restarts = %d after %v, want 0", st.Restarts, v)
	}
}

// TestHeartbeatNotDependentOnlyLogs: with dependent false a hung worker is
// logged, not killed.
func TestHeartbeatNotDependentOnlyLogs(t *testing.T) {
	p := heartbeatPool(1)
	p.Heartbeat.Dependent = false
	p.ShutdownGrace = 200 * time.Millisecond
	f, logs := startLogged(t, p)
	pool := f.host.Agent().Pools()[0]
	pid := pool.Workers()[0].Pid

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _, _ = f.client.Execute(ctx, "default", "hang", nil) }()
	const msg = "worker missed heartbeats; heartbeat.dependent is false, leaving it running"
	eventually(t, 10*time.Second, "hang logged", func() bool { return len(logs.records(msg)) > 0 })
	if w := pool.Workers()[0]; w.Pid != pid || pool.Stats().Restarts != 0 {
		t.Fatalf("worker after a hang with dependent false = pid %d, %d restarts; want pid %d, none",
			w.Pid, pool.Stats().Restarts, pid)
	}
}

// TestRecycleByMaxRequests: worker_max_requests 5, 50 requests two at a time:
// none fails, no worker serves more than 5, every worker that served 5 is
// recycled, and only the two serving now have served fewer. How the 50 split
// between the two slots is up to timing: 25 and 25 make 10 recycles, 28 and 22
// make 9 (5 + 4) with two partly used workers.
func TestRecycleByMaxRequests(t *testing.T) {
	p := testPool("default", 2)
	p.WorkerMaxRequests = 5
	f, logs := startLogged(t, p)
	pool := f.host.Agent().Pools()[0]

	var mu sync.Mutex
	served := map[int]int{}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				v, err := f.client.Execute(t.Context(), "default", "ping", nil)
				if err != nil {
					t.Errorf("ping: %v", err)
					return
				}
				mu.Lock()
				served[pidOf(t, v)]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	full, partial := 0, 0
	for pid, n := range served {
		if n > 5 {
			t.Errorf("worker pid %d served %d requests, want at most 5", pid, n)
		}
		if n == 5 {
			full++
		} else {
			partial++
		}
	}
	if partial > 2 {
		t.Errorf("%d workers served fewer than 5 requests (%v); only the 2 serving now may",
			partial, served)
	}
	eventually(t, 10*time.Second, fmt.Sprintf("%d recycles counted", full), func() bool {
		return pool.Stats().Recycles == uint64(full)
	})
	st := pool.Stats()
	t.Logf("50 requests on %d worker processes (%d served 5); "+
		"stats: %d requests, %d errors, %d recycles, %d restarts",
		len(served), full, st.Requests, st.Errors, st.Recycles, st.Restarts)
	if full < 9 || st.Errors != 0 || st.Restarts != 0 {
		t.Fatalf("%d workers served 5, %d errors, %d restarts; want at least 9, 0, 0",
			full, st.Errors, st.Restarts)
	}
	recs := logs.records("worker recycled: the replacement serves, " +
		"the old worker finishes its requests and stops")
	if uint64(len(recs)) != st.Recycles || recs[0]["reason"] != "worker_max_requests" {
		t.Fatalf("recycle log lines = %d (first %v), want %d with reason worker_max_requests",
			len(recs), recs, st.Recycles)
	}
	eventually(t, 10*time.Second, "2 workers available", func() bool {
		return pool.Stats().Available == 2
	})
}

// TestRecycleByTTLKeepsCapacity: a worker past worker_ttl is replaced while
// requests keep coming; the pool never has fewer workers up than its size.
func TestRecycleByTTLKeepsCapacity(t *testing.T) {
	p := testPool("default", 1)
	p.WorkerTTL = time.Second
	f := startFleet(t, p)
	pool := f.host.Agent().Pools()[0]

	pids := map[int]bool{}
	dips := 0
	deadline := time.Now().Add(3500 * time.Millisecond)
	for time.Now().Before(deadline) {
		v, err := f.client.Execute(t.Context(), "default", "ping", nil)
		if err != nil {
			t.Fatalf("ping during recycling: %v", err)
		}
		pids[pidOf(t, v)] = true
		if st := pool.Stats(); st.Available+st.Busy < st.Workers {
			dips++
		}
	}
	st := pool.Stats()
	t.Logf("3.5s of pings with worker_ttl 1s: %d processes, %d recycles, %d looks at the stats with a worker missing",
		len(pids), st.Recycles, dips)
	if st.Recycles < 2 || len(pids) < 3 || dips != 0 || st.Errors != 0 {
		t.Fatalf("recycles %d, processes %d, dips %d, errors %d; want at least 2, 3, none, none",
			st.Recycles, len(pids), dips, st.Errors)
	}
}

// TestCrashLoopIsReported: a worker that crashes and then cannot start again
// is restarted with a growing delay and shown as crash_loop.
func TestCrashLoopIsReported(t *testing.T) {
	p := fixturePool(t, "default", "lifecycle_fixtures:StartsOnce", 1)
	p.AdapterEnv["LIFECYCLE_FIXTURE_MARKER"] = filepath.Join(t.TempDir(), "started")
	f, logs := startLogged(t, p)
	pool := f.host.Agent().Pools()[0]

	_, err := f.client.Execute(t.Context(), "default", "crash", nil)
	if !errors.Is(err, &dispatch.Error{Category: "worker", Reason: schemas.ReasonWorkerCrashed}) {
		t.Fatalf("Execute(crash) = %v, want worker/worker_crashed", err)
	}
	eventually(t, 20*time.Second, "worker in crash_loop", func() bool {
		reports, err := f.client.Reports(t.Context(), true)
		return err == nil && len(reports[0].Workers) == 1 &&
			reports[0].Workers[0].State == agent.StateCrashLoop
	})
	st := pool.Stats()
	if st.CrashLooping != 1 || st.Restarts < 5 {
		t.Fatalf("stats = %+v, want crash_looping 1 and at least 5 restarts", st)
	}
	var delays []float64
	for _, r := range logs.records("restarting worker") {
		delays = append(delays, r["delay_ms"].(float64))
	}
	loops := 0
	for _, r := range logs.records("restarting worker") {
		if r["reason"] == "crash_loop" && r["level"] == "error" {
			loops++
		}
	}
	t.Logf("restart delays (ms): %v", delays)
	for i := 1; i < len(delays); i++ {
		if delays[i] < delays[i-1] {
			t.Fatalf("restart delays %v do not grow", delays)
		}
	}
	if loops == 0 {
		t.Fatalf("no error-level restart with reason crash_loop in the log")
	}
}

// TestWorkerChildrenDieWithIt: a process the adapter started goes when its
// worker crashes.
func TestWorkerChildrenDieWithIt(t *testing.T) {
	f := startFleet(t, testPool("default", 1))
	v, err := f.client.Execute(t.Context(), "default", "spawn_child", map[string]int{"seconds": 60})
	if err != nil {
		t.Fatalf("spawn_child: %v", err)
	}
	child := pidOf(t, v)
	requireRunning(t, child)
	if _, err := f.client.Execute(t.Context(), "default", "crash", nil); err == nil {
		t.Fatal("crash succeeded")
	}
	eventually(t, 2*time.Second, "the worker's child gone", func() bool { return !alive(child) })
}

// TestOutputIsDrained: commands writing megabytes to stdout and stderr do not
// block, and every line reaches the log with pool, worker and pid.
func TestOutputIsDrained(t *testing.T) {
	f, logs := startLogged(t, testPool("default", 2))
	const size = 3 << 20
	var wg sync.WaitGroup
	began := time.Now()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.client.Execute(t.Context(), "default", "write_output",
				map[string]int{"stdout_bytes": size, "stderr_bytes": size},
				dispatch.WithTimeout(30*time.Second))
			if err != nil {
				t.Errorf("write_output of %d bytes to each stream: %v", size, err)
			}
		}()
	}
	wg.Wait()
	t.Logf("2 workers wrote %d MiB to stdout and stderr each in %v", size>>20, time.Since(began))
	// Whole 80-byte lines ('o' * 79 and a newline) of each worker; the last
	// partial line is logged when its stream closes.
	want := 2 * (size / 80)
	stdout := `"message":"` + strings.Repeat("o", 79) + `"`
	stderr := `"message":"` + strings.Repeat("e", 79) + `"`
	eventually(t, 10*time.Second, "every line logged", func() bool {
		return logs.count(`"stream":"stdout"`, stdout) == want &&
			logs.count(`"stream":"stderr"`, stderr) == want
	})
	fields := []string{`"pool":"default"`, `"worker_id":"default-`, `"pid":`}
	if n := logs.count(append(fields, stderr)...); n != want {
		t.Fatalf("%d of %d stderr lines carry pool, worker_id and pid", n, want)
	}
	t.Logf("%d stdout and %d stderr lines logged, each with pool, worker_id and pid", want, want)
}

// TestThreadProfileRunsConcurrently: one thread-profile worker with 4 threads
// runs four 1 s commands at once.
func TestThreadProfileRunsConcurrently(t *testing.T) {
	p := testPool("default", 1)
	p.WorkerProfile, p.ThreadsPerWorker = config.ProfileThread, 4
	f := startFleet(t, p)

	began := time.Now()
	pids := runConcurrently(t, f, 4, "long_running_task", map[string]float64{"seconds": 1})
	took := time.Since(began)
	t.Logf("4 long_running_task calls of 1s on 1 worker with 4 threads took %v", took)
	if took > 1900*time.Millisecond || len(pids) != 1 {
		t.Fatalf("4 calls took %v on %d processes, want about 1s on one", took, len(pids))
	}
	if st := f.host.Agent().Pools()[0].Stats(); st.Workers != 1 || st.Available != 1 {
		t.Fatalf("stats = %+v, want 1 worker, available", st)
	}
}

// runConcurrently runs n calls at once and returns the workers' pids.
func runConcurrently(t *testing.T, f *fleet, n int, command string, args any) map[string]bool {
	t.Helper()
	var mu sync.Mutex
	workers := map[string]bool{}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := f.client.Call(t.Context(), "default", command, args)
			if err != nil {
				t.Errorf("%s: %v", command, err)
				return
			}
			mu.Lock()
			workers[r.Worker] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	return workers
}

// TestThreadSafetyChecksRefuseAdapter: thread_safety_checks refuses an adapter
// not declared thread safe, naming the reason.
func TestThreadSafetyChecksRefuseAdapter(t *testing.T) {
	p := fixturePool(t, "threads", "lifecycle_fixtures:NotThreadSafe", 1)
	p.WorkerProfile, p.ThreadsPerWorker, p.ThreadSafetyChecks = config.ProfileThread, 4, true
	cfg := config.Default()
	cfg.Pools = []config.Pool{p}
	_, err := host.Start(t.Context(), host.Options{
		Config: cfg, Listen: "127.0.0.1:0", StateDir: t.TempDir(), AgentID: "threads", Log: zerolog.Nop(),
	})
	if !errors.Is(err, agent.ErrNotThreadSafe) || !strings.Contains(err.Error(), "pool threads") {
		t.Fatalf("host.Start = %v, want agent.ErrNotThreadSafe naming pool threads", err)
	}
}

// TestCapacityStrategyProfile: with capacity_strategy profile an adapter not
// declared thread safe is offered one request at a time.
func TestCapacityStrategyProfile(t *testing.T) {
	p := fixturePool(t, "default", "lifecycle_fixtures:NotThreadSafe", 1)
	p.WorkerProfile = config.ProfileThread
	p.ThreadsPerWorker = 4
	p.CapacityStrategy = config.CapacityProfile
	f := startFleet(t, p)
	began := time.Now()
	runConcurrently(t, f, 2, "nap", map[string]float64{"seconds": 0.5})
	if took := time.Since(began); took < time.Second {
		t.Fatalf("2 naps of 0.5s took %v, want them one after the other", took)
	}
}

// TestCleanupEndsEveryWorker: cleanup ends each worker, reports one still busy
// at the deadline as not stopped in time, and the pool serves again with
// fresh processes.
func TestCleanupEndsEveryWorker(t *testing.T) {
	f := startFleet(t, testPool("default", 2))
	pool := f.host.Agent().Pools()[0]
	before := map[int32]bool{}
	for _, w := range pool.Workers() {
		before[w.Pid] = true
		requireRunning(t, int(w.Pid))
	}
	long := make(chan error, 1)
	go func() {
		_, err := f.client.Execute(t.Context(), "default", "long_running_task",
			map[string]float64{"seconds": 30})
		long <- err
	}()
	eventually(t, 5*time.Second, "one worker busy", func() bool { return pool.Stats().Busy == 1 })

	reports, err := f.client.Cleanup(t.Context(), "", 500*time.Millisecond)
	if err != nil || len(reports) != 1 {
		t.Fatalf("Cleanup = %v, %v; want one report", reports, err)
	}
	r := reports[0]
	inTime := 0
	for _, e := range r.Ended {
		if !before[e.Pid] {
			t.Errorf("cleanup ended pid %d, not one of the workers %v", e.Pid, before)
		}
		if e.InTime {
			inTime++
		}
	}
	if r.Result != dispatch.CleanupTimeout || len(r.Ended) != 2 || inTime != 1 {
		t.Fatalf("cleanup report = %v, want timeout with 2 ended, 1 in time", r)
	}
	if err := <-long; err == nil {
		t.Fatal("the request on the terminated worker succeeded")
	}
	eventually(t, 10*time.Second, "fresh workers up", func() bool {
		ws := pool.Workers()
		return pool.Stats().Available == 2 && !before[ws[0].Pid] && !before[ws[1].Pid]
	})
	for pid := range before {
		if alive(int(pid)) {
			t.Errorf("worker %d still runs after cleanup", pid)
		}
	}
	if _, err := f.client.Execute(t.Context(), "default", "ping", nil); err != nil {
		t.Fatalf("ping after cleanup: %v", err)
	}
}
