package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/snakepit-go/snakepit/jetstream"
	"github.com/snakepit-go/snakepit/schemas"
)

// Agents returns the record of every live agent, from the registry bucket.
func (c *Client) Agents(ctx context.Context) ([]*schemas.AgentRecord, error) {
	kv, err := jetstream.Lookup(ctx, c.nc, jetstream.AgentsBucket)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	entries, err := kv.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	out := make([]*schemas.AgentRecord, 0, len(entries))
	for _, e := range entries {
		r := &schemas.AgentRecord{}
		if protojson.Unmarshal(e.Value, r) == nil {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AgentId < out[j].AgentId })
	return out, nil
}

// Drain asks one agent to stop taking work, finish what it has and exit.
func (c *Client) Drain(ctx context.Context, agentID string) error {
	ctx, cancel := callContext(ctx, 0)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, c.subj.AgentControl(agentID, "drain"), nil)
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("drain agent %s: no such agent is running: %w", agentID, ErrRefused)
	}
	if err != nil {
		return fmt.Errorf("drain agent %s: %w", agentID, transportError("", "drain", err))
	}
	if code := m.Header.Get(HeaderServiceErrorCode); code != "" {
		return fmt.Errorf("drain agent %s: %s %s: %w", agentID, code, m.Header.Get(HeaderServiceError), ErrRefused)
	}
	return nil
}
