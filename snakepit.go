// Package snakepit is the API for Go programs, the reference's Snakepit module
// in Go: Execute, ExecuteInSession, GetStats, ListWorkers, AwaitReady, Cleanup,
// RunAsScript, the configuration functions and telemetry, over a Runtime that
// is either embedded (an in-process agent with its own NATS server and real
// Python workers) or remote (a NATS connection to a running fleet).
//
// It owns the runtime's life (start, ownership, stop, cleanup of the run's
// processes) and the script lifecycle. It is a thin facade: it must not carry
// wire, pool or worker logic of its own; that lives in dispatch, agent and host.
//
// The package-level functions use the process-wide runtime started by Start or
// by RunAsScript; a *Runtime from New is independent of it. The reference's
// `:pool` option (which pool process) is the Runtime you call; `:pool_name` is
// WithPool.
package snakepit

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/host"
)

// DefaultListen is where an embedded runtime's NATS server listens: a free
// port on the loopback interface, so it never collides with a pool-agent.
const DefaultListen = "127.0.0.1:0"

// Options choose and configure a runtime. NATSURL set means remote; empty
// means embedded.
type Options struct {
	// Config is the fleet configuration. Default: ConfigFile, else
	// config.Default() (one pool named default running the showcase adapter).
	Config *config.Config
	// ConfigFile is YAML read with config.LoadFile when Config is nil.
	ConfigFile string
	// NATSURL joins a running fleet; the runtime then starts nothing locally.
	NATSURL string
	// NATSOptions are added to the client connection's options (auth, TLS).
	NATSOptions []nats.Option
	// Prefix is the subject prefix. Default "snakepit".
	Prefix string
	// Listen is the embedded NATS server's host:port. Default DefaultListen.
	Listen string
	// StateDir is the embedded agent's state directory. Default: a fresh
	// temporary directory, removed when the runtime stops.
	StateDir string
	// AgentID names the embedded agent. Default: made from the host name.
	AgentID string
	// Log receives the runtime's logs. Default: none.
	Log zerolog.Logger
}

// Runtime is a running connection to a fleet, embedded or remote.
type Runtime struct {
	cfg      *config.Config
	log      zerolog.Logger
	runID    string
	stateDir string
	tempDir  bool
	host     *host.Host // nil when remote
	// wantPools are the pools a remote AwaitReady waits for: those of a
	// configuration the caller gave.
	wantPools []string
	nc        *nats.Conn
	client    *dispatch.Client

	stopOnce sync.Once
	done     chan struct{}
}

// New starts a runtime that the caller owns and must Stop. An embedded
// runtime returns once every pool's workers have finished their handshake.
func New(ctx context.Context, opts Options) (*Runtime, error) {
	cfg, err := loadConfig(opts)
	if err != nil {
		return nil, err
	}
	rt := &Runtime{cfg: cfg, log: opts.Log, runID: nuid.Next(), done: make(chan struct{})}
	rt.log = rt.log.With().Str(keyRunID, rt.runID).Logger()
	if opts.NATSURL == "" {
		err = rt.startEmbedded(ctx, opts)
	} else {
		err = rt.connect(opts.NATSURL, opts)
		if opts.Config != nil || opts.ConfigFile != "" {
			for _, p := range cfg.Pools {
				rt.wantPools = append(rt.wantPools, p.Name)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	rt.client = dispatch.NewClient(rt.nc, prefixOption(opts.Prefix)...)
	return rt, nil
}

func loadConfig(opts Options) (*config.Config, error) {
	switch {
	case opts.Config != nil:
		if err := opts.Config.Validate(); err != nil {
			return nil, fmt.Errorf("runtime config: %w", err)
		}
		return opts.Config, nil
	case opts.ConfigFile != "":
		return config.LoadFile(opts.ConfigFile)
	}
	return config.Default(), nil
}

func prefixOption(prefix string) []dispatch.ClientOption {
	if prefix == "" {
		return nil
	}
	return []dispatch.ClientOption{dispatch.WithPrefix(prefix)}
}

func (rt *Runtime) startEmbedded(ctx context.Context, opts Options) error {
	rt.stateDir = opts.StateDir
	if rt.stateDir == "" {
		dir, err := os.MkdirTemp("", "snakepit-")
		if err != nil {
			return fmt.Errorf("embedded runtime state dir: %w", err)
		}
		rt.stateDir, rt.tempDir = dir, true
	}
	listen := opts.Listen
	if listen == "" {
		listen = DefaultListen
	}
	h, err := host.Start(ctx, host.Options{
		Config: rt.cfg, Listen: listen, StateDir: rt.stateDir, AgentID: opts.AgentID,
		Prefix: opts.Prefix, Log: rt.log,
	})
	if err != nil {
		rt.removeTempDir()
		return fmt.Errorf("start embedded runtime in %s: %w", rt.stateDir, err)
	}
	rt.host = h
	if err := rt.connect(h.Conn().ConnectedUrl(), opts); err != nil {
		h.Shutdown(context.WithoutCancel(ctx))
		rt.removeTempDir()
		return err
	}
	return nil
}

func (rt *Runtime) connect(url string, opts Options) error {
	nopts := append([]nats.Option{nats.Name("snakepit client " + rt.runID)}, opts.NATSOptions...)
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		return fmt.Errorf("connect to nats %s: %w", url, err)
	}
	rt.nc = nc
	return nil
}

// Stop ends the runtime: the client connection, then for an embedded runtime
// the agent (running requests may finish within each pool's shutdown grace or
// until ctx ends; the workers are stopped) and its NATS server. It returns
// when all of that is done. Stopping twice is harmless.
func (rt *Runtime) Stop(ctx context.Context) {
	rt.stopOnce.Do(func() {
		rt.nc.Close()
		if rt.host != nil {
			rt.host.Shutdown(ctx)
		}
		rt.removeTempDir()
		close(rt.done)
	})
}

func (rt *Runtime) removeTempDir() {
	if !rt.tempDir {
		return
	}
	if err := os.RemoveAll(rt.stateDir); err != nil {
		rt.log.Warn().Err(err).Str(keyStateDir, rt.stateDir).Msg("remove temporary state dir")
	}
}

// Done is closed once the runtime has stopped.
func (rt *Runtime) Done() <-chan struct{} { return rt.done }

func (rt *Runtime) stopped() bool {
	select {
	case <-rt.done:
		return true
	default:
		return false
	}
}

// RunID identifies this runtime's run in logs and telemetry.
func (rt *Runtime) RunID() string { return rt.runID }

// Embedded reports whether the runtime runs its own agent in this process.
func (rt *Runtime) Embedded() bool { return rt.host != nil }

// URL is the NATS server the runtime talks to, credentials removed; other
// programs can join an embedded runtime's fleet there.
func (rt *Runtime) URL() string { return rt.nc.ConnectedUrlRedacted() }

// Config returns the runtime's configuration; do not modify it.
func (rt *Runtime) Config() *config.Config { return rt.cfg }

// StateDir is the embedded agent's state directory; empty when remote.
func (rt *Runtime) StateDir() string { return rt.stateDir }

// std is the process-wide runtime that the package-level functions use.
var std struct {
	mu sync.Mutex
	rt *Runtime
	// last is the runtime Stop stopped, so Cleanup can still reach its run.
	last *Runtime
}

// Start starts the process-wide runtime. It returns ErrAlreadyStarted if one
// is running.
func Start(ctx context.Context, opts Options) error {
	_, owned, err := ensureStarted(ctx, opts)
	if err == nil && !owned {
		return ErrAlreadyStarted
	}
	return err
}

// ensureStarted returns the process-wide runtime, starting it if none runs;
// owned reports whether this call started it.
func ensureStarted(ctx context.Context, opts Options) (rt *Runtime, owned bool, err error) {
	std.mu.Lock()
	defer std.mu.Unlock()
	if std.rt != nil && !std.rt.stopped() {
		return std.rt, false, nil
	}
	if std.rt != nil {
		std.last = std.rt
	}
	rt, err = New(ctx, opts)
	if err != nil {
		return nil, false, err
	}
	std.rt = rt
	return rt, true, nil
}

// Stop stops the process-wide runtime; ErrNotStarted if none runs.
func Stop(ctx context.Context) error {
	std.mu.Lock()
	rt := std.rt
	std.rt = nil
	if rt != nil {
		std.last = rt
	}
	std.mu.Unlock()
	if rt == nil || rt.stopped() {
		return ErrNotStarted
	}
	rt.Stop(ctx)
	return nil
}

// Current returns the process-wide runtime, or ErrNotStarted.
func Current() (*Runtime, error) {
	std.mu.Lock()
	defer std.mu.Unlock()
	if std.rt == nil || std.rt.stopped() {
		return nil, ErrNotStarted
	}
	return std.rt, nil
}

// Log keys of this package.
const (
	keyRunID    = "run_id"
	keyStateDir = "state_dir"
	keyExitMode = "exit_mode"
	keyStopMode = "stop_mode"
	keyOwned    = "owned"
	keyStatus   = "status"
)
