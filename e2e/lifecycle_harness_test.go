package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/host"
	"github.com/snakepit-go/snakepit/internal/procfs"
)

// logBuffer keeps every log line an agent writes, for tests that look at them.
type logBuffer struct {
	mu    sync.Mutex
	lines [][]byte
	part  []byte
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.part = append(b.part, p...)
	for {
		i := bytes.IndexByte(b.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		b.lines = append(b.lines, bytes.Clone(b.part[:i]))
		b.part = b.part[i+1:]
	}
}

// records returns the decoded lines whose message is msg ("" for all).
func (b *logBuffer) records(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range b.lines {
		if msg != "" && !bytes.Contains(l, []byte(msg)) {
			continue
		}
		var m map[string]any
		if json.Unmarshal(l, &m) == nil && (msg == "" || m["message"] == msg) {
			out = append(out, m)
		}
	}
	return out
}

// count counts the lines that contain every one of subs.
func (b *logBuffer) count(subs ...string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
next:
	for _, l := range b.lines {
		for _, sub := range subs {
			if !bytes.Contains(l, []byte(sub)) {
				continue next
			}
		}
		n++
	}
	return n
}

// tail returns the last n lines.
func (b *logBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := b.lines[max(len(b.lines)-n, 0):]
	return string(bytes.Join(lines, []byte("\n")))
}

// startLogged starts an agent on its own embedded server whose info-level log
// goes to the returned buffer.
func startLogged(t *testing.T, pools ...config.Pool) (*fleet, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg := config.Default()
	cfg.Pools = pools
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	stateDir := t.TempDir()
	h, err := host.Start(ctx, host.Options{
		Config: cfg, Listen: "127.0.0.1:0", StateDir: stateDir, AgentID: "life-agent",
		Log: zerolog.New(logs).Level(zerolog.InfoLevel),
	})
	if err != nil {
		t.Fatalf("host.Start: %v", err)
	}
	url := h.Conn().ConnectedUrl()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() {
		nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		h.Shutdown(ctx)
		assertNoWorkerProcesses(t, stateDir)
	})
	return &fleet{host: h, nc: nc, client: dispatch.NewClient(nc), url: url}, logs
}

// fixturePool is a test pool running an adapter of testdata/fixtures.
func fixturePool(t *testing.T, name, adapter string, size int) config.Pool {
	t.Helper()
	dir, err := filepath.Abs("testdata/fixtures")
	if err != nil {
		t.Fatal(err)
	}
	p := testPool(name, size)
	p.AdapterModule = adapter
	p.AdapterEnv = map[string]string{"PYTHONPATH": dir}
	return p
}

// alive reports whether pid runs and is not a zombie, and is still the process
// first seen under that pid: pids wrap fast on a busy machine (pid_max is often
// 32768), so a new process must not pass for an old one.
func alive(pid int) bool {
	st, err := procfs.ReadStat(pid)
	if err != nil || st.Zombie {
		return false
	}
	seenMu.Lock()
	defer seenMu.Unlock()
	if first, ok := seenStart[pid]; ok && first != st.Start {
		return false
	}
	seenStart[pid] = st.Start
	return true
}

// requireRunning fails the test unless every pid runs now, and records each
// one's identity, so that a later alive sees a reused pid as gone.
func requireRunning(t *testing.T, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("pid %d is not running", pid)
		}
	}
}

var (
	seenMu    sync.Mutex
	seenStart = map[int]uint64{}
)

// pidOf reads the pid out of a ping-like result.
func pidOf(t *testing.T, v any) int {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("result %v is not an object", v)
	}
	n, err := strconv.Atoi(strings.TrimSpace(m["pid"].(json.Number).String()))
	if err != nil {
		t.Fatalf("pid in %v: %v", m, err)
	}
	return n
}
