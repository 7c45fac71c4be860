package host

import (
	"context"
	"os"

	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/jetstream"
	"github.com/snakepit-go/snakepit/schemas"
	"github.com/snakepit-go/snakepit/sessions"
)

// fleetState is what this agent shares with the fleet through JetStream: the
// session leases and its record in the agent registry.
type fleetState struct {
	sessions *sessions.Manager
	registry *dispatch.Registry
}

// startFleetState provisions both buckets, loads the leases and registers the
// agent.
func (h *Host) startFleetState(ctx context.Context) (*fleetState, error) {
	leases, err := jetstream.Open(ctx, h.nc, jetstream.SessionsConfig(h.opts.KVReplicas))
	if err != nil {
		return nil, err
	}
	agents, err := jetstream.Open(ctx, h.nc, jetstream.AgentsConfig(h.opts.KVReplicas))
	if err != nil {
		return nil, err
	}
	mgr := sessions.New(sessions.Options{
		AgentID: h.agentID, Store: leaseStore{leases}, Log: h.log, OnEnd: h.endSession,
	})
	if err := mgr.Start(ctx); err != nil {
		return nil, err
	}
	reg, err := dispatch.StartRegistry(ctx, agents, h.agentID, h.record, h.log)
	if err != nil {
		mgr.Stop()
		return nil, err
	}
	return &fleetState{sessions: mgr, registry: reg}, nil
}

// endSession delivers a session's end to the worker that held it.
func (h *Host) endSession(l *schemas.Lease, reason string) {
	for _, p := range h.agent.Pools() {
		if p.Name() == l.Pool {
			p.EndSession(l.WorkerId, l.Incarnation, l.SessionId, l.CreatedUnixMs, reason)
		}
	}
}

// record is this agent's entry in the registry.
func (h *Host) record() *schemas.AgentRecord {
	host, _ := os.Hostname()
	version := h.opts.Version
	if version == "" {
		version = dispatch.Version
	}
	r := &schemas.AgentRecord{AgentId: h.agentID, Host: host, Version: version,
		StartedUnixMs: h.started.UnixMilli()}
	for _, p := range h.agent.Pools() {
		st := p.Stats()
		r.Pools = append(r.Pools, p.Name())
		r.Workers += st.Workers
		r.Busy += st.Busy
	}
	return r
}
