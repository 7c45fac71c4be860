package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/host"
	"github.com/snakepit-go/snakepit/schemas"
)

// An agent restarted on its state dir keeps its id but not its workers: its
// sessions' old leases must not pass for live ones.
func TestRestartedAgentDoesNotReviveSessions(t *testing.T) {
	ns := natsServer(t, 0, t.TempDir())
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	stateDir := t.TempDir()
	start := func() *host.Host {
		cfg := config.Default()
		cfg.Pools = []config.Pool{testPool("default", 1)}
		h, err := host.Start(t.Context(), host.Options{Config: cfg, NATSURL: ns.ClientURL(),
			StateDir: stateDir, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := dispatch.NewClient(nc)

	first := start()
	process(t, c, "survivor")
	process(t, c, "again")
	process(t, c, "again")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	first.Shutdown(ctx)
	cancel()
	second := start()
	t.Cleanup(func() { second.Shutdown(context.Background()) })
	if second.AgentID() != first.AgentID() {
		t.Fatalf("agent id changed across restarts: %s then %s", first.AgentID(), second.AgentID())
	}
	_, err = c.Call(t.Context(), "default", "process", nil, dispatch.WithSession("again"),
		dispatch.WithAffinity("strict_queue"))
	if !errors.Is(err, &dispatch.Error{Reason: schemas.ReasonSessionUnavailable}) {
		t.Fatalf("strict call after the restart = %v, want session_worker_unavailable", err)
	}
	got, r := process(t, c, "again")
	if !r.SessionReset || got.Count != 1 {
		t.Fatalf("hint call after the restart = %+v reset %v, want count 1 with a reset",
			got, r.SessionReset)
	}
}

// A client cannot pose as a forwarding agent to take over a session held by a
// live agent, nor send a hop count that makes no sense.
func TestForwardedHeaderCannotStealSessions(t *testing.T) {
	a, b := twoAgents(t)
	held := processDirect(t, a, "agent-a", "owned")
	for _, tc := range []struct{ hops, reason string }{
		{"2", schemas.ReasonSessionLost},
		{"abc", schemas.ReasonInvalidRequest},
		{"-1", schemas.ReasonInvalidRequest},
	} {
		msg := nats.NewMsg("snakepit.default.agent.agent-b.exec.process")
		msg.Header.Set("Snakepit-Session", "owned")
		msg.Header.Set(dispatch.HeaderForwarded, tc.hops)
		reply, err := b.nc.RequestMsg(msg, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var e dispatch.Error
		_ = json.Unmarshal(reply.Data, &e)
		if e.Reason != tc.reason {
			t.Fatalf("Snakepit-Forwarded: %s = %s, want %s", tc.hops, reply.Data, tc.reason)
		}
	}
	again := processDirect(t, a, "agent-a", "owned")
	if again.WorkerID != held.WorkerID || again.Count != 2 {
		t.Fatalf("session after the attempts = %+v, want count 2 on %s", again, held.WorkerID)
	}
}

// A request forwarded to an agent that vanished (its connection gone, its
// registry record not yet expired) is answered, not lost: the session moves.
func TestForwardToVanishedAgent(t *testing.T) {
	a, b := twoAgents(t)
	processDirect(t, b, "agent-b", "orphan")
	b.host.Conn().Close() // b's subscriptions go; its registry record stays for a while
	eventually(t, 5*time.Second, "the server dropped b's subscriptions", func() bool {
		_, err := a.nc.Request("snakepit.default.agent.agent-b.exec.ping", nil, time.Second)
		return errors.Is(err, nats.ErrNoResponders)
	})
	if !a.host.Agent().Pools()[0].Ready() {
		t.Fatal("agent a not ready")
	}
	began := time.Now()
	r, err := a.client.Call(t.Context(), "default", "process", nil, dispatch.WithSession("orphan"),
		dispatch.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("session call after its agent vanished = %v, want it taken over", err)
	}
	if !r.SessionReset {
		t.Fatalf("taken-over session reply has no Snakepit-Session-Reset")
	}
	t.Logf("answered %v after the agent vanished", time.Since(began))
}

// A stream without flow control ends at the caller's timeout, and frees its
// worker, even when the reader is gone.
func TestUnackedStreamEndsAtItsTimeout(t *testing.T) {
	f := startFleet(t, testPool("default", 1))
	msg := nats.NewMsg("snakepit.default.stream.infinite_stream")
	msg.Reply = f.nc.NewInbox() // nobody listens: the reader is gone
	msg.Header.Set(dispatch.HeaderWindow, "0")
	msg.Header.Set(dispatch.HeaderTimeout, "500")
	msg.Data = []byte(`{"delay_ms": 10}`)
	if err := f.nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	pool := f.host.Agent().Pools()[0]
	eventually(t, 5*time.Second, "stream running", func() bool { return pool.Stats().Busy == 1 })
	eventually(t, 5*time.Second, "worker free again", func() bool {
		return pool.Stats().Available == 1
	})
	timeout := dispatch.WithTimeout(2 * time.Second)
	if _, err := f.client.Execute(t.Context(), "default", "ping", nil, timeout); err != nil {
		t.Fatalf("ping after the stream's timeout: %v", err)
	}
}
