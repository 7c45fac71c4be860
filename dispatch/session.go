package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/schemas"
	"github.com/snakepit-go/snakepit/sessions"
)

// HeaderForwarded counts the hops of a session request forwarded between agents.
const HeaderForwarded = "Snakepit-Forwarded"

// maxHops bounds forwarding while two agents' copies of a lease disagree.
const maxHops = 2

// sessionCall is the routing of one session request on this agent.
type sessionCall struct {
	route *schemas.SessionRoute
	ttl   time.Duration
}

// routeSession decides where a session request runs: forwarded to the agent that
// holds its lease (forwarded is true), or here with req.Session filled in.
func (s *Server) routeSession(p Pool, m *nats.Msg, req *schemas.Request, stream bool) (*sessionCall, bool, error) {
	cfg := p.Config()
	mode := m.Header.Get(HeaderAffinity)
	if mode == "" {
		mode = cfg.Affinity
	}
	if mode != config.AffinityHint && mode != config.AffinityStrictQueue && mode != config.AffinityStrictFailFast {
		return nil, false, schemas.NewError(schemas.CategoryValidation, schemas.ReasonInvalidRequest,
			"%s: want hint, strict_queue or strict_fail_fast, got %q", HeaderAffinity, mode)
	}
	hops, _ := strconv.Atoi(m.Header.Get(HeaderForwarded))
	mgr, me := s.opts.Sessions, s.opts.AgentID
	lease, rev, held := mgr.Lookup(p.Name(), req.SessionID)
	if held && lease.AgentId != me && hops < maxHops && s.alive(lease.AgentId) {
		return nil, true, s.forward(m, p.Name(), lease.AgentId, req.Command, stream, hops)
	}

	route := &schemas.SessionRoute{Mode: mode}
	switch {
	case !held:
		route.NeedBind = true
	case lease.AgentId == me:
		route.WorkerID, route.Incarnation = lease.WorkerId, lease.Incarnation
	case mode != config.AffinityHint:
		return nil, false, schemas.NewError(schemas.CategoryPool, schemas.ReasonSessionUnavailable,
			"agent %s of session %q is gone; its state is lost", lease.AgentId, req.SessionID)
	default:
		// The lease's agent is gone, and its workers with it: take over afresh.
		route.NeedBind, route.Reset = true, true
	}
	if held && lease.AgentId == me {
		route.Epoch = lease.CreatedUnixMs
	}
	route.Bind = func(workerID string, incarnation uint32) (int64, error) {
		// A new lease, or a reset one: either way the session starts afresh.
		l := &schemas.Lease{Pool: p.Name(), SessionId: req.SessionID, AgentId: me,
			WorkerId: workerID, Incarnation: incarnation}
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		defer cancel()
		var err error
		if held {
			_, err = mgr.Replace(ctx, l, rev, cfg.SessionTTL)
		} else {
			_, err = mgr.Claim(ctx, l, cfg.SessionTTL)
		}
		if errors.Is(err, sessions.ErrHeld) || errors.Is(err, sessions.ErrConflict) {
			return 0, fmt.Errorf("%w: %w", schemas.ErrElsewhere, err)
		}
		return l.CreatedUnixMs, err
	}
	req.Session = route
	return &sessionCall{route: route, ttl: cfg.SessionTTL}, false, nil
}

// forward sends a request on to the agent holding its session, with the caller's
// reply subject, so the answer goes straight back to the caller.
func (s *Server) forward(m *nats.Msg, pool, agentID, command string, stream bool, hops int) error {
	subj := s.subj.DirectExec(pool, agentID, command)
	if stream {
		subj = s.subj.DirectStream(pool, agentID, command)
	}
	out := nats.NewMsg(subj)
	out.Reply = m.Reply
	for k, v := range m.Header {
		out.Header[k] = v
	}
	out.Header.Set(HeaderForwarded, strconv.Itoa(hops+1))
	out.Data = m.Data
	if err := s.nc.PublishMsg(out); err != nil {
		return fmt.Errorf("forward session request to agent %s: %w", agentID, err)
	}
	return nil
}

func (s *Server) alive(agentID string) bool {
	return s.opts.Registry == nil || s.opts.Registry.Alive(agentID)
}

// done records a finished session call: the lease is renewed in the background.
func (sc *sessionCall) done(s *Server, pool, sessionID string) {
	s.opts.Sessions.Touch(pool, sessionID, sc.ttl)
}

// runSession runs a session request here, re-routing it once if the lease turned
// out to be held elsewhere (another agent, or a concurrent request here, won it).
func (s *Server) runSession(p Pool, m *nats.Msg, req *schemas.Request, stream bool,
	run func() error) (*sessionCall, bool, error) {
	for attempt := 0; ; attempt++ {
		sc, forwarded, err := s.routeSession(p, m, req, stream)
		if forwarded || err != nil {
			return sc, forwarded, err
		}
		err = run()
		if errors.Is(err, schemas.ErrElsewhere) && attempt == 0 {
			continue
		}
		if errors.Is(err, schemas.ErrElsewhere) {
			err = schemas.NewError(schemas.CategoryPool, schemas.ReasonSessionLost,
				"session %q changed hands while routing; retry", req.SessionID)
		}
		if err == nil {
			sc.done(s, p.Name(), req.SessionID)
		}
		return sc, false, err
	}
}
