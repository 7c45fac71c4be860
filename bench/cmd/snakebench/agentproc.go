package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// agentProc is bin/pool-agent running as a child of the harness, so that its
// RSS is its own: the embedded NATS server and the pools, nothing of the harness.
type agentProc struct {
	cmd      *exec.Cmd
	stateDir string
	log      zerolog.Logger

	// readyIn is the time from starting the process to its "agent ready" line.
	readyIn time.Duration
	url     string
	exited  chan struct{} // closed once the process has been waited for
	drained chan struct{} // closed once stderr was read to the end

	mu       sync.Mutex
	tail     []string // last lines of the agent's log
	warnings []string // warn and error lines, for the report
	poolMs   int64    // elapsed_ms of the "pool ready" line
}

// agentLine is the part of one JSON log line of the agent that the harness reads.
type agentLine struct {
	Level     string `json:"level"`
	Message   string `json:"message"`
	NATSURL   string `json:"nats_url"`
	ElapsedMs int64  `json:"elapsed_ms"`
}

// startAgent runs the agent with the config file on a free loopback port and
// waits for its "agent ready" line.
func startAgent(ctx context.Context, bin, stateDir, configFile string,
	log zerolog.Logger) (*agentProc, error) {
	cmd := exec.Command(bin, "--config", configFile, "--listen", "127.0.0.1:0",
		"--state-dir", stateDir, "--agent-id", "bench-agent", "--log-format", "json")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("start agent %s: %w", bin, err)
	}
	a := &agentProc{
		cmd: cmd, stateDir: stateDir, log: log,
		exited: make(chan struct{}), drained: make(chan struct{}),
	}
	ready := make(chan string, 1)
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent %s: %w", bin, err)
	}
	go a.readLog(stderr, ready)
	go func() { <-a.drained; _ = cmd.Wait(); close(a.exited) }()

	select {
	case a.url = <-ready:
		a.readyIn = time.Since(began)
		return a, nil
	case <-a.exited:
		err = errors.New("agent exited before it was ready")
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	a.kill()
	return nil, fmt.Errorf("start agent %s: %w; last lines:\n%s", bin, err, a.lastLines())
}

// readLog reads the agent's JSON log to the end; the URL of "agent ready" goes to
// ready.
func (a *agentProc) readLog(r io.Reader, ready chan<- string) {
	defer close(a.drained)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l agentLine
		_ = json.Unmarshal(sc.Bytes(), &l)
		a.note(sc.Text(), l)
		if l.Message == "agent ready" && l.NATSURL != "" {
			ready <- l.NATSURL
		}
	}
}

func (a *agentProc) note(text string, l agentLine) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tail = append(a.tail, text)
	if len(a.tail) > 20 {
		a.tail = a.tail[1:]
	}
	if l.Level == "warn" || l.Level == "error" {
		a.warnings = append(a.warnings, text)
	}
	if l.Message == "pool ready" {
		a.poolMs = l.ElapsedMs
	}
}

func (a *agentProc) lastLines() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.tail, "\n")
}

// warningLines returns the warn and error lines the agent wrote so far.
func (a *agentProc) warningLines() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.warnings...)
}

func (a *agentProc) pid() int { return a.cmd.Process.Pid }

// rss is the agent's resident set size in bytes.
func (a *agentProc) rss() (int64, error) { return readRSS(a.pid()) }

// stop sends SIGTERM and waits for an orderly exit; past the grace it kills. It
// then checks that no worker of the agent outlived it.
func (a *agentProc) stop(grace time.Duration) error {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-a.exited:
	case <-t.C:
		a.kill()
		return fmt.Errorf("stop agent %d: not gone %v after SIGTERM, killed", a.pid(), grace)
	}
	if left := waitNoProcesses(a.stateDir, 3*time.Second); len(left) > 0 {
		return fmt.Errorf("stop agent %d: worker processes left: %v", a.pid(), left)
	}
	return nil
}

func (a *agentProc) kill() {
	_ = a.cmd.Process.Kill()
	<-a.exited
}

// readRSS reads VmRSS of a process from /proc, in bytes.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("read rss of %d: %w", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read rss of %d: %q: %w", pid, line, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("read rss of %d: no VmRSS line", pid)
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc: 100 on Linux.
const clockTicks = 100

// readCPU reads the user and system CPU time a process has used.
func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, fmt.Errorf("read cpu of %d: %w", pid, err)
	}
	// The command name may hold spaces; the fields after it do not.
	end := strings.LastIndexByte(string(b), ')')
	if end < 0 {
		return 0, fmt.Errorf("read cpu of %d: no command name in stat", pid)
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("read cpu of %d: short stat line", pid)
	}
	var ticks int64
	for _, field := range f[11:13] { // utime and stime, fields 14 and 15
		n, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read cpu of %d: %q: %w", pid, field, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// waitNoProcesses polls until no process mentions dir in its command line or
// environment, or d passes; it returns the pids still there.
func waitNoProcesses(dir string, d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		left := processesMentioning(dir)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

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
