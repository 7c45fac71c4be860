package e2e

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/snakepit-go/snakepit/dispatch"
)

func TestAgentsAndDrain(t *testing.T) {
	a := startAgent(t, "", "keep", testPool("default", 1))
	b := startAgent(t, a.url, "leave", testPool("default", 1))

	agents, err := a.client.Agents(t.Context())
	if err != nil || len(agents) != 2 || agents[0].AgentId != "keep" || agents[1].AgentId != "leave" {
		t.Fatalf("Agents() = %v, %v; want keep and leave", agents, err)
	}
	reports, err := a.client.Reports(t.Context(), true)
	if err != nil || len(reports) != 2 {
		t.Fatalf("Reports() = %d reports, %v; want 2", len(reports), err)
	}

	// A session on the agent to drain, and a request running there.
	var session processResult
	for session.WorkerID == "" || session.WorkerID[len(session.WorkerID)-len("leave"):] != "leave" {
		s := time.Now().Format("150405.000000")
		session = processDirect(t, b, "leave", s)
		session.Session = s
	}
	strict := processDirect(t, b, "leave", "strict-"+session.Session)
	running := make(chan error, 1)
	go func() {
		msgCtx := ctxTimeout(t, 10*time.Second)
		_, err := b.client.Call(msgCtx, "default", "long_running_task",
			map[string]float64{"seconds": 0.5})
		running <- err
	}()
	eventually(t, 5*time.Second, "request running", func() bool {
		return a.host.Agent().Pools()[0].Stats().Busy+b.host.Agent().Pools()[0].Stats().Busy == 1
	})

	if err := a.client.Drain(t.Context(), "leave"); err != nil {
		t.Fatalf("Drain(leave): %v", err)
	}
	select {
	case <-b.host.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("drained agent did not stop")
	}
	if err := <-running; err != nil {
		t.Fatalf("request running during the drain: %v", err)
	}
	agents, _ = a.client.Agents(t.Context())
	if len(agents) != 1 || agents[0].AgentId != "keep" {
		t.Fatalf("Agents() after drain = %v, want keep alone", agents)
	}
	// The drained agent's session moves on its next call: hint re-leases it.
	r, err := a.client.Call(t.Context(), "default", "process", nil,
		dispatch.WithSession(session.Session))
	if err != nil {
		t.Fatalf("session call after drain: %v", err)
	}
	var got processResult
	_ = json.Unmarshal(r.Data, &got)
	if !r.SessionReset || got.Count != 1 {
		t.Fatalf("session after drain = %s reset %v, want count 1 with Snakepit-Session-Reset",
			r.Data, r.SessionReset)
	}
	// A strict session of the drained agent says its state is gone.
	_, err = a.client.Call(t.Context(), "default", "process", nil,
		dispatch.WithSession(strict.Session), dispatch.WithAffinity("strict_queue"))
	if !errors.Is(err, &dispatch.Error{Category: "pool", Reason: "session_worker_unavailable"}) {
		t.Fatalf("strict call after drain = %v, want pool/session_worker_unavailable", err)
	}
}
