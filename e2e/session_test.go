package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/jetstream"
	"github.com/snakepit-go/snakepit/schemas"
	"github.com/snakepit-go/snakepit/sessions"
)

// twoAgents starts agents a and b serving default with 2 workers each on one
// server.
func twoAgents(t *testing.T, pools ...func(*[]string)) (*fleet, *fleet) {
	t.Helper()
	a := startAgent(t, "", "agent-a", testPool("default", 2))
	b := startAgent(t, a.url, "agent-b", testPool("default", 2))
	return a, b
}

type processResult struct {
	Count    int    `json:"count"`
	WorkerID string `json:"worker_id"`
	Session  string `json:"session_id"`
}

func process(
	t *testing.T, c *dispatch.Client, session string, opts ...dispatch.CallOption,
) (processResult, *dispatch.Reply) {
	t.Helper()
	r, err := c.Call(t.Context(), "default", "process", nil,
		append(opts, dispatch.WithSession(session))...)
	if err != nil {
		t.Fatalf("process in session %q: %v", session, err)
	}
	var out processResult
	if err := json.Unmarshal(r.Data, &out); err != nil {
		t.Fatalf("decode %s: %v", r.Data, err)
	}
	return out, r
}

func TestSessionAffinityAcrossAgents(t *testing.T) {
	a, b := twoAgents(t)
	const session = "user 42@example.com"

	// Through the queue group, and straight at each agent: the session stays put.
	var worker string
	for i := 1; i <= 20; i++ {
		var got processResult
		switch i % 3 {
		case 0:
			got, _ = process(t, a.client, session)
		case 1:
			got = processDirect(t, a, "agent-a", session)
		case 2:
			got = processDirect(t, b, "agent-b", session)
		}
		if worker == "" {
			worker = got.WorkerID
		}
		if got.Count != i || got.WorkerID != worker || got.Session != session {
			t.Fatalf("call %d = %+v, want count %d on %s in session %q", i, got, i, worker, session)
		}
	}

	// Any NATS client joins the session with the header alone.
	msg := nats.NewMsg("snakepit.default.exec.process")
	msg.Header.Set("Snakepit-Session", session)
	reply, err := b.nc.RequestMsg(msg, 10*time.Second)
	if err != nil {
		t.Fatalf("plain nats request: %v", err)
	}
	var got processResult
	_ = json.Unmarshal(reply.Data, &got)
	if got.Count != 21 || got.WorkerID != worker {
		t.Fatalf("plain nats request = %s, want count 21 on %s", reply.Data, worker)
	}
}

// processDirect sends to one agent's direct subject, so the test controls which
// agent receives the request.
func processDirect(t *testing.T, f *fleet, agentID, session string) processResult {
	t.Helper()
	msg := nats.NewMsg("snakepit.default.agent." + agentID + ".exec.process")
	msg.Header.Set("Snakepit-Session", session)
	reply, err := f.nc.RequestMsg(msg, 10*time.Second)
	if err != nil {
		t.Fatalf("request to %s: %v", agentID, err)
	}
	if e := reply.Header.Get("Snakepit-Error"); e != "" {
		t.Fatalf("request to %s: %s", agentID, reply.Data)
	}
	var out processResult
	_ = json.Unmarshal(reply.Data, &out)
	return out
}

func TestManySessionsConcurrently(t *testing.T) {
	a, b := twoAgents(t)
	clients := []*dispatch.Client{a.client, b.client}
	const sessionsN, clientsN = 100, 8
	var mu sync.Mutex
	workers := map[string]map[string]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, clientsN)
	for c := 0; c < clientsN; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < sessionsN; i++ {
				s := fmt.Sprintf("s-%d", (i+c*13)%sessionsN)
				r, err := clients[c%2].Call(t.Context(), "default", "process", nil,
					dispatch.WithSession(s), dispatch.WithAffinity("strict_queue"))
				if err != nil {
					errs <- fmt.Errorf("session %s: %w", s, err)
					return
				}
				mu.Lock()
				if workers[s] == nil {
					workers[s] = map[string]bool{}
				}
				workers[s][r.Worker] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for s, ws := range workers {
		if len(ws) != 1 {
			t.Errorf("session %s ran on %d workers: %v", s, len(ws), ws)
		}
	}
	leases := listLeases(t, a.nc)
	if len(leases) != sessionsN {
		t.Fatalf("%d leases in the bucket, want %d", len(leases), sessionsN)
	}
}

func listLeases(t *testing.T, nc *nats.Conn) []jetstream.Entry {
	t.Helper()
	kv, err := jetstream.Lookup(t.Context(), nc, jetstream.SessionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := kv.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

func TestSessionWorkerKilled(t *testing.T) {
	f := startFleet(t, testPool("default", 2))
	const session = "killed-worker"
	first, _ := process(t, f.client, session)
	process(t, f.client, session)
	pool := f.host.Agent().Pools()[0]
	var pid int32
	var incarnation uint32
	for _, w := range pool.Workers() {
		if w.Id == first.WorkerID {
			pid, incarnation = w.Pid, w.Incarnation
		}
	}
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "worker replaced", func() bool {
		for _, w := range pool.Workers() {
			if w.Id == first.WorkerID && w.Incarnation > incarnation && w.State == "ready" {
				return true
			}
		}
		return false
	})

	_, err := f.client.Call(t.Context(), "default", "process", nil,
		dispatch.WithSession(session), dispatch.WithAffinity("strict_queue"))
	if !errors.Is(err, &dispatch.Error{Category: "pool", Reason: schemas.ReasonSessionUnavailable}) {
		t.Fatalf("strict_queue call after kill -9 = %v, want pool/session_worker_unavailable", err)
	}
	got, r := process(t, f.client, session, dispatch.WithAffinity("hint"))
	if !r.SessionReset || got.Count != 1 {
		t.Fatalf("hint call after kill -9 = %+v reset %v, want count 1 and Snakepit-Session-Reset",
			got, r.SessionReset)
	}
	again, r := process(t, f.client, session)
	if r.SessionReset || again.Count != 2 || again.WorkerID != got.WorkerID {
		t.Fatalf("next call = %+v reset %v, want count 2 on %s", again, r.SessionReset, got.WorkerID)
	}
}

func TestSessionBusyWorkerModes(t *testing.T) {
	f := startFleet(t, testPool("default", 2))
	const session = "busy"
	first, _ := process(t, f.client, session)

	// Keep the leased worker busy inside the session.
	done := make(chan error, 1)
	go func() {
		_, err := f.client.Call(t.Context(), "default", "long_running_task",
			map[string]float64{"seconds": 1.5}, dispatch.WithSession(session))
		done <- err
	}()
	pool := f.host.Agent().Pools()[0]
	eventually(t, 5*time.Second, "leased worker busy", func() bool { return pool.Stats().Busy == 1 })

	_, err := f.client.Call(t.Context(), "default", "process", nil,
		dispatch.WithSession(session), dispatch.WithAffinity("strict_fail_fast"))
	if !errors.Is(err, &dispatch.Error{Reason: schemas.ReasonWorkerBusy}) {
		t.Fatalf("strict_fail_fast on a busy worker = %v, want worker_busy", err)
	}
	got, _ := process(t, f.client, session, dispatch.WithAffinity("hint"))
	if got.WorkerID == first.WorkerID {
		t.Fatalf("hint on a busy worker ran on %s, want another worker", got.WorkerID)
	}
	queued, _ := process(t, f.client, session, dispatch.WithAffinity("strict_queue"))
	if queued.WorkerID != first.WorkerID || queued.Count != 2 {
		t.Fatalf("strict_queue = %+v, want count 2 on %s after the busy call", queued, first.WorkerID)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSessionExpiresAndEndHookRuns(t *testing.T) {
	endLog := filepath.Join(t.TempDir(), "ended.log")
	p := testPool("default", 1)
	p.SessionTTL = 2 * time.Second
	p.AdapterEnv = map[string]string{"SNAKEPIT_SHOWCASE_SESSION_LOG": endLog}
	f := startFleet(t, p)
	process(t, f.client, "short-lived")
	if n := len(listLeases(t, f.nc)); n != 1 {
		t.Fatalf("%d leases, want 1", n)
	}
	eventually(t, 15*time.Second, "lease expired and end hook ran", func() bool {
		b, _ := os.ReadFile(endLog)
		return strings.Contains(string(b), "short-lived expired")
	})
	if n := len(listLeases(t, f.nc)); n != 0 {
		t.Fatalf("%d leases after expiry, want 0", n)
	}
}

func TestSessionIDs(t *testing.T) {
	f := startFleet(t)
	for _, id := range []string{"a.b c", "ü/ñ@x", "🐍🐍", strings.Repeat("z", 256)} {
		got, _ := process(t, f.client, id)
		if got.Session != id || got.Count != 1 {
			t.Errorf("session %q = %+v, want its own count 1", id, got)
		}
		pool, back, err := sessions.ParseKey(sessions.Key("default", id))
		if err != nil || back != id || pool != "default" {
			t.Errorf("ParseKey(Key(%q)) = %q, %q, %v", id, pool, back, err)
		}
	}
	for _, id := range []string{strings.Repeat("z", 257)} {
		_, err := f.client.Call(t.Context(), "default", "process", nil, dispatch.WithSession(id))
		if !errors.Is(err, &dispatch.Error{Category: "validation"}) {
			t.Errorf("session of %d bytes = %v, want validation", len(id), err)
		}
	}
	// An empty header is a bad id too; only a missing header means no session.
	msg := nats.NewMsg("snakepit.default.exec.process")
	msg.Header["Snakepit-Session"] = []string{""}
	reply, err := f.nc.RequestMsgWithContext(ctxTimeout(t, 5*time.Second), msg)
	if err != nil || reply.Header.Get("Snakepit-Error") != "validation" {
		t.Fatalf("empty session id = %v %s, want validation", err, reply.Data)
	}
	// Stateless calls see no session.
	v, err := f.client.Execute(context.Background(), "default", "process", nil)
	if err != nil || v.(map[string]any)["session_id"] != nil {
		t.Fatalf("stateless process = %v, %v; want no session id", v, err)
	}
}

// TestSessionCallCost prints what a session call costs next to a plain one; the
// bench holds the target, this test shows the hot path makes no KV round trip by
// keeping every call of the session on its worker.
func TestSessionCallCost(t *testing.T) {
	f := startFleet(t, testPool("default", 2))
	const n = 300
	measure := func(opts ...dispatch.CallOption) (time.Duration, map[string]bool) {
		workers := map[string]bool{}
		lat := make([]time.Duration, 0, n)
		for i := 0; i < n; i++ {
			began := time.Now()
			r, err := f.client.Call(t.Context(), "default", "ping", nil, opts...)
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			lat = append(lat, time.Since(began))
			workers[r.Worker] = true
		}
		slices.Sort(lat)
		return lat[n/2], workers
	}
	measure() // warm up both paths
	plain, _ := measure()
	session, workers := measure(dispatch.WithSession("cost"))
	if len(workers) != 1 {
		t.Fatalf("session calls ran on %d workers, want 1", len(workers))
	}
	t.Logf("p50 plain call %v, session call %v (ratio %.2f)",
		plain, session, float64(session)/float64(plain))
}
