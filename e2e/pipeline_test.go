package e2e

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/schemas"
)

// TestPipelinedRequestBehindALongOneComesBack: a request pipelined behind one
// that turns out long is handed back to the queue unstarted, where its queue
// timeout applies, instead of waiting in the worker's pipe for the long one.
func TestPipelinedRequestBehindALongOneComesBack(t *testing.T) {
	f := startFleet(t, testPool("default", 1))
	ctx := t.Context()
	// A short run makes long_running_task a command that may be pipelined
	// behind.
	if _, err := f.client.Execute(ctx, "default", "long_running_task",
		map[string]any{"seconds": 0}); err != nil {
		t.Fatalf("short long_running_task: %v", err)
	}
	long := make(chan error, 1)
	go func() {
		_, err := f.client.Execute(ctx, "default", "long_running_task",
			map[string]any{"seconds": 3})
		long <- err
	}()
	eventually(t, 2*time.Second, "the long request running", func() bool {
		return f.host.Agent().Pools()[0].Stats().Busy == 1
	})
	began := time.Now()
	_, err := f.client.Execute(ctx, "default", "ping", nil,
		dispatch.WithQueueTimeout(300*time.Millisecond))
	took := time.Since(began)
	if !errors.Is(err, &dispatch.Error{Category: "timeout", Reason: schemas.ReasonQueueTimeout}) {
		t.Fatalf("ping behind a 3 s request = %v after %v, want timeout/queue_timeout", err, took)
	}
	if took > 1500*time.Millisecond {
		t.Fatalf("ping timed out after %v: it waited behind the long request", took)
	}
	if err := <-long; err != nil {
		t.Fatalf("long request: %v", err)
	}
}

// TestPipelinedRequestsSurviveAWorkerCrash: with 8 callers on 2 workers each
// worker holds a pipelined request behind the one it runs; kill -9 of a worker
// fails at most the one request it ran, and every other call succeeds.
func TestPipelinedRequestsSurviveAWorkerCrash(t *testing.T) {
	f := startFleet(t, testPool("default", 2))
	ctx := t.Context()
	pool := f.host.Agent().Pools()[0]
	victim := int(pool.Workers()[0].Pid)
	requireRunning(t, victim)
	var ok, crashed, other atomic.Int64
	var firstOther atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := f.client.Execute(ctx, "default", "ping", nil)
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, &dispatch.Error{Category: "worker",
					Reason: schemas.ReasonWorkerCrashed}):
					crashed.Add(1)
				default:
					other.Add(1)
					firstOther.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	eventually(t, 5*time.Second, "calls flowing", func() bool { return ok.Load() > 500 })
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatalf("kill worker %d: %v", victim, err)
	}
	before := ok.Load()
	eventually(t, 10*time.Second, "calls flowing after the kill", func() bool {
		return ok.Load() > before+500
	})
	close(stop)
	wg.Wait()
	if other.Load() != 0 {
		t.Fatalf("%d calls failed otherwise, first: %v", other.Load(), firstOther.Load())
	}
	if crashed.Load() > 1 {
		t.Fatalf("%d calls failed with worker_crashed, want at most the 1 the worker ran",
			crashed.Load())
	}
}
