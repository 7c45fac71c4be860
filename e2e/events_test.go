package e2e

import (
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/snakepit-go/snakepit/agent"
	"github.com/snakepit-go/snakepit/telemetry"
)

// The pool's lifecycle goes through the telemetry bus: workers start, one is
// killed, exits and is restarted.
func TestPoolEmitsLifecycleEvents(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]map[string]any{}
	detach := telemetry.Attach(func(ev telemetry.Event) {
		mu.Lock()
		seen[ev.Name] = append(seen[ev.Name], ev.Metadata)
		mu.Unlock()
	}, agent.EventWorkerStarted, agent.EventWorkerExited, agent.EventWorkerRestarting)
	defer detach()

	f := startAgent(t, "", "events-agent", testPool("events", 1))
	pool := f.host.Agent().Pools()[0]
	pid := pool.Workers()[0].Pid
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	count := func(name string) int { mu.Lock(); defer mu.Unlock(); return len(seen[name]) }
	eventually(t, 10*time.Second, "worker restarted", func() bool {
		return count(agent.EventWorkerStarted) >= 2
	})

	mu.Lock()
	defer mu.Unlock()
	exited, restarting := seen[agent.EventWorkerExited], seen[agent.EventWorkerRestarting]
	if len(exited) < 1 || exited[0]["pid"] != int(pid) || exited[0]["signal"] != "killed" ||
		exited[0]["pool"] != "events" {
		t.Fatalf("exited events = %v, want pool events pid %d killed", exited, pid)
	}
	if len(restarting) < 1 || restarting[0]["reason"] != "crashed" ||
		restarting[0]["worker_id"] != "events-1@events-agent" {
		t.Fatalf("restarting events = %v, want events-1@events-agent crashed", restarting)
	}
}
