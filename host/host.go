// Package host runs one agent process end to end: the state directory and its
// lock, the embedded NATS server (or a connection to an existing one), the Python
// runtime on disk, the pools and their NATS side, and an orderly stop. Both
// pool-agent and Go programs that embed the fleet use it; it holds wiring only,
// no pool or wire logic of its own.
package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/agent"
	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/natsconn"
	"github.com/snakepit-go/snakepit/python"
)

// DefaultListen is where the embedded NATS server listens by default.
const DefaultListen = "127.0.0.1:4222"

// Options configure a host.
type Options struct {
	// Config is the agent configuration. Default config.Default().
	Config *config.Config
	// NATSURL joins an existing server; empty starts an embedded one.
	NATSURL string
	// Listen is the embedded server's host:port. Default 127.0.0.1:4222; port 0
	// picks a free one.
	Listen string
	// StateDir holds the lock, the agent id, JetStream's store and the runtime.
	// Default DefaultStateDir().
	StateDir string
	// AgentID names this agent in the fleet. Default: kept in the state dir,
	// made from the host name on first start.
	AgentID string
	// Prefix is the subject prefix. Default "snakepit".
	Prefix string
	// Version is reported by the control service.
	Version string
	// KVReplicas is how many servers keep each KV bucket: 1 (the default) for a
	// single server, 3 in a cluster. An existing bucket keeps its own.
	KVReplicas int
	// HealthAddr, when set, serves GET /healthz there (bind 127.0.0.1 or a pod
	// address, never 0.0.0.0 by accident).
	HealthAddr string
	// NATSOptions are added to the connection's options (auth, TLS).
	NATSOptions []nats.Option
	Log         zerolog.Logger
}

// Host is a running agent.
type Host struct {
	opts    Options
	log     zerolog.Logger
	lock    *stateLock
	embed   *embedded
	nc      *nats.Conn
	agent   *agent.Agent
	server  *dispatch.Server
	fleet   *fleetState
	agentID string
	started time.Time

	stopOnce sync.Once
	done     chan struct{}
	// reprovisionMu keeps reconnects' bucket and watch restarts one at a time.
	reprovisionMu sync.Mutex
}

// Start brings everything up and returns once the pools are ready and subscribed.
func Start(ctx context.Context, opts Options) (*Host, error) {
	if opts.Config == nil {
		opts.Config = config.Default()
	}
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir()
	}
	h := &Host{opts: opts, log: opts.Log, done: make(chan struct{}), started: time.Now()}
	if err := h.start(ctx); err != nil {
		h.release()
		return nil, err
	}
	h.log.Info().Str("nats_url", h.URL()).Int("pools", len(h.agent.Pools())).
		Str("state_dir", opts.StateDir).Msg("agent ready")
	return h, nil
}

func (h *Host) start(ctx context.Context) error {
	var err error
	if h.lock, err = lockStateDir(h.opts.StateDir); err != nil {
		return err
	}
	if h.agentID, err = agentID(h.opts.StateDir, h.opts.AgentID); err != nil {
		return err
	}
	h.log = h.log.With().Str("agent_id", h.agentID).Logger()
	if err = h.connect(); err != nil {
		return err
	}
	if err = h.startPools(ctx); err != nil {
		return err
	}
	if h.opts.HealthAddr != "" {
		return h.serveHealth(h.opts.HealthAddr)
	}
	return nil
}

func (h *Host) connect() error {
	url := h.opts.NATSURL
	if url == "" {
		listen := h.opts.Listen
		if listen == "" {
			listen = DefaultListen
		}
		e, err := startEmbedded(listen, h.opts.StateDir, h.agentID)
		if err != nil {
			return err
		}
		h.embed = e
		url = e.clientURL()
	}
	nopts := append([]nats.Option{
		nats.Name("pool-agent " + h.agentID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				h.log.Warn().AnErr("error", err).Msg("nats disconnected")
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := h.log.Warn().AnErr("error", err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("nats error")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			h.log.Info().Str("nats_url", nc.ConnectedUrlRedacted()).Msg("nats reconnected")
			go h.reprovision()
		}),
	}, h.opts.NATSOptions...)
	if h.embed != nil {
		// The agent talks to its own server in memory, without the loopback
		// TCP stack: two hops of every request.
		nopts = append(nopts, nats.InProcessServer(h.embed.ns))
	}
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		return fmt.Errorf("connect to nats %s: %w", natsconn.Redact(url), err)
	}
	h.nc = nc
	return nil
}

func (h *Host) startPools(ctx context.Context) error {
	runtimeDir, err := python.Extract(h.opts.StateDir)
	if err != nil {
		return err
	}
	h.agent, err = agent.New(h.opts.Config, agent.Options{
		AgentID: h.agentID, RuntimeDir: runtimeDir, StateDir: h.opts.StateDir, Log: h.log,
	})
	if err != nil {
		return err
	}
	if !h.opts.Config.PoolingEnabled {
		h.log.Warn().Msg("pooling_enabled is false: no pool started")
		return nil
	}
	if err := h.agent.Start(ctx); err != nil {
		return err
	}
	pools := make([]dispatch.Pool, 0, len(h.agent.Pools()))
	for _, p := range h.agent.Pools() {
		pools = append(pools, p)
	}
	fs, err := h.startFleetState(ctx)
	if err != nil {
		h.agent.Stop(context.Background())
		return err
	}
	h.fleet = fs
	host, _ := os.Hostname()
	h.server = dispatch.NewServer(h.nc, pools, dispatch.ServerOptions{
		Prefix: h.opts.Prefix, AgentID: h.agentID, Host: host,
		Version: h.opts.Version, Log: h.log,
		Sessions: fs.sessions, Registry: fs.registry,
		OnDrain: func() { go h.Shutdown(context.Background()) },
	})
	if err := h.server.Start(); err != nil {
		h.agent.Stop(context.Background())
		return err
	}
	// Listed only once it answers: clients wait for one answer per record.
	if err := fs.registry.Announce(ctx); err != nil {
		h.server.StopIntake()
		h.agent.Stop(context.Background())
		return err
	}
	return nil
}

// URL is the NATS server the agent is connected to, credentials removed.
func (h *Host) URL() string { return h.nc.ConnectedUrlRedacted() }

// AgentID returns the agent's id.
func (h *Host) AgentID() string { return h.agentID }

// Conn returns the agent's NATS connection.
func (h *Host) Conn() *nats.Conn { return h.nc }

// Agent returns the local pools.
func (h *Host) Agent() *agent.Agent { return h.agent }

// Done is closed when the host has stopped.
func (h *Host) Done() <-chan struct{} { return h.done }

// Shutdown stops taking work, lets running requests finish within each pool's
// shutdown grace (or until ctx ends), answers queued ones with an error, stops the
// workers and then NATS.
func (h *Host) Shutdown(ctx context.Context) {
	h.stopOnce.Do(func() {
		began := time.Now()
		// Leave the registry first: peers then take this agent's sessions over
		// instead of forwarding to it.
		if h.fleet != nil {
			h.fleet.registry.Stop()
		}
		if h.server != nil {
			h.server.StopIntake()
		}
		if h.agent != nil {
			h.agent.Stop(ctx)
		}
		if h.server != nil {
			h.server.Wait(ctx)
		}
		if h.fleet != nil {
			h.fleet.sessions.Stop()
		}
		h.release()
		h.log.Info().Int64("elapsed_ms", time.Since(began).Milliseconds()).Msg("agent stopped")
		close(h.done)
	})
}

// release frees what Start acquired, in reverse order.
func (h *Host) release() {
	if h.nc != nil {
		if err := h.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			h.nc.Close()
		}
		waitClosed(h.nc, 2*time.Second)
	}
	if h.embed != nil {
		h.embed.shutdown()
	}
	if h.lock != nil {
		h.lock.release()
	}
}

func waitClosed(nc *nats.Conn, d time.Duration) {
	deadline := time.Now().Add(d)
	for !nc.IsClosed() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	nc.Close()
}
