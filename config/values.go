package config

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ttlValue is worker_ttl: "infinity" or {value: N, unit: seconds|minutes|hours}.
// Zero means infinity.
type ttlValue time.Duration

func (t *ttlValue) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && strings.TrimPrefix(n.Value, ":") == "infinity" {
		*t = 0
		return nil
	}
	var v struct {
		Value int    `yaml:"value"`
		Unit  string `yaml:"unit"`
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: worker_ttl: want infinity or {value, unit}, got %q", n.Line, n.Value)
	}
	if err := n.Decode(&v); err != nil {
		return fmt.Errorf("line %d: worker_ttl: %w", n.Line, err)
	}
	unit, ok := ttlUnits[strings.TrimPrefix(v.Unit, ":")]
	if !ok {
		return fmt.Errorf("line %d: worker_ttl.unit: want seconds, minutes or hours, got %q", n.Line, v.Unit)
	}
	if v.Value <= 0 {
		return fmt.Errorf("line %d: worker_ttl.value: must be a positive integer, got %d", n.Line, v.Value)
	}
	*t = ttlValue(time.Duration(v.Value) * unit)
	return nil
}

var ttlUnits = map[string]time.Duration{
	"seconds": time.Second, "minutes": time.Minute, "hours": time.Hour,
}

// maxRequests is worker_max_requests: "infinity" or a positive integer. Zero means
// infinity.
type maxRequests int

func (m *maxRequests) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && strings.TrimPrefix(n.Value, ":") == "infinity" {
		*m = 0
		return nil
	}
	var v int
	if err := n.Decode(&v); err != nil || v <= 0 {
		return fmt.Errorf("line %d: worker_max_requests: want infinity or a positive integer, got %q", n.Line, n.Value)
	}
	*m = maxRequests(v)
	return nil
}

// envList is adapter_env: a map, or a list of "KEY=VALUE" strings or [KEY, VALUE]
// pairs (the reference's list of tuples).
type envList map[string]string

func (e *envList) UnmarshalYAML(n *yaml.Node) error {
	out := envList{}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]string{}
		if err := n.Decode(&m); err != nil {
			return fmt.Errorf("line %d: adapter_env: %w", n.Line, err)
		}
		for k, v := range m {
			out[k] = v
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			k, v, err := envItem(item)
			if err != nil {
				return err
			}
			out[k] = v
		}
	default:
		return fmt.Errorf("line %d: adapter_env: want a map or a list, got %q", n.Line, n.Value)
	}
	*e = out
	return nil
}

func envItem(n *yaml.Node) (string, string, error) {
	if n.Kind == yaml.ScalarNode {
		k, v, ok := strings.Cut(n.Value, "=")
		if ok && k != "" {
			return k, v, nil
		}
	}
	var pair []string
	if n.Kind == yaml.SequenceNode && n.Decode(&pair) == nil && len(pair) == 2 && pair[0] != "" {
		return pair[0], pair[1], nil
	}
	return "", "", fmt.Errorf("line %d: adapter_env: want KEY=VALUE or [KEY, VALUE], got %q", n.Line, n.Value)
}
