package e2e

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/schemas"
)

// capacityLog follows the agents' published capacity and measures the longest
// stretch in which one agent had requests queued while another had an idle
// worker.
type capacityLog struct {
	mu        sync.Mutex
	state     map[string]*schemas.Capacity
	since     time.Time // start of the current imbalance, zero if none
	stretches []time.Duration
}

func (c *capacityLog) observe(m *nats.Msg) {
	cp := &schemas.Capacity{}
	if protojson.Unmarshal(m.Data, cp) != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state[cp.AgentId] = cp
	queued, free := false, false
	for _, s := range c.state {
		queued = queued || s.Queued > 0
		free = free || s.Free > 0
	}
	now := time.Now()
	switch {
	case queued && free && c.since.IsZero():
		c.since = now
	case !(queued && free) && !c.since.IsZero():
		c.stretches = append(c.stretches, now.Sub(c.since))
		c.since = time.Time{}
	}
}

func TestCapacityAwareRouting(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 calls")
	}
	small := startAgent(t, "", "small", testPool("default", 1))
	startAgent(t, small.url, "big", testPool("default", 4))
	clog := &capacityLog{state: map[string]*schemas.Capacity{}}
	sub, err := small.nc.Subscribe("snakepit.default.capacity.*", clog.observe)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	const calls, callers = 2000, 16
	var next atomic.Int64
	var served sync.Map // worker id -> *atomic.Int64
	var saturated atomic.Int64
	var wg sync.WaitGroup
	began := time.Now()
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= calls {
				r, err := small.client.Call(t.Context(), "default", "long_running_task",
					map[string]float64{"seconds": 0.01})
				if errors.Is(err, &dispatch.Error{Reason: schemas.ReasonPoolSaturated}) {
					saturated.Add(1)
					next.Add(-1)
					continue
				}
				if err != nil {
					t.Errorf("call: %v", err)
					return
				}
				n, _ := served.LoadOrStore(r.Worker, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)

	byAgent := map[string]int64{}
	served.Range(func(k, v any) bool {
		id := k.(string)
		byAgent[id[len(id)-len("big"):]] += v.(*atomic.Int64).Load()
		return true
	})
	bigShare := float64(byAgent["big"]) / calls
	clog.mu.Lock()
	st := slices.Clone(clog.stretches)
	clog.mu.Unlock()
	slices.Sort(st)
	var p95, p99, longest time.Duration
	if len(st) > 0 {
		p95, p99, longest = st[len(st)*95/100], st[len(st)*99/100], st[len(st)-1]
	}
	t.Logf("%d calls in %v: big agent (4 workers) served %.1f%%, small agent %d calls; %d saturated answers; "+
		"%d stretches of a queue beside an idle worker elsewhere: p95 %v, p99 %v, longest %v",
		calls, elapsed, 100*bigShare, calls-byAgent["big"], saturated.Load(), len(st), p95, p99, longest)
	if bigShare < 0.70 {
		t.Errorf("big agent served %.1f%% of calls, want at least 70%%", 100*bigShare)
	}
	// The longest stretches also count the moments the shared machine gave the
	// agents no CPU at all (this runs under the race detector on 2 cores); the
	// p95 is what routing controls.
	if p95 > 10*time.Millisecond {
		t.Errorf("p95 of queue-beside-idle-worker stretches = %v, want at most one task time (10ms)", p95)
	}
}

func TestSaturatedFleetAnswersAtOnce(t *testing.T) {
	pa, pb := testPool("default", 1), testPool("default", 1)
	pa.MaxQueueSize, pb.MaxQueueSize = 1, 1
	a := startAgent(t, "", "sat-a", pa)
	b := startAgent(t, a.url, "sat-b", pb)
	// Two running and two queued fill both agents. Fillers race one another for
	// the last places, so one may be refused: add them until the fleet is full.
	var wg sync.WaitGroup
	defer wg.Wait()
	full := func() bool {
		sa, sb := a.host.Agent().Pools()[0].Stats(), b.host.Agent().Pools()[0].Stats()
		return sa.Busy+sb.Busy == 2 && sa.Queued+sb.Queued == 2
	}
	for i := 0; i < 10 && !full(); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = a.client.Call(t.Context(), "default", "long_running_task",
				map[string]float64{"seconds": 2})
		}()
		deadline := time.Now().Add(time.Second)
		for !full() && time.Now().Before(deadline) && a.host.Agent().Pools()[0].Stats().Requests+
			b.host.Agent().Pools()[0].Stats().Requests < uint64(i+1) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	eventually(t, 5*time.Second, "fleet full", full)
	began := time.Now()
	_, err := a.client.Call(t.Context(), "default", "ping", nil)
	took := time.Since(began)
	if !errors.Is(err, &dispatch.Error{Category: "pool", Reason: schemas.ReasonPoolSaturated}) {
		t.Fatalf("call to a full fleet = %v, want pool/pool_saturated", err)
	}
	if took > 50*time.Millisecond {
		t.Errorf("pool_saturated took %v, want under 50ms", took)
	}
	t.Logf("pool_saturated answered in %v", took)
}
