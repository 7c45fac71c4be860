package config

import (
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestGlobalOptionsTable covers every row of the reference's global options
// table and its logging option: the default when the key is absent, and the
// value when it is set.
func TestGlobalOptionsTable(t *testing.T) {
	first := func(c *Config) Pool { return c.Pools[0] }
	cases := []struct {
		key  string
		set  string
		get  func(c *Config) any
		def  any
		want any
	}{
		// The reference says false; see DefaultPoolingEnabled for why Go says true.
		{"pooling_enabled", "pooling_enabled: false",
			func(c *Config) any { return c.PoolingEnabled }, true, false},
		{"adapter_module", "adapter_module: pkg.models:Model",
			func(c *Config) any { return first(c).AdapterModule }, DefaultAdapter, "pkg.models:Model"},
		{"pool_size", "pool_size: 3",
			func(c *Config) any { return first(c).PoolSize }, runtime.NumCPU() * 2, 3},
		{"capacity_strategy", "capacity_strategy: hybrid",
			func(c *Config) any { return first(c).CapacityStrategy }, "pool", "hybrid"},
		{"pool_startup_timeout", "pool_startup_timeout: 2500",
			func(c *Config) any { return []time.Duration{c.PoolStartupTimeout, first(c).StartupTimeout} },
			[]time.Duration{10 * time.Second, 10 * time.Second},
			[]time.Duration{2500 * time.Millisecond, 2500 * time.Millisecond}},
		{"pool_queue_timeout", "pool_queue_timeout: 250",
			func(c *Config) any { return []time.Duration{c.PoolQueueTimeout, first(c).QueueTimeout} },
			[]time.Duration{5 * time.Second, 5 * time.Second},
			[]time.Duration{250 * time.Millisecond, 250 * time.Millisecond}},
		{"pool_max_queue_size", "pool_max_queue_size: 7",
			func(c *Config) any { return []int{c.PoolMaxQueueSize, first(c).MaxQueueSize} },
			[]int{1000, 1000}, []int{7, 7}},
		// The reference's grpc_worker_health_check_timeout_ms; there is no gRPC here.
		{"worker_health_check_timeout_ms", "worker_health_check_timeout_ms: 1500",
			func(c *Config) any {
				return []time.Duration{c.WorkerHealthCheckTimeout, first(c).HealthCheckTimeout}
			},
			[]time.Duration{5 * time.Second, 5 * time.Second},
			[]time.Duration{1500 * time.Millisecond, 1500 * time.Millisecond}},
		{"log_level", "log_level: debug",
			func(c *Config) any { return c.LogLevel }, "info", "debug"},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			assertOption(t, "", tc.get, tc.def)
			assertOption(t, tc.set, tc.get, tc.want)
			assertOption(t, tc.set+"\npools: [{name: p}]", tc.get, tc.want)
		})
	}
}

// assertOption parses doc and compares get's view of it with want.
func assertOption(t *testing.T, doc string, get func(*Config) any, want any) {
	t.Helper()
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse(%q) error = %v", doc, err)
	}
	if got := get(c); !reflect.DeepEqual(got, want) {
		t.Fatalf("Parse(%q): got %v, want %v", doc, got, want)
	}
}

// poolRows are the reference's per-pool tables (profile selection, common,
// process profile, thread profile, lifecycle) and the heartbeat table, each
// row as a `pools:` entry fragment.
var poolRows = []struct {
	key  string
	set  string
	get  func(p Pool) any
	def  any
	want any
}{
	{"worker_profile", "worker_profile: thread",
		func(p Pool) any { return p.WorkerProfile }, "process", "thread"},
	{"worker_pipelining", "worker_pipelining: false",
		func(p Pool) any { return p.WorkerPipelining }, true, false},
	{"pool_size", "pool_size: 4", func(p Pool) any { return p.PoolSize }, runtime.NumCPU() * 2, 4},
	{"adapter_module", "adapter_module: mypkg.models:Model",
		func(p Pool) any { return p.AdapterModule }, DefaultAdapter, "mypkg.models:Model"},
	{"adapter_args", "adapter_args: [--model, small]",
		func(p Pool) any { return p.AdapterArgs }, []string(nil), []string{"--model", "small"}},
	{"adapter_env", "adapter_env: [[OMP_NUM_THREADS, '1']]",
		func(p Pool) any { return p.AdapterEnv }, map[string]string(nil),
		map[string]string{"OMP_NUM_THREADS": "1"}},
	{"capacity_strategy", "capacity_strategy: profile",
		func(p Pool) any { return p.CapacityStrategy }, "pool", "profile"},
	{"startup_batch_size", "startup_batch_size: 2",
		func(p Pool) any { return p.StartupBatchSize }, 8, 2},
	{"startup_batch_delay_ms", "startup_batch_delay_ms: 0",
		func(p Pool) any { return p.StartupBatchDelay }, 750 * time.Millisecond, time.Duration(0)},
	{"threads_per_worker", "threads_per_worker: 16",
		func(p Pool) any { return p.ThreadsPerWorker }, 10, 16},
	{"thread_safety_checks", "thread_safety_checks: true",
		func(p Pool) any { return p.ThreadSafetyChecks }, false, true},
	{"worker_ttl", "worker_ttl: {value: 2, unit: hours}",
		func(p Pool) any { return p.WorkerTTL }, time.Duration(0), 2 * time.Hour},
	{"worker_max_requests", "worker_max_requests: 100",
		func(p Pool) any { return p.WorkerMaxRequests }, 0, 100},
	{"heartbeat.enabled", "heartbeat: {enabled: false}",
		func(p Pool) any { return p.Heartbeat.Enabled }, true, false},
	{"heartbeat.ping_interval_ms", "heartbeat: {ping_interval_ms: 5000}",
		func(p Pool) any { return p.Heartbeat.PingInterval }, 2 * time.Second, 5 * time.Second},
	{"heartbeat.timeout_ms", "heartbeat: {timeout_ms: 3000}",
		func(p Pool) any { return p.Heartbeat.Timeout }, 10 * time.Second, 3 * time.Second},
	{"heartbeat.max_missed_heartbeats", "heartbeat: {max_missed_heartbeats: 5}",
		func(p Pool) any { return p.Heartbeat.MaxMissed }, 3, 5},
	{"heartbeat.initial_delay_ms", "heartbeat: {initial_delay_ms: 100}",
		func(p Pool) any { return p.Heartbeat.InitialDelay }, time.Duration(0), 100 * time.Millisecond},
	{"heartbeat.dependent", "heartbeat: {dependent: false}",
		func(p Pool) any { return p.Heartbeat.Dependent }, true, false},
}

// TestPoolOptionsTables checks each per-pool row three ways: in a YAML file, as
// a map through NormalizePoolConfig, and the default of HeartbeatDefaults for
// the heartbeat rows.
func TestPoolOptionsTables(t *testing.T) {
	for _, tc := range poolRows {
		t.Run(tc.key, func(t *testing.T) {
			c := parsePools(t, "pools: [{name: p}]")
			if got := tc.get(c.Pools[0]); !reflect.DeepEqual(got, tc.def) {
				t.Fatalf("default %s = %v, want %v", tc.key, got, tc.def)
			}
			c = parsePools(t, "pools: [{name: p, "+strings.TrimSpace(tc.set)+"}]")
			if got := tc.get(c.Pools[0]); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("%s set in YAML = %v, want %v", tc.key, got, tc.want)
			}
			m := fragmentMap(t, "name: p\n"+tc.set)
			p, err := ValidatePoolConfig(m)
			if err != nil {
				t.Fatalf("ValidatePoolConfig(%v) error = %v", m, err)
			}
			if got := tc.get(p); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("%s set in a map = %v, want %v", tc.key, got, tc.want)
			}
			if strings.HasPrefix(tc.key, "heartbeat.") {
				if got := tc.get(Pool{Heartbeat: HeartbeatDefaults()}); !reflect.DeepEqual(got, tc.def) {
					t.Fatalf("HeartbeatDefaults() %s = %v, want %v", tc.key, got, tc.def)
				}
			}
		})
	}
}

func TestNameIsRequired(t *testing.T) {
	cases := []struct {
		name string
		run  func() error
	}{
		{"yaml", func() error { _, err := Parse([]byte("pools: [{pool_size: 1}]")); return err }},
		{"map", func() error {
			_, err := ValidatePoolConfig(map[string]any{"pool_size": 1})
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "name: required") {
				t.Fatalf("error = %v, want ErrInvalid naming name: required", err)
			}
		})
	}
}

// TestGlobalHeartbeatMergesIntoPools: the global heartbeat map applies to
// every pool, and a pool's own keys win.
func TestGlobalHeartbeatMergesIntoPools(t *testing.T) {
	c := parsePools(t, `
heartbeat: {ping_interval_ms: 500, dependent: false}
pools:
  - name: a
  - name: b
    heartbeat: {ping_interval_ms: 900}
`)
	a, b := c.Pools[0].Heartbeat, c.Pools[1].Heartbeat
	if a.PingInterval != 500*time.Millisecond || a.Dependent ||
		b.PingInterval != 900*time.Millisecond || b.Dependent {
		t.Fatalf("heartbeats a=%+v b=%+v, want 500ms/900ms and dependent false in both", a, b)
	}
}

func TestLegacyPoolSizePrecedence(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       int
	}{
		{"top-level wins", "pool_size: 100\npool_config: {pool_size: 9}", 100},
		{"pool_config alone", "pool_config: {pool_size: 9}", 9},
		{"top-level alone", "pool_size: 5", 5},
		{"neither", "pool_config: {startup_batch_size: 8}", runtime.NumCPU() * 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := parsePools(t, tc.yaml).Pools[0].PoolSize; got != tc.want {
				t.Fatalf("Parse(%q) pool_size = %d, want %d", tc.yaml, got, tc.want)
			}
		})
	}
}

func TestGetPoolConfig(t *testing.T) {
	c := parsePools(t,
		"pools: [{name: default}, {name: hpc, worker_profile: thread, threads_per_worker: 16}]")
	cases := []struct {
		name    string
		pool    string
		wantErr error
		thread  bool
	}{
		{"default pool", "default", nil, false},
		{"thread pool", "hpc", nil, true},
		{"missing pool", "nope", ErrPoolNotFound, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := GetPoolConfig(c, tc.pool)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("GetPoolConfig(%q) error = %v, want %v", tc.pool, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			prof := ProfileOf(p)
			if ThreadProfile(p) != tc.thread || (prof.Name == ProfileThread) != tc.thread {
				t.Fatalf("GetPoolConfig(%q) profile = %+v, want thread %v", tc.pool, prof, tc.thread)
			}
			if tc.thread && prof.Concurrency != 16 {
				t.Fatalf("ProfileOf(%q).Concurrency = %d, want 16", tc.pool, prof.Concurrency)
			}
		})
	}
}

func TestGetPoolConfigsCopies(t *testing.T) {
	c := parsePools(t, "pools: [{name: a, adapter_args: [x], adapter_env: {K: v}}]")
	pools, err := GetPoolConfigs(c)
	if err != nil {
		t.Fatalf("GetPoolConfigs() error = %v", err)
	}
	pools[0].AdapterArgs[0] = "changed"
	pools[0].AdapterEnv["K"] = "changed"
	if c.Pools[0].AdapterArgs[0] != "x" || c.Pools[0].AdapterEnv["K"] != "v" {
		t.Fatalf("GetPoolConfigs() shares slices or maps with the config: %+v", c.Pools[0])
	}
	def, err := GetPoolConfigs(nil)
	if err != nil || len(def) != 1 || def[0].Name != DefaultPoolName {
		t.Fatalf("GetPoolConfigs(nil) = %v, %v; want the default pool", def, err)
	}
}

func TestNormalizeAndValidateMaps(t *testing.T) {
	cases := []struct {
		name     string
		m        map[string]any
		normErr  string
		validErr string
	}{
		{"good", map[string]any{"name": "a", "pool_size": 2}, "", ""},
		{"unknown key", map[string]any{"name": "a", "colour": "red"},
			"unknown key colour", "unknown key colour"},
		{"wrong type", map[string]any{"name": "a", "pool_size": "many"}, "many", "many"},
		{"out of range only fails validation", map[string]any{"name": "a", "pool_size": 0}, "",
			"pool_size"},
		{"bad profile only fails validation", map[string]any{"name": "a", "worker_profile": "fork"}, "",
			"worker_profile"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NormalizePoolConfig(tc.m)
			checkErr(t, "NormalizePoolConfig", tc.m, err, tc.normErr)
			_, err = ValidatePoolConfig(tc.m)
			checkErr(t, "ValidatePoolConfig", tc.m, err, tc.validErr)
		})
	}
}

func checkErr(t *testing.T, fn string, m map[string]any, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("%s(%v) error = %v, want none", fn, m, err)
		}
		return
	}
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
		t.Fatalf("%s(%v) error = %v, want ErrInvalid naming %q", fn, m, err, want)
	}
}

func parsePools(t *testing.T, doc string) *Config {
	t.Helper()
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse(%q) error = %v", doc, err)
	}
	return c
}

// fragmentMap decodes a YAML fragment into the map a Go caller would write.
func fragmentMap(t *testing.T, doc string) map[string]any {
	t.Helper()
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatalf("yaml %q: %v", doc, err)
	}
	return m
}
