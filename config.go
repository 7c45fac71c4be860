package snakepit

import "github.com/snakepit-go/snakepit/config"

// The reference's configuration functions, over the YAML that pool-agent
// reads; the work is done in the config package.

// GetPoolConfigs validates cfg and returns a copy of its pools; nil is
// config.Default(). Use Runtime.Config for a running runtime's.
func GetPoolConfigs(cfg *config.Config) ([]config.Pool, error) { return config.GetPoolConfigs(cfg) }

// GetPoolConfig returns the named pool of cfg (nil is config.Default()), or an
// error wrapping config.ErrPoolNotFound.
func GetPoolConfig(cfg *config.Config, name string) (config.Pool, error) {
	return config.GetPoolConfig(cfg, name)
}

// ValidatePoolConfig reads one pool written as a map with the YAML keys of a
// `pools:` entry, fills the defaults and checks it; errors name the key.
func ValidatePoolConfig(m map[string]any) (config.Pool, error) {
	return config.ValidatePoolConfig(m)
}

// NormalizePoolConfig reads one pool map and fills the defaults, checking
// types and key names but not ranges.
func NormalizePoolConfig(m map[string]any) (config.Pool, error) {
	return config.NormalizePoolConfig(m)
}

// ThreadProfile reports whether the pool uses the thread profile.
func ThreadProfile(p config.Pool) bool { return config.ThreadProfile(p) }

// ProfileOf looks up a pool's worker profile (the reference's
// get_profile_module).
func ProfileOf(p config.Pool) config.Profile { return config.ProfileOf(p) }

// HeartbeatDefaults returns the reference's default heartbeat map.
func HeartbeatDefaults() config.Heartbeat { return config.HeartbeatDefaults() }
