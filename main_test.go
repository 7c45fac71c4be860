package snakepit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/snakepit-go/snakepit/config"
)

// childEnv, when set, makes the test binary a child that runs one script and
// exits (see halt_test.go).
const childEnv = "SNAKEPIT_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(childMain(mode))
	}
	goleak.VerifyTestMain(m,
		// The embedded server's package-level helpers outlive a single server.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine"),
		goleak.IgnoreTopFunction("time.Sleep"),
	)
}

// testConfig is a small, fast configuration: pools of size workers each.
func testConfig(size int, names ...string) *config.Config {
	cfg := config.Default()
	if len(names) == 0 {
		names = []string{config.DefaultPoolName}
	}
	base := cfg.Pools[0]
	cfg.Pools = nil
	for _, n := range names {
		p := base
		p.Name, p.PoolSize = n, size
		p.StartupBatchDelay = 0
		p.ShutdownGrace = 5 * time.Second
		cfg.Pools = append(cfg.Pools, p)
	}
	return cfg
}

// testOptions are embedded runtime options with a state dir of the test's.
func testOptions(t *testing.T, cfg *config.Config) Options {
	t.Helper()
	return Options{
		Config: cfg, StateDir: t.TempDir(), Listen: DefaultListen, AgentID: "test-agent",
		Log: testLogger(t),
	}
}

func testLogger(t *testing.T) zerolog.Logger {
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	if testing.Verbose() {
		log = log.Level(zerolog.InfoLevel)
	}
	return log
}

// newRuntime starts a runtime the test owns; it is stopped and checked for
// leftover processes when the test ends.
func newRuntime(t *testing.T, opts Options) *Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rt, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { stopAndCheck(t, rt) })
	return rt
}

// startStd starts the process-wide runtime for the test.
func startStd(t *testing.T, opts Options) *Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := Start(ctx, opts); err != nil {
		t.Fatalf("Start() error = %v", err)
	}
	rt, err := Current()
	if err != nil {
		t.Fatalf("Current() error = %v", err)
	}
	t.Cleanup(func() { stopStd(t) })
	return rt
}

// stopStd stops whatever process-wide runtime a test left and checks it left
// no process.
func stopStd(t *testing.T) {
	t.Helper()
	std.mu.Lock()
	rt := std.rt
	std.rt, std.last = nil, nil
	std.mu.Unlock()
	if rt != nil {
		stopAndCheck(t, rt)
	}
}

func stopAndCheck(t *testing.T, rt *Runtime) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rt.Stop(ctx)
	if rt.StateDir() != "" {
		assertNoProcesses(t, rt.StateDir())
	}
}

// assertNoProcesses fails if a process other than this one still mentions
// dir in its command line or environment.
func assertNoProcesses(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		left := processesMentioning(dir)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes left that mention %s: %v", dir, left)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processesMentioning lists pids, this process's aside, whose environment or
// command line names s.
func processesMentioning(s string) []string {
	var out []string
	self := filepath.Join("/proc", strconv.Itoa(os.Getpid()))
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if d == self {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(filepath.Join(d, f))
			if err == nil && bytes.Contains(b, []byte(s)) {
				out = append(out, filepath.Base(d))
				break
			}
		}
	}
	return out
}

// recorder keeps the events of some names, in order.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func record(t *testing.T, names ...string) *recorder {
	t.Helper()
	r := &recorder{}
	detach := AttachTelemetry(func(e Event) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.events = append(r.events, e)
	}, names...)
	t.Cleanup(detach)
	return r
}

func (r *recorder) list() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually polls cond until it holds or d passes.
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

// hasWarning reports whether the JSON log holds a warn line with msg.
func hasWarning(log, msg string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, msg) {
			return true
		}
	}
	return false
}
