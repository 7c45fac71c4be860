// Package e2e runs the whole product in one test process: an embedded NATS
// server with JetStream in a temp dir, an agent with real Python workers, and
// the Go client or snakectl against it.
package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/host"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The embedded server's package-level helpers outlive a single server.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine"),
		goleak.IgnoreTopFunction("time.Sleep"),
	)
}

// fleet is one running agent and a client connected to it.
type fleet struct {
	host   *host.Host
	nc     *nats.Conn
	client *dispatch.Client
	url    string
}

// pool returns a test pool config: small, fast to start.
func testPool(name string, size int) config.Pool {
	p := config.Default().Pools[0]
	p.Name = name
	p.PoolSize = size
	p.StartupBatchDelay = 0
	p.ShutdownGrace = 5 * time.Second
	return p
}

// startFleet starts an agent serving pools on its own embedded server.
func startFleet(t *testing.T, pools ...config.Pool) *fleet {
	t.Helper()
	return startAgent(t, "", "test-agent", pools...)
}

// startAgent starts an agent with its own embedded server (url empty) or joined
// to the server at url.
func startAgent(t *testing.T, url, id string, pools ...config.Pool) *fleet {
	t.Helper()
	cfg := config.Default()
	if len(pools) > 0 {
		cfg.Pools = pools
	} else {
		cfg.Pools = []config.Pool{testPool("default", 2)}
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	if testing.Verbose() {
		log = log.Level(zerolog.InfoLevel)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stateDir := t.TempDir()
	h, err := host.Start(ctx, host.Options{
		Config: cfg, NATSURL: url, Listen: "127.0.0.1:0", StateDir: stateDir, AgentID: id, Log: log,
	})
	if err != nil {
		t.Fatalf("host.Start(%s): %v", id, err)
	}
	url = h.Conn().ConnectedUrl()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() {
		nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		h.Shutdown(ctx)
		assertNoWorkerProcesses(t, stateDir)
	})
	return &fleet{host: h, nc: nc, client: dispatch.NewClient(nc), url: url}
}

// assertNoWorkerProcesses fails if any process still runs the runtime extracted
// into stateDir.
func assertNoWorkerProcesses(t *testing.T, stateDir string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		left := processesMentioning(stateDir)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("worker processes left after shutdown: %v", left)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processesMentioning lists pids whose environment or command line names s.
func processesMentioning(s string) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(filepath.Join(d, f))
			if err == nil && strings.Contains(string(b), s) {
				out = append(out, filepath.Base(d))
				break
			}
		}
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
