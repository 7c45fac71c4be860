package e2e

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/snakepit-go/snakepit/dispatch"
)

// natsServer starts a JetStream server on 127.0.0.1:port (0 picks one) with its
// store in dir.
func natsServer(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	return ns
}

func portOf(t *testing.T, ns *server.Server) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(ns.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}

// An agent rides through a restart of its NATS server, with the store kept and
// with it lost: it reconnects, resubscribes, provisions its buckets again and
// serves plain and session calls.
func TestAgentRidesThroughServerRestart(t *testing.T) {
	for _, keepStore := range []bool{true, false} {
		name := "store kept"
		if !keepStore {
			name = "store lost"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			ns := natsServer(t, 0, dir)
			port := portOf(t, ns)
			// Registered before the agent, so it runs after the agent has stopped.
			current := ns
			t.Cleanup(func() { current.Shutdown(); current.WaitForShutdown() })
			f := startAgent(t, ns.ClientURL(), "rider", testPool("default", 1))
			if _, err := f.client.Execute(t.Context(), "default", "ping", nil); err != nil {
				t.Fatal(err)
			}
			process(t, f.client, "rides")

			ns.Shutdown()
			ns.WaitForShutdown()
			// While the server is down a call fails within its timeout, never hangs.
			began := time.Now()
			_, err := f.client.Execute(t.Context(), "default", "ping", nil,
				dispatch.WithTimeout(300*time.Millisecond))
			if err == nil || time.Since(began) > 2*time.Second {
				t.Fatalf("call with the server down = %v after %v, want an error within its timeout",
					err, time.Since(began))
			}
			if f.host.Health().NATSConnected {
				t.Fatal("health says connected while the server is down")
			}
			if !keepStore {
				dir = t.TempDir()
			}
			current = natsServer(t, port, dir)

			restarted := time.Now()
			eventually(t, 15*time.Second, "agent serving again", func() bool {
				_, err := f.client.Execute(t.Context(), "default", "ping", nil,
					dispatch.WithTimeout(500*time.Millisecond))
				return err == nil
			})
			eventually(t, 15*time.Second, "sessions working again", func() bool {
				_, err := f.client.Call(t.Context(), "default", "process", nil,
					dispatch.WithSession("after-restart"), dispatch.WithTimeout(500*time.Millisecond))
				return err == nil
			})
			t.Logf("serving plain and session calls %v after the restart", time.Since(restarted))
			if h := f.host.Health(); !h.NATSConnected {
				t.Fatalf("health after the restart = %+v, want connected", h)
			}
		})
	}
}

// Two agents on a server that restarts with its store lost: afterwards each
// still sees the other alive, so sessions forward instead of being taken over.
func TestAgentsSeeEachOtherAfterServerRestart(t *testing.T) {
	dir := t.TempDir()
	ns := natsServer(t, 0, dir)
	port := portOf(t, ns)
	current := ns
	t.Cleanup(func() { current.Shutdown(); current.WaitForShutdown() })
	a := startAgent(t, ns.ClientURL(), "seer-a", testPool("default", 1))
	b := startAgent(t, ns.ClientURL(), "seer-b", testPool("default", 1))

	ns.Shutdown()
	ns.WaitForShutdown()
	current = natsServer(t, port, t.TempDir())
	eventually(t, 15*time.Second, "both agents registered again", func() bool {
		agents, err := a.client.Agents(t.Context())
		return err == nil && len(agents) == 2
	})
	held := processDirect(t, b, "seer-b", "across")
	eventually(t, 5*time.Second, "a's lease copy current", func() bool {
		got := processDirect(t, a, "seer-a", "across")
		return got.WorkerID == held.WorkerID
	})
}
