package dispatch

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/micro"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/snakepit-go/snakepit/schemas"
)

// ServiceName is the NATS service name every agent registers, so `nats micro ls`
// lists the agents.
const ServiceName = "snakepit-agent"

// control is the agent's control plane: a NATS micro service whose endpoints
// every agent answers (no queue group), so a client can gather the fleet.
type control struct {
	svc micro.Service
}

var reportJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

func startControl(s *Server) (*control, error) {
	svc, err := micro.AddService(s.nc, micro.Config{
		Name:        ServiceName,
		Version:     s.opts.Version,
		Description: "Snakepit pool agent",
		Metadata:    map[string]string{"agent_id": s.opts.AgentID, "host": s.opts.Host},
		StatsHandler: func(e *micro.Endpoint) any {
			if e.Name != "stats" {
				return nil
			}
			return s.report(false)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("add control service: %w", err)
	}
	endpoints := []struct {
		name    string
		workers bool
	}{{"stats", false}, {"workers", true}}
	for _, ep := range endpoints {
		h := func(r micro.Request) {
			b, err := reportJSON.Marshal(s.report(ep.workers))
			if err != nil {
				_ = r.Error("500", err.Error(), nil)
				return
			}
			_ = r.Respond(b)
		}
		err := svc.AddEndpoint(ep.name, micro.HandlerFunc(h),
			micro.WithEndpointSubject(s.subj.Control(ep.name)),
			micro.WithEndpointQueueGroupDisabled())
		if err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("add control endpoint %s: %w", ep.name, err)
		}
	}
	if err := s.addCleanupEndpoint(svc); err != nil {
		return nil, errors.Join(err, svc.Stop())
	}
	if err := addDrain(s, svc); err != nil {
		_ = svc.Stop()
		return nil, err
	}
	return &control{svc: svc}, nil
}

// addDrain answers snakepit.ctl.agent.<id>.drain: the agent stops taking work,
// finishes what it has, leaves the registry (so its sessions move on their next
// call, as their affinity mode says) and exits.
func addDrain(s *Server, svc micro.Service) error {
	h := func(r micro.Request) {
		if s.opts.OnDrain == nil {
			_ = r.Error("501", "this agent cannot be drained", nil)
			return
		}
		_ = r.Respond([]byte(`{"agent_id":"` + s.opts.AgentID + `","draining":true}`))
		s.opts.OnDrain()
	}
	err := svc.AddEndpoint("drain", micro.HandlerFunc(h),
		micro.WithEndpointSubject(s.subj.AgentControl(s.opts.AgentID, "drain")))
	if err != nil {
		return fmt.Errorf("add control endpoint drain: %w", err)
	}
	return nil
}

func (c *control) stop() { _ = c.svc.Stop() }

// report is this agent's answer to a stats or workers query.
func (s *Server) report(withWorkers bool) *schemas.AgentReport {
	r := &schemas.AgentReport{
		AgentId: s.opts.AgentID, Host: s.opts.Host, Version: s.opts.Version,
		StartedUnixMs: s.started.UnixMilli(),
	}
	for _, p := range s.pools {
		r.Pools = append(r.Pools, p.Stats())
		if withWorkers {
			r.Workers = append(r.Workers, p.Workers()...)
		}
	}
	return r
}

// gatherWindow is how long a fleet query without a registry waits after the last
// answer before it assumes every agent has answered; gatherMax bounds any query.
const (
	gatherWindow = 150 * time.Millisecond
	gatherMax    = 2 * time.Second
)
