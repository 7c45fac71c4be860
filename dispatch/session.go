package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/schemas"
	"github.com/snakepit-go/snakepit/sessions"
)

// sessionCall is the routing of one session request on this agent.
type sessionCall struct {
	route *schemas.SessionRoute
	ttl   time.Duration
}

// routeSession decides where a session request runs: forwarded to the agent that
// holds its lease (forwarded is true), or here with req.Session filled in.
func (s *Server) routeSession(p Pool, m *nats.Msg, req *schemas.Request,
	stream bool) (*sessionCall, bool, error) {
	// The config's fields are copied out: the Bind closure must not take the
	// whole config to the heap on every session call.
	cfg := p.Config()
	ttl, mode := cfg.SessionTTL, m.Header.Get(HeaderAffinity)
	if mode == "" {
		mode = cfg.Affinity
	}
	mgr, me := s.opts.Sessions, s.opts.AgentID
	lease, rev, held := mgr.Lookup(p.Name(), req.SessionID)
	// A lease of this agent id from an earlier run of it names workers that
	// are gone, however their ids and incarnations look now.
	own := held && lease.AgentId == me && lease.AgentRun == s.runID

	if held && lease.AgentId != me && s.alive(lease.AgentId) {
		if req.Hops >= maxHops {
			return nil, false, schemas.NewError(schemas.CategoryPool, schemas.ReasonSessionLost,
				"session %q: the agents disagree on who holds it; retry", req.SessionID)
		}
		return nil, true, s.forward(m, p.Name(), lease.AgentId, req, stream)
	}

	route := &schemas.SessionRoute{Mode: mode}
	switch {
	case !held:
		route.NeedBind = true
	case own:
		route.WorkerID, route.Incarnation = lease.WorkerId, lease.Incarnation
	case mode != config.AffinityHint:
		return nil, false, schemas.NewError(schemas.CategoryPool, schemas.ReasonSessionUnavailable,
			"agent %s of session %q is gone or restarted; its state is lost", lease.AgentId, req.SessionID)
	default:
		// The lease's agent (or run of it) is gone, and its workers with it:
		// take over afresh.
		route.NeedBind, route.Reset = true, true
	}
	if own {
		route.Epoch = lease.CreatedUnixMs
	}
	route.Bind = func(workerID string, incarnation uint32) (int64, error) {
		// A new lease, or a reset one: either way the session starts afresh.
		l := &schemas.Lease{Pool: p.Name(), SessionId: req.SessionID, AgentId: me,
			AgentRun: s.runID, WorkerId: workerID, Incarnation: incarnation}
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		defer cancel()
		var err error
		if held {
			_, err = mgr.Replace(ctx, l, rev, ttl)
		} else {
			_, err = mgr.Claim(ctx, l, ttl)
		}
		if errors.Is(err, sessions.ErrHeld) || errors.Is(err, sessions.ErrConflict) {
			return 0, fmt.Errorf("%w: %w", schemas.ErrElsewhere, err)
		}
		return l.CreatedUnixMs, err
	}
	req.Session = route
	return &sessionCall{route: route, ttl: ttl}, false, nil
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
		if errors.Is(err, errNotThere) && attempt == 0 {
			// The holder died since the registry last heard of it: route again,
			// now taking it as gone.
			continue
		}
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
