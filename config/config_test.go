package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseForms(t *testing.T) {
	cases := []struct {
		name  string
		yaml  string
		check func(t *testing.T, c *Config)
	}{
		{"empty file is the default pool", "", func(t *testing.T, c *Config) {
			if len(c.Pools) != 1 || c.Pools[0].Name != "default" ||
				c.Pools[0].AdapterModule != DefaultAdapter {
				t.Fatalf("pools = %+v, want the default pool", c.Pools)
			}
		}},
		{"legacy top-level pool_size wins", `
adapter_module: pkg.mod:Cls
pool_size: 3
pool_config:
  pool_size: 9
  startup_batch_size: 2
  startup_batch_delay_ms: 10
`, func(t *testing.T, c *Config) {
			p := c.Pools[0]
			if p.PoolSize != 3 || p.AdapterModule != "pkg.mod:Cls" || p.StartupBatchSize != 2 ||
				p.StartupBatchDelay != 10*time.Millisecond {
				t.Fatalf("pool = %+v, want size 3, pkg.mod:Cls, batch 2, delay 10ms", p)
			}
		}},
		{"legacy pool_config size used without top-level", "pool_config: {pool_size: 5}",
			func(t *testing.T, c *Config) {
				if c.Pools[0].PoolSize != 5 {
					t.Fatalf("pool_size = %d, want 5", c.Pools[0].PoolSize)
				}
			}},
		{"pools form with globals", `
pool_queue_timeout: 250
pool_max_queue_size: 7
heartbeat: {ping_interval_ms: 500}
pools:
  - name: a
    pool_size: 1
  - name: b
    worker_profile: thread
    threads_per_worker: 4
    heartbeat: {enabled: false}
    worker_ttl: {value: 2, unit: minutes}
    worker_max_requests: 50
    adapter_env: ["A=1", [B, "2"]]
`, func(t *testing.T, c *Config) {
			a, b := c.Pools[0], c.Pools[1]
			if a.QueueTimeout != 250*time.Millisecond || a.MaxQueueSize != 7 ||
				a.Heartbeat.PingInterval != 500*time.Millisecond {
				t.Fatalf("pool a = %+v, want globals applied", a)
			}
			if b.Concurrency() != 4 || b.Heartbeat.Enabled ||
				b.Heartbeat.PingInterval != 500*time.Millisecond ||
				b.WorkerTTL != 2*time.Minute || b.WorkerMaxRequests != 50 ||
				b.AdapterEnv["A"] != "1" || b.AdapterEnv["B"] != "2" {
				t.Fatalf("pool b = %+v, want thread x4, heartbeat off, ttl 2m, max 50, env A and B", b)
			}
		}},
		{"infinity", "worker_ttl: infinity\nworker_max_requests: infinity",
			func(t *testing.T, c *Config) {
				if c.Pools[0].WorkerTTL != 0 || c.Pools[0].WorkerMaxRequests != 0 {
					t.Fatalf("pool = %+v, want infinite ttl and requests", c.Pools[0])
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml))
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			tc.check(t, c)
		})
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown global key", "pool_sise: 3", "unknown key pool_sise"},
		{"unknown pool key", "pools: [{name: a, colour: red}]", "unknown key colour"},
		{"zero pool size", "pools: [{name: a, pool_size: 0}]", "pools[0].pool_size"},
		{"bad profile", "pools: [{name: a, worker_profile: fork}]", "pools[0].worker_profile"},
		{"bad name", "pools: [{name: 'a.b'}]", "pools[0].name"},
		{"missing name", "pools: [{pool_size: 1}]", "pools[0].name: required"},
		{"duplicate name", "pools: [{name: a}, {name: a}]", "duplicate pool"},
		{"bad adapter", "adapter_module: notamodule", "adapter_module"},
		{"bad ttl unit", "worker_ttl: {value: 1, unit: days}", "worker_ttl.unit"},
		{"bad max requests", "worker_max_requests: -1", "worker_max_requests"},
		{"negative delay", "pool_config: {startup_batch_delay_ms: -5}", "startup_batch_delay_ms"},
		{"bad affinity", "pools: [{name: a, affinity: sticky}]", "pools[0].affinity"},
		{"bad log level", "log_level: loud", "log_level"},
		{"zero queue timeout", "pool_queue_timeout: 0", "pool_queue_timeout"},
		{"wrong type", "pool_size: many", "pool_size: cannot unmarshal"},
		{"wrong type in a pool", "pools:\n  - name: a\n    pool_size: two",
			"pools[0].pool_size: cannot unmarshal"},
		{"fraction for an integer", "pool_max_queue_size: 2.5", "pool_max_queue_size"},
		{"both forms", "pool_config: {pool_size: 1}\npools: [{name: a}]", "pool_config"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse(%q) error = %v, want ErrInvalid naming %q", tc.yaml, err, tc.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	p := Default().Pools[0]
	want := Pool{
		Name: "default", WorkerProfile: "process", PoolSize: DefaultPoolSize(),
		AdapterModule: DefaultAdapter, Python: "python3", CapacityStrategy: "pool",
		StartupBatchSize: 8, StartupBatchDelay: 750 * time.Millisecond, ThreadsPerWorker: 10,
		Heartbeat: Heartbeat{Enabled: true, PingInterval: 2 * time.Second, Timeout: 10 * time.Second,
			MaxMissed: 3, Dependent: true},
		Affinity: "hint", SessionTTL: time.Hour, QueueTimeout: 5 * time.Second, MaxQueueSize: 1000,
		StartupTimeout: 10 * time.Second, HealthCheckTimeout: 5 * time.Second,
		ShutdownGrace: 30 * time.Second,
	}
	if p.Name != want.Name || p.PoolSize != want.PoolSize || p.Heartbeat != want.Heartbeat ||
		p.StartupBatchDelay != want.StartupBatchDelay || p.QueueTimeout != want.QueueTimeout ||
		p.MaxQueueSize != want.MaxQueueSize || p.SessionTTL != want.SessionTTL ||
		p.StartupTimeout != want.StartupTimeout || p.ThreadsPerWorker != want.ThreadsPerWorker {
		t.Fatalf("Default().Pools[0] = %+v, want %+v", p, want)
	}
}

func TestValidToken(t *testing.T) {
	for _, s := range []string{"a", "default", "A_b-9", "ping", "Z", "0", "_", "-",
		strings.Repeat("x", 300)} {
		if !ValidToken(s) {
			t.Errorf("ValidToken(%q) = false, want true", s)
		}
	}
	for _, s := range []string{"", "a.b", "a b", "a*", ">", "*", "é", "a\n", "a\x00", "x/y",
		"tab\t"} {
		if ValidToken(s) {
			t.Errorf("ValidToken(%q) = true, want false", s)
		}
	}
}
