package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/agent"
	"github.com/snakepit-go/snakepit/python"
)

// The start-up figure's pool: 16 workers in batches of 8, 750 ms apart (the
// defaults of startup_batch_size and startup_batch_delay_ms).
const (
	startupWorkers = 16
	startupBatch   = 8
	startupDelay   = 750 * time.Millisecond
	pythonStarts   = 5
)

// poolConfig is the agent's YAML: one pool of the showcase adapter, run by the
// interpreter the floors use.
func poolConfig(dir, name, python string, size int) (string, error) {
	yaml := fmt.Sprintf(`pools:
  - name: %s
    python: %q
    pool_size: %d
    startup_batch_size: %d
    startup_batch_delay_ms: %d
    shutdown_grace_ms: 5000
`, benchPool, python, size, startupBatch, startupDelay.Milliseconds())
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		return "", fmt.Errorf("write agent config %s: %w", path, err)
	}
	return path, nil
}

// measurePythonStart times starts of the real worker runtime from the runtime the
// agent will use, compiled as the agent compiles it, after one untimed start, and
// keeps the median; then one batch of startupBatch started at once. It returns
// the runtime's folder.
func measurePythonStart(o options, stateDir string, res *results) (string, error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return "", fmt.Errorf("make state dir %s: %w", stateDir, err)
	}
	runtimeDir, err := python.Extract(stateDir)
	if err != nil {
		return "", err
	}
	if err := agent.CompileRuntime(context.Background(), o.python, runtimeDir); err != nil {
		return "", err
	}
	if _, _, err := timePythonStart(o.python, runtimeDir); err != nil {
		return "", err
	}
	var starts []time.Duration
	for range pythonStarts {
		d, hello, err := timePythonStart(o.python, runtimeDir)
		if err != nil {
			return "", err
		}
		starts = append(starts, d)
		res.pythonVersion = hello.Python
	}
	slices.Sort(starts)
	res.pythonStarts = starts
	res.pythonStart = starts[len(starts)/2]
	res.batchStart, err = timeBatchStart(o.python, runtimeDir, startupBatch)
	return runtimeDir, err
}

// measureStartup starts an agent with 16 workers and times it from exec to its
// "agent ready" line, which it logs once every worker has sent HELLO and the
// pools are subscribed. An untimed start of one worker on the same state dir
// comes first, so the runtime the agent extracts has its bytecode compiled, as
// on every start but the first.
func measureStartup(ctx context.Context, o options, root, stateDir string, res *results,
	log zerolog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	warm, err := poolConfig(root, "warm.yaml", o.python, 1)
	if err != nil {
		return err
	}
	a, err := startAgent(ctx, o.agentBin, stateDir, warm, log)
	if err != nil {
		return err
	}
	if err := a.stop(20 * time.Second); err != nil {
		return err
	}
	cfg, err := poolConfig(root, "startup.yaml", o.python, startupWorkers)
	if err != nil {
		return err
	}
	a, err = startAgent(ctx, o.agentBin, stateDir, cfg, log)
	if err != nil {
		return err
	}
	res.startup = a.readyIn
	a.mu.Lock()
	res.startupPoolMs = a.poolMs
	a.mu.Unlock()
	res.warnings = append(res.warnings, a.warningLines()...)
	log.Info().Int("workers", startupWorkers).Int64("ready_ms", a.readyIn.Milliseconds()).
		Msg("start-up measured")
	return a.stop(20 * time.Second)
}

// startupLowerBound is what batching alone costs: every batch but the first
// waits the delay, and the last batch needs one Python start.
func startupLowerBound(pythonStart time.Duration) time.Duration {
	batches := (startupWorkers + startupBatch - 1) / startupBatch
	return time.Duration(batches-1)*startupDelay + pythonStart
}
