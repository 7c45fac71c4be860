// Package config is the declarative configuration of an agent: the reference's
// global and per-pool options, their defaults, the legacy single-pool and `pools:`
// YAML forms, and validation that names the offending key. It only describes; it
// must not start processes, open connections or log.
package config

import (
	"runtime"
	"time"
)

// Defaults of the reference's option tables.
const (
	DefaultPoolName            = "default"
	DefaultAdapter             = "snakepit_worker.examples.showcase:Showcase"
	DefaultStartupTimeoutMs    = 10000
	DefaultQueueTimeoutMs      = 5000
	DefaultMaxQueueSize        = 1000
	DefaultHealthCheckMs       = 5000
	DefaultStartupBatchSize    = 8
	DefaultStartupBatchDelayMs = 750
	DefaultThreadsPerWorker    = 10
	DefaultSessionTTLSeconds   = 3600
	DefaultShutdownGraceMs     = 30000
	DefaultPython              = "python3"
)

// Profiles, capacity strategies and affinity modes accepted in a pool.
const (
	ProfileProcess = "process"
	ProfileThread  = "thread"

	// StartFork forks each worker from the pool's template process, which has
	// started the interpreter and imported the runtime; StartExec starts each
	// worker as a new interpreter.
	StartFork = "fork"
	StartExec = "exec"

	CapacityPool    = "pool"
	CapacityProfile = "profile"
	CapacityHybrid  = "hybrid"

	AffinityHint           = "hint"
	AffinityStrictQueue    = "strict_queue"
	AffinityStrictFailFast = "strict_fail_fast"
)

// DefaultPoolSize is the reference's System.schedulers_online() * 2.
func DefaultPoolSize() int { return runtime.NumCPU() * 2 }

// Config is a whole agent configuration after loading. Pools holds every pool the
// agent serves, legacy form included.
type Config struct {
	// PoolingEnabled starts the pools when true. Default: true for pool-agent.
	PoolingEnabled bool
	// PoolStartupTimeout bounds one worker's start up to its handshake. Default 10 s.
	PoolStartupTimeout time.Duration
	// PoolQueueTimeout is how long a request may wait for a worker. Default 5 s.
	PoolQueueTimeout time.Duration
	// PoolMaxQueueSize is how many requests may wait per pool. Default 1000.
	PoolMaxQueueSize int
	// WorkerHealthCheckTimeout is the reference's grpc_worker_health_check_timeout_ms,
	// accepted for compatibility; heartbeats use Heartbeat.Timeout. Default 5 s.
	WorkerHealthCheckTimeout time.Duration
	// LogLevel is debug, info, warning or error. Default info.
	LogLevel string
	// Pools are the pools this agent serves, in file order.
	Pools []Pool
}

// Pool is one pool's options, defaults applied.
type Pool struct {
	// Name is a single NATS token: letters, digits, '_' and '-'. Required.
	Name string
	// WorkerProfile is process (one request per worker) or thread. Default process.
	WorkerProfile string
	// WorkerStart is how worker processes start: fork (default) or exec.
	WorkerStart string
	// WorkerPipelining lets a busy process-profile worker hold one more request
	// behind a short one when every worker is busy. Default true.
	WorkerPipelining bool
	// PoolSize is the number of worker processes. Default NumCPU*2.
	PoolSize int
	// AdapterModule is "module:Class" of the Python adapter. Default the showcase.
	AdapterModule string
	// AdapterArgs are passed to the adapter as command-line arguments. Default none.
	AdapterArgs []string
	// AdapterEnv are extra environment variables of the worker. Default none.
	AdapterEnv map[string]string
	// Python is the interpreter to run. Default python3.
	Python string
	// CapacityStrategy is pool, profile or hybrid. Default pool.
	CapacityStrategy string
	// StartupBatchSize workers start together. Default 8.
	StartupBatchSize int
	// StartupBatchDelay separates start-up batches. Default 750 ms.
	StartupBatchDelay time.Duration
	// ThreadsPerWorker is the thread profile's requests per worker. Default 10.
	ThreadsPerWorker int
	// ThreadSafetyChecks refuses adapters not declared thread safe. Default false.
	ThreadSafetyChecks bool
	// WorkerTTL recycles a worker after this age; 0 means infinity (the default).
	WorkerTTL time.Duration
	// WorkerMaxRequests recycles after this many requests; 0 means infinity (default).
	WorkerMaxRequests int
	// Heartbeat is the pool's heartbeat map, global values and defaults merged in.
	Heartbeat Heartbeat
	// Affinity is the session affinity mode. Default hint.
	Affinity string
	// SessionTTL is how long an unused session lease lives. Default 3600 s.
	SessionTTL time.Duration
	// QueueTimeout and MaxQueueSize come from the global options.
	QueueTimeout time.Duration
	MaxQueueSize int
	// StartupTimeout and HealthCheckTimeout come from the global options.
	StartupTimeout     time.Duration
	HealthCheckTimeout time.Duration
	// ShutdownGrace bounds how long running requests may finish on SIGTERM. Default 30 s.
	ShutdownGrace time.Duration
}

// Heartbeat is the reference's heartbeat map.
type Heartbeat struct {
	// Enabled turns heartbeat monitoring on. Default true.
	Enabled bool
	// PingInterval separates pings. Default 2 s.
	PingInterval time.Duration
	// Timeout is how long one ping may go unanswered. Default 10 s.
	Timeout time.Duration
	// MaxMissed pings in a row make the worker hung. Default 3.
	MaxMissed int
	// InitialDelay waits before the first ping. Default 0.
	InitialDelay time.Duration
	// Dependent restarts a hung worker when true; false only logs. Default true.
	Dependent bool
}

// HeartbeatDefaults returns the reference's default heartbeat map.
func HeartbeatDefaults() Heartbeat {
	return Heartbeat{
		Enabled:      true,
		PingInterval: 2 * time.Second,
		Timeout:      10 * time.Second,
		MaxMissed:    3,
		Dependent:    true,
	}
}

// Default returns the configuration of pool-agent run without --config: one pool
// named default running the showcase adapter.
func Default() *Config {
	c := &Config{PoolingEnabled: true}
	c.applyGlobalDefaults()
	c.Pools = []Pool{c.poolDefaults(DefaultPoolName)}
	return c
}

func (c *Config) applyGlobalDefaults() {
	c.PoolStartupTimeout = DefaultStartupTimeoutMs * time.Millisecond
	c.PoolQueueTimeout = DefaultQueueTimeoutMs * time.Millisecond
	c.PoolMaxQueueSize = DefaultMaxQueueSize
	c.WorkerHealthCheckTimeout = DefaultHealthCheckMs * time.Millisecond
	c.LogLevel = "info"
}

// poolDefaults returns a pool with every default applied, globals included.
func (c *Config) poolDefaults(name string) Pool {
	return Pool{
		Name:               name,
		WorkerProfile:      ProfileProcess,
		WorkerStart:        StartFork,
		WorkerPipelining:   true,
		PoolSize:           DefaultPoolSize(),
		AdapterModule:      DefaultAdapter,
		Python:             DefaultPython,
		CapacityStrategy:   CapacityPool,
		StartupBatchSize:   DefaultStartupBatchSize,
		StartupBatchDelay:  DefaultStartupBatchDelayMs * time.Millisecond,
		ThreadsPerWorker:   DefaultThreadsPerWorker,
		Heartbeat:          HeartbeatDefaults(),
		Affinity:           AffinityHint,
		SessionTTL:         DefaultSessionTTLSeconds * time.Second,
		QueueTimeout:       c.PoolQueueTimeout,
		MaxQueueSize:       c.PoolMaxQueueSize,
		StartupTimeout:     c.PoolStartupTimeout,
		HealthCheckTimeout: c.WorkerHealthCheckTimeout,
		ShutdownGrace:      DefaultShutdownGraceMs * time.Millisecond,
	}
}

// Concurrency is the most requests one worker of the pool is offered at once:
// threads_per_worker in the thread profile, else 1. capacity_strategy may lower
// it per worker once its handshake says whether the adapter is thread safe.
func (p *Pool) Concurrency() int {
	if p.WorkerProfile != ProfileThread {
		return 1
	}
	return p.ThreadsPerWorker
}

// Pipelined reports whether the pool's workers each take one request beyond
// their concurrency (worker_pipelining; the process profile only).
func (p *Pool) Pipelined() bool {
	return p.WorkerPipelining && p.WorkerProfile != ProfileThread
}

// Pool returns the named pool and whether it exists.
func (c *Config) Pool(name string) (Pool, bool) {
	for _, p := range c.Pools {
		if p.Name == name {
			return p, true
		}
	}
	return Pool{}, false
}
