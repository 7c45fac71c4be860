package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// ValidToken reports whether s can be a pool or command name: one NATS subject
// token of letters, digits, '_' and '-'. The client checks every call's names,
// so this is a loop, not a regular expression.
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// adapterRE is "module.path:Class".
var adapterRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks the whole configuration; every error names its key.
func (c *Config) Validate() error {
	checks := []struct {
		key string
		ok  bool
		got any
	}{
		{"pool_startup_timeout", c.PoolStartupTimeout > 0, ms(c.PoolStartupTimeout)},
		{"pool_queue_timeout", c.PoolQueueTimeout > 0, ms(c.PoolQueueTimeout)},
		{"pool_max_queue_size", c.PoolMaxQueueSize >= 0, c.PoolMaxQueueSize},
		{"worker_health_check_timeout_ms", c.WorkerHealthCheckTimeout > 0, ms(c.WorkerHealthCheckTimeout)},
	}
	for _, ch := range checks {
		if !ch.ok {
			return fmt.Errorf("%w: %s: out of range: %v", ErrInvalid, ch.key, ch.got)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warning", "warn", "error":
	default:
		return fmt.Errorf("%w: log_level: want debug, info, warning or error, got %q", ErrInvalid, c.LogLevel)
	}
	seen := map[string]bool{}
	for i := range c.Pools {
		where := fmt.Sprintf("pools[%d]", i)
		if err := c.Pools[i].validate(where); err != nil {
			return err
		}
		if seen[c.Pools[i].Name] {
			return fmt.Errorf("%w: %s.name: duplicate pool %q", ErrInvalid, where, c.Pools[i].Name)
		}
		seen[c.Pools[i].Name] = true
	}
	return nil
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// Validate checks one pool.
func (p *Pool) Validate() error { return p.validate("pool " + p.Name) }

func (p *Pool) validate(where string) error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%w: %s.%s: "+format, append([]any{ErrInvalid, where, key}, args...)...)
	}
	if !ValidToken(p.Name) {
		return bad("name", "want letters, digits, '_' or '-', got %q", p.Name)
	}
	if !oneOf(p.WorkerStart, StartFork, StartExec) {
		return bad("worker_start", "want fork or exec, got %q", p.WorkerStart)
	}
	if !oneOf(p.WorkerProfile, ProfileProcess, ProfileThread) {
		return bad("worker_profile", "want process or thread, got %q", p.WorkerProfile)
	}
	if !oneOf(p.CapacityStrategy, CapacityPool, CapacityProfile, CapacityHybrid) {
		return bad("capacity_strategy", "want pool, profile or hybrid, got %q", p.CapacityStrategy)
	}
	if !oneOf(p.Affinity, AffinityHint, AffinityStrictQueue, AffinityStrictFailFast) {
		return bad("affinity", "want hint, strict_queue or strict_fail_fast, got %q", p.Affinity)
	}
	if !adapterRE.MatchString(p.AdapterModule) {
		return bad("adapter_module", "want module.path:Class, got %q", p.AdapterModule)
	}
	if strings.TrimSpace(p.Python) == "" {
		return bad("python", "must not be empty")
	}
	positive := []struct {
		key string
		v   int
	}{
		{"pool_size", p.PoolSize},
		{"startup_batch_size", p.StartupBatchSize},
		{"threads_per_worker", p.ThreadsPerWorker},
		{"heartbeat.max_missed_heartbeats", p.Heartbeat.MaxMissed},
	}
	for _, c := range positive {
		if c.v <= 0 {
			return bad(c.key, "must be a positive integer, got %d", c.v)
		}
	}
	durations := []struct {
		key  string
		d    time.Duration
		zero bool
	}{
		{"startup_batch_delay_ms", p.StartupBatchDelay, true},
		{"heartbeat.ping_interval_ms", p.Heartbeat.PingInterval, false},
		{"heartbeat.timeout_ms", p.Heartbeat.Timeout, false},
		{"heartbeat.initial_delay_ms", p.Heartbeat.InitialDelay, true},
		{"shutdown_grace_ms", p.ShutdownGrace, true},
	}
	for _, c := range durations {
		if c.d < 0 || (!c.zero && c.d == 0) {
			return bad(c.key, "out of range: %d", c.d.Milliseconds())
		}
	}
	if p.SessionTTL < time.Second {
		return bad("session_ttl", "must be at least 1 second, got %v", p.SessionTTL)
	}
	for k := range p.AdapterEnv {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return bad("adapter_env", "invalid variable name %q", k)
		}
	}
	return nil
}

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}
