// Command snakectl is the operator CLI of a Snakepit fleet: run a command, read
// stats and workers. Exit status: 0 success, 1 an error reply or a failed
// operation, 2 bad usage. Each subcommand lives in its own file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/jetstream"
	"github.com/snakepit-go/snakepit/natsconn"
)

const defaultServer = "nats://127.0.0.1:4222"

// exit codes
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// command is one subcommand.
type command struct {
	name  string
	usage string
	run   func(e *env, args []string) int
}

// env is what every subcommand gets: streams and a lazily opened connection.
type env struct {
	stdout, stderr io.Writer
	server         string
	prefix         string
	conn           natsconn.Flags
	nc             *nats.Conn
	kv             *jetstream.KV
	cancels        []context.CancelFunc // released by close
}

func commands() []command {
	return []command{
		{"exec", execUsage, runExec},
		{"stream", streamUsage, runStream},
		{"stats", "stats [--json]", runStats},
		{"sessions", sessionsUsage, runSessions},
		{"agents", "agents [--json]", runAgents},
		{"drain", "drain AGENT", runDrain},
		{"workers", "workers [--json]", runWorkers},
		{"await-ready", awaitReadyUsage, runAwaitReady},
		{"cleanup", cleanupUsage, runCleanup},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("snakectl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&e.server, "server", serverDefault(), "NATS server URL (env NATS_URL)")
	fs.StringVar(&e.prefix, "prefix", dispatch.DefaultPrefix, "subject prefix")
	e.conn.Register(fs)
	fs.Usage = func() { usage(stderr, fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		usage(stderr, fs)
		return exitUsage
	}
	defer e.close()
	for _, c := range commands() {
		if c.name == fs.Arg(0) {
			return c.run(e, fs.Args()[1:])
		}
	}
	fmt.Fprintf(stderr, "snakectl: unknown command %q\n", fs.Arg(0))
	usage(stderr, fs)
	return exitUsage
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "usage: snakectl [--server URL] [--prefix P] COMMAND [ARGS]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %s\n", c.usage)
	}
	fmt.Fprintln(w, "\nglobal flags:")
	fs.PrintDefaults()
}

func serverDefault() string {
	if u := os.Getenv("NATS_URL"); u != "" {
		return u
	}
	return defaultServer
}

// client connects on first use.
func (e *env) client() (*dispatch.Client, error) {
	if e.nc == nil {
		opts, err := e.conn.Options()
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Name("snakectl"), nats.Timeout(5*time.Second))
		nc, err := nats.Connect(e.server, opts...)
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", natsconn.Redact(e.server), err)
		}
		e.nc = nc
	}
	return dispatch.NewClient(e.nc, dispatch.WithPrefix(e.prefix)), nil
}

func (e *env) close() {
	for _, cancel := range e.cancels {
		cancel()
	}
	if e.nc != nil {
		e.nc.Close()
	}
}

// fail prints an operation error and returns exit status 1.
func (e *env) fail(err error) int {
	fmt.Fprintf(e.stderr, "snakectl: %v\n", err)
	return exitError
}

// subFlags returns a flag set for a subcommand whose errors print its usage.
func (e *env) subFlags(name, usageLine string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: snakectl %s\n", usageLine)
		fs.PrintDefaults()
	}
	return fs
}

// listing is the start of a command that takes only --json and reads the fleet:
// it parses the flags and connects. A nil client means stop with code.
func (e *env) listing(name string, args []string) (*dispatch.Client, context.Context, bool, int) {
	fs := e.subFlags(name, name+" [--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if err == nil {
			fs.Usage()
		}
		return nil, nil, false, exitUsage
	}
	c, err := e.client()
	if err != nil {
		return nil, nil, false, e.fail(err)
	}
	ctx, cancel := timeoutContext(0)
	e.cancels = append(e.cancels, cancel)
	return c, ctx, *asJSON, exitOK
}

// parseInterleaved parses flags that may come after positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func timeoutContext(d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		d = 10 * time.Second
	}
	return context.WithTimeout(context.Background(), d)
}
