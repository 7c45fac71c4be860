package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// fileGlobal is the YAML file as written: pointers tell a key that is absent from
// one set to its zero value.
type fileGlobal struct {
	PoolingEnabled           *bool        `yaml:"pooling_enabled"`
	AdapterModule            *string      `yaml:"adapter_module"`
	PoolSize                 *int         `yaml:"pool_size"`
	CapacityStrategy         *string      `yaml:"capacity_strategy"`
	PoolStartupTimeout       *int         `yaml:"pool_startup_timeout"`
	PoolQueueTimeout         *int         `yaml:"pool_queue_timeout"`
	PoolMaxQueueSize         *int         `yaml:"pool_max_queue_size"`
	WorkerHealthCheckTimeout *int         `yaml:"worker_health_check_timeout_ms"`
	LogLevel                 *string      `yaml:"log_level"`
	Heartbeat                *fileHB      `yaml:"heartbeat"`
	Python                   *string      `yaml:"python"`
	PoolConfig               *filePool    `yaml:"pool_config"`
	Pools                    []filePool   `yaml:"pools"`
	AdapterArgs              []string     `yaml:"adapter_args"`
	AdapterEnv               *envList     `yaml:"adapter_env"`
	WorkerTTL                *ttlValue    `yaml:"worker_ttl"`
	WorkerMaxRequests        *maxRequests `yaml:"worker_max_requests"`
}

type filePool struct {
	Name                *string      `yaml:"name"`
	WorkerProfile       *string      `yaml:"worker_profile"`
	WorkerStart         *string      `yaml:"worker_start"`
	WorkerPipelining    *bool        `yaml:"worker_pipelining"`
	PoolSize            *int         `yaml:"pool_size"`
	AdapterModule       *string      `yaml:"adapter_module"`
	AdapterArgs         []string     `yaml:"adapter_args"`
	AdapterEnv          *envList     `yaml:"adapter_env"`
	Python              *string      `yaml:"python"`
	CapacityStrategy    *string      `yaml:"capacity_strategy"`
	StartupBatchSize    *int         `yaml:"startup_batch_size"`
	StartupBatchDelayMs *int         `yaml:"startup_batch_delay_ms"`
	MaxWorkers          *int         `yaml:"max_workers"`
	ThreadsPerWorker    *int         `yaml:"threads_per_worker"`
	ThreadSafetyChecks  *bool        `yaml:"thread_safety_checks"`
	WorkerTTL           *ttlValue    `yaml:"worker_ttl"`
	WorkerMaxRequests   *maxRequests `yaml:"worker_max_requests"`
	Heartbeat           *fileHB      `yaml:"heartbeat"`
	Affinity            *string      `yaml:"affinity"`
	SessionTTL          *int         `yaml:"session_ttl"`
	ShutdownGraceMs     *int         `yaml:"shutdown_grace_ms"`
}

type fileHB struct {
	Enabled             *bool `yaml:"enabled"`
	PingIntervalMs      *int  `yaml:"ping_interval_ms"`
	TimeoutMs           *int  `yaml:"timeout_ms"`
	MaxMissedHeartbeats *int  `yaml:"max_missed_heartbeats"`
	InitialDelayMs      *int  `yaml:"initial_delay_ms"`
	Dependent           *bool `yaml:"dependent"`
}

// LoadFile reads and validates a YAML configuration file.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML in either form, applies defaults and validates. Unknown keys
// and bad values are errors that name the key.
func Parse(data []byte) (*Config, error) {
	var g fileGlobal
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&g); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, nameKeys(data, yamlMessage(err)))
	}
	if err := checkIntegers(data); err != nil {
		return nil, err
	}
	c := &Config{PoolingEnabled: true}
	c.applyGlobalDefaults()
	if err := c.applyGlobals(&g); err != nil {
		return nil, err
	}
	pools, err := c.buildPools(&g)
	if err != nil {
		return nil, err
	}
	c.Pools = pools
	return c, c.Validate()
}

// yamlMessage turns the decoder's "field x not found in type config.filePool" into
// words about the file, keeping the line number.
func yamlMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return unknownField.ReplaceAllString(msg, "unknown key $1")
}

var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

var yamlLineRef = regexp.MustCompile(`line (\d+): `)

// nameKeys puts the key written on each "line N:" of a decoder message in front
// of it, so a type error says which option was wrong, not only where.
func nameKeys(data []byte, msg string) string {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return msg
	}
	keys := map[int]string{}
	collectKeys(&root, "", keys)
	return yamlLineRef.ReplaceAllStringFunc(msg, func(m string) string {
		line, _ := strconv.Atoi(yamlLineRef.FindStringSubmatch(m)[1])
		if k, ok := keys[line]; ok {
			return m + k + ": "
		}
		return m
	})
}

// integerKeys are the options that take whole numbers; the decoder would
// truncate 2.5 to 2 without a word.
var integerKeys = map[string]bool{
	"pool_size": true, "pool_startup_timeout": true, "pool_queue_timeout": true,
	"pool_max_queue_size": true, "worker_health_check_timeout_ms": true,
	"startup_batch_size": true, "startup_batch_delay_ms": true, "max_workers": true,
	"threads_per_worker": true, "session_ttl": true, "shutdown_grace_ms": true,
	"ping_interval_ms": true, "timeout_ms": true, "max_missed_heartbeats": true,
	"initial_delay_ms": true, "value": true, "worker_max_requests": true,
}

// checkIntegers refuses a fraction where an option takes a whole number.
func checkIntegers(data []byte) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return nil
	}
	keys := map[int]string{}
	collectKeys(&root, "", keys)
	var bad error
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if bad == nil && integerKeys[k.Value] && v.Kind == yaml.ScalarNode && v.Tag == "!!float" {
					bad = fmt.Errorf("%w: line %d: %s: want a whole number, got %s",
						ErrInvalid, v.Line, keys[v.Line], v.Value)
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)
	return bad
}

// collectKeys maps the line of every scalar value to its key path, like
// pools[1].pool_size.
func collectKeys(n *yaml.Node, path string, keys map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			collectKeys(c, path, keys)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if v.Kind == yaml.ScalarNode {
				keys[v.Line] = p
			}
			collectKeys(v, p, keys)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if c.Kind == yaml.ScalarNode {
				keys[c.Line] = p
			}
			collectKeys(c, p, keys)
		}
	}
}

func (c *Config) applyGlobals(g *fileGlobal) error {
	setBool(&c.PoolingEnabled, g.PoolingEnabled)
	setMs(&c.PoolStartupTimeout, g.PoolStartupTimeout)
	setMs(&c.PoolQueueTimeout, g.PoolQueueTimeout)
	setInt(&c.PoolMaxQueueSize, g.PoolMaxQueueSize)
	setMs(&c.WorkerHealthCheckTimeout, g.WorkerHealthCheckTimeout)
	setString(&c.LogLevel, g.LogLevel)
	return nil
}

// buildPools turns either form into pools. Legacy: top-level adapter_module and
// pool_size with an optional pool_config map, top-level pool_size winning.
func (c *Config) buildPools(g *fileGlobal) ([]Pool, error) {
	base := c.poolDefaults("")
	setString(&base.AdapterModule, g.AdapterModule)
	setString(&base.CapacityStrategy, g.CapacityStrategy)
	setString(&base.Python, g.Python)
	base.Heartbeat = mergeHB(base.Heartbeat, g.Heartbeat)

	if len(g.Pools) == 0 {
		fp := filePool{}
		if g.PoolConfig != nil {
			fp = *g.PoolConfig
		}
		if fp.Name == nil {
			name := DefaultPoolName
			fp.Name = &name
		}
		if g.PoolSize != nil {
			fp.PoolSize = g.PoolSize
		}
		mergeLegacyLifecycle(&fp, g)
		p, err := applyPool(base, &fp, "pool_config")
		return []Pool{p}, err
	}
	if g.PoolConfig != nil {
		return nil, fmt.Errorf("%w: pool_config: use either pools or the legacy pool_config, not both", ErrInvalid)
	}
	if g.PoolSize != nil {
		base.PoolSize = *g.PoolSize
	}
	pools := make([]Pool, 0, len(g.Pools))
	for i := range g.Pools {
		p, err := applyPool(base, &g.Pools[i], fmt.Sprintf("pools[%d]", i))
		if err != nil {
			return nil, err
		}
		pools = append(pools, p)
	}
	return pools, nil
}

func mergeLegacyLifecycle(fp *filePool, g *fileGlobal) {
	if fp.AdapterArgs == nil {
		fp.AdapterArgs = g.AdapterArgs
	}
	if fp.AdapterEnv == nil {
		fp.AdapterEnv = g.AdapterEnv
	}
	if fp.WorkerTTL == nil {
		fp.WorkerTTL = g.WorkerTTL
	}
	if fp.WorkerMaxRequests == nil {
		fp.WorkerMaxRequests = g.WorkerMaxRequests
	}
}

func applyPool(p Pool, fp *filePool, where string) (Pool, error) {
	if fp.Name == nil {
		return p, fmt.Errorf("%w: %s.name: required", ErrInvalid, where)
	}
	p = fillPool(p, fp)
	if err := p.validate(where); err != nil {
		return p, err
	}
	return p, nil
}

// fillPool sets on p every key fp gives; it checks nothing.
func fillPool(p Pool, fp *filePool) Pool {
	setString(&p.Name, fp.Name)
	setString(&p.WorkerProfile, fp.WorkerProfile)
	setString(&p.WorkerStart, fp.WorkerStart)
	setBool(&p.WorkerPipelining, fp.WorkerPipelining)
	setInt(&p.PoolSize, fp.PoolSize)
	setString(&p.AdapterModule, fp.AdapterModule)
	if fp.AdapterArgs != nil {
		p.AdapterArgs = append([]string(nil), fp.AdapterArgs...)
	}
	if fp.AdapterEnv != nil {
		p.AdapterEnv = map[string]string(*fp.AdapterEnv)
	}
	setString(&p.Python, fp.Python)
	setString(&p.CapacityStrategy, fp.CapacityStrategy)
	setInt(&p.StartupBatchSize, fp.StartupBatchSize)
	setMs(&p.StartupBatchDelay, fp.StartupBatchDelayMs)
	setInt(&p.ThreadsPerWorker, fp.ThreadsPerWorker)
	setBool(&p.ThreadSafetyChecks, fp.ThreadSafetyChecks)
	if fp.WorkerTTL != nil {
		p.WorkerTTL = time.Duration(*fp.WorkerTTL)
	}
	if fp.WorkerMaxRequests != nil {
		p.WorkerMaxRequests = int(*fp.WorkerMaxRequests)
	}
	p.Heartbeat = mergeHB(p.Heartbeat, fp.Heartbeat)
	setString(&p.Affinity, fp.Affinity)
	if fp.SessionTTL != nil {
		p.SessionTTL = time.Duration(*fp.SessionTTL) * time.Second
	}
	setMs(&p.ShutdownGrace, fp.ShutdownGraceMs)
	return p
}

func mergeHB(h Heartbeat, f *fileHB) Heartbeat {
	if f == nil {
		return h
	}
	setBool(&h.Enabled, f.Enabled)
	setMs(&h.PingInterval, f.PingIntervalMs)
	setMs(&h.Timeout, f.TimeoutMs)
	setInt(&h.MaxMissed, f.MaxMissedHeartbeats)
	setMs(&h.InitialDelay, f.InitialDelayMs)
	setBool(&h.Dependent, f.Dependent)
	return h
}

func setBool(dst *bool, v *bool) {
	if v != nil {
		*dst = *v
	}
}

func setInt(dst *int, v *int) {
	if v != nil {
		*dst = *v
	}
}

func setString(dst *string, v *string) {
	if v != nil {
		*dst = *v
	}
}

func setMs(dst *time.Duration, v *int) {
	if v != nil {
		*dst = time.Duration(*v) * time.Millisecond
	}
}
