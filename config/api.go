package config

import (
	"bytes"
	"fmt"
	"regexp"

	"go.yaml.in/yaml/v3"
)

// DefaultPoolingEnabled is pooling_enabled when the file does not set it. The
// reference's default is false because an Elixir application may carry Snakepit
// without wanting pools; here a program that starts an agent or the embedded
// runtime has asked for pools, so an unset value means true.
const DefaultPoolingEnabled = true

// GetPoolConfigs validates c and returns a copy of its pools in file order. A
// nil c is Default().
func GetPoolConfigs(c *Config) ([]Pool, error) {
	if c == nil {
		c = Default()
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("get pool configs: %w", err)
	}
	out := make([]Pool, 0, len(c.Pools))
	for _, p := range c.Pools {
		out = append(out, p.clone())
	}
	return out, nil
}

// GetPoolConfig returns a copy of the named pool of c (nil is Default()), or an
// error wrapping ErrPoolNotFound.
func GetPoolConfig(c *Config, name string) (Pool, error) {
	pools, err := GetPoolConfigs(c)
	if err != nil {
		return Pool{}, err
	}
	for _, p := range pools {
		if p.Name == name {
			return p, nil
		}
	}
	return Pool{}, fmt.Errorf("get pool config %q: %w", name, ErrPoolNotFound)
}

// NormalizePoolConfig reads one pool written as a map with the YAML keys of a
// `pools:` entry ("name", "pool_size", "heartbeat", ...) and fills every key it
// does not give with the default. It checks types and key names, not ranges:
// that is ValidatePoolConfig.
func NormalizePoolConfig(m map[string]any) (Pool, error) {
	fp, err := decodePoolMap(m)
	if err != nil {
		return Pool{}, err
	}
	c := &Config{PoolingEnabled: DefaultPoolingEnabled}
	c.applyGlobalDefaults()
	return fillPool(c.poolDefaults(""), fp), nil
}

// ValidatePoolConfig normalizes one pool map and checks it; errors wrap
// ErrInvalid and name the key.
func ValidatePoolConfig(m map[string]any) (Pool, error) {
	p, err := NormalizePoolConfig(m)
	if err != nil {
		return Pool{}, err
	}
	if _, ok := m["name"]; !ok {
		return Pool{}, fmt.Errorf("%w: pool.name: required", ErrInvalid)
	}
	if err := p.Validate(); err != nil {
		return Pool{}, err
	}
	return p, nil
}

// decodePoolMap turns a map into the file form, refusing unknown keys, so a map
// and a YAML file mean the same thing.
func decodePoolMap(m map[string]any) (*filePool, error) {
	b, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: pool config: %w", ErrInvalid, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	fp := &filePool{}
	if err := dec.Decode(fp); err != nil {
		msg := lineRef.ReplaceAllString(yamlMessage(err), "")
		return nil, fmt.Errorf("%w: pool config: %s", ErrInvalid, msg)
	}
	return fp, nil
}

// lineRef is the decoder's "line 3: ", meaningless for a map.
var lineRef = regexp.MustCompile(`line \d+: `)

// ThreadProfile reports whether the pool uses the thread profile.
func ThreadProfile(p Pool) bool { return p.WorkerProfile == ProfileThread }

// Profile is what a pool's worker_profile means: the reference's profile
// module, as a value.
type Profile struct {
	// Name is ProfileProcess or ProfileThread.
	Name string
	// Concurrency is how many requests one worker runs at once: 1 for the
	// process profile, threads_per_worker for the thread profile.
	Concurrency int
	// Keys are the options that only this profile reads.
	Keys []string
}

// ProfileOf looks up the profile of a pool.
func ProfileOf(p Pool) Profile {
	if ThreadProfile(p) {
		return Profile{
			Name: ProfileThread, Concurrency: p.Concurrency(),
			Keys: []string{"threads_per_worker", "thread_safety_checks"},
		}
	}
	return Profile{
		Name: ProfileProcess, Concurrency: p.Concurrency(),
		Keys: []string{"startup_batch_size", "startup_batch_delay_ms"},
	}
}

// clone copies p so the caller may change its slices and maps.
func (p Pool) clone() Pool {
	if p.AdapterArgs != nil {
		p.AdapterArgs = append([]string(nil), p.AdapterArgs...)
	}
	if p.AdapterEnv != nil {
		env := make(map[string]string, len(p.AdapterEnv))
		for k, v := range p.AdapterEnv {
			env[k] = v
		}
		p.AdapterEnv = env
	}
	return p
}
