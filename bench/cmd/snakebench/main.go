// Command snakebench is `make bench`: it measures the product's speed and cost
// against the floor in one run on one machine and prints them as ratios, since
// absolute times on a shared machine drift.
//
//	bin/pool-agent (child) ── embedded NATS on 127.0.0.1:<free port> ──┐
//	   └─ 2 Python workers                                              │
//	snakebench ── Go client ──── snakepit.default.exec.ping ────────────┤
//	           ── floor client ─ bench.floor.echo ──► Go echo responder ┤
//	           │                 bench.floor.composed ► responder ─► 2 bare
//	           │                                         Python echo children
//	           ├─ pipe pairs ─────────────────────────► 2 bare Python echo children
//	           └─ pipe pairs ─────────────────────────► 2 real worker runtimes
//	                                                     (where the time goes)
//
// The agent runs as its own process so that its RSS is its own. Everything binds
// 127.0.0.1, every loop is bounded in calls and time, and every process the run
// starts is stopped before it ends. It writes bench/latest.json and
// bench/latest.svg and prints the table; it asserts nothing and is no test.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// options are the command line.
type options struct {
	agentBin  string
	outDir    string
	python    string
	samples   int
	round     time.Duration
	leakCalls int64
	timeout   time.Duration
	markdown  bool
	render    string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("snakebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.agentBin, "agent", "bin/pool-agent", "the pool-agent binary to measure")
	fs.StringVar(&o.outDir, "out", "bench", "folder of latest.json and latest.svg")
	fs.StringVar(&o.python, "python", "python3", "interpreter of the workers and the pipe floor")
	fs.IntVar(&o.samples, "samples", 5000, "sequential calls per latency series")
	fs.DurationVar(&o.round, "round", time.Second, "length of one throughput run")
	fs.Int64Var(&o.leakCalls, "leak-calls", 100_000, "calls of the RSS growth run")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "bound of the whole run")
	fs.BoolVar(&o.markdown, "markdown", false, "also print the table as Markdown")
	fs.StringVar(&o.render, "render", "", "print the table of a saved latest.json and exit")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return o, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "snakebench: %v\n", err)
		return 2
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, TimeFormat: "15:04:05"}).
		With().Timestamp().Logger()
	if o.render != "" {
		return renderSaved(o, stdout, log)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	began, load := time.Now(), loadavg()
	res, err := measureAll(ctx, o, log)
	if err != nil {
		log.Error().Err(err).Msg("bench failed")
		return 1
	}
	rep := newReport(res, began, load)
	if err := writeOutputs(o, rep, res); err != nil {
		log.Error().Err(err).Msg("bench failed")
		return 1
	}
	if err := rep.printTable(stdout); err != nil {
		log.Error().Err(err).Msg("bench failed")
		return 1
	}
	if o.markdown {
		rep.printMarkdown(stdout)
	}
	return 0
}

// renderSaved prints the table of a report written by an earlier run.
func renderSaved(o options, stdout io.Writer, log zerolog.Logger) int {
	rep, err := readReport(o.render)
	if err == nil {
		err = rep.printTable(stdout)
	}
	if err != nil {
		log.Error().Err(err).Msg("render failed")
		return 1
	}
	if o.markdown {
		rep.printMarkdown(stdout)
	}
	return 0
}

func writeOutputs(o options, rep *report, res *results) error {
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return fmt.Errorf("make output folder %s: %w", o.outDir, err)
	}
	if err := rep.write(filepath.Join(o.outDir, "latest.json")); err != nil {
		return err
	}
	return writeSVG(filepath.Join(o.outDir, "latest.svg"), res)
}

// measureAll runs the phases in order: Python start and the 16-worker start-up
// on one agent, then everything else on a second agent with 2 workers.
func measureAll(ctx context.Context, o options, log zerolog.Logger) (*results, error) {
	root, err := os.MkdirTemp("", "snakebench-")
	if err != nil {
		return nil, fmt.Errorf("make temp dir: %w", err)
	}
	defer os.RemoveAll(root)
	stateDir := stateDirOf(root)
	res := newResults()

	runtimeDir, err := measurePythonStart(o, stateDir, res)
	if err != nil {
		return nil, err
	}
	log.Info().Float64("python_start_ms", millis(res.pythonStart)).Msg("python start measured")
	if err := measureStartup(ctx, o, root, stateDir, res, log); err != nil {
		return nil, err
	}
	r, err := startRig(ctx, o, root, stateDir, runtimeDir, res, log)
	if err != nil {
		return nil, err
	}
	defer r.close()
	return res, r.measure(ctx)
}

// measure runs every figure of the rig's agent.
func (r *rig) measure(ctx context.Context) error {
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"latency", r.latency},
		{"throughput", r.throughput},
		{"leak run", r.leakRun},
		{"python rss", r.pythonRSS},
		{"streams", r.streams},
	}
	for _, s := range steps {
		began := time.Now()
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		r.log.Info().Str("step", s.name).Int64("elapsed_ms", time.Since(began).Milliseconds()).
			Msg("step done")
	}
	return nil
}
