package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/snakepit-go/snakepit/schemas"
)

// HeaderForwarded counts the hops of a request forwarded between agents.
const HeaderForwarded = "Snakepit-Forwarded"

// maxHops bounds forwarding while two agents' views disagree.
const maxHops = 2

// suspectFor is how long an agent whose direct subject had no responders
// counts as gone: until its registry record has expired for sure.
const suspectFor = 2 * registryTTL

// errNotThere: the agent a request was forwarded to has no subscriber left.
var errNotThere = errors.New("dispatch: agent not there")

// forward sends a request on to another agent's direct subject. A stream goes
// with the caller's reply subject, so its chunks go straight back. A plain request
// is relayed: this agent asks and passes the answer on, so an agent that died
// since it was last seen is noticed at once (no responders), marked a suspect and
// reported with errNotThere, instead of leaving the caller without an answer.
func (s *Server) forward(m *nats.Msg, pool, agentID string, req *schemas.Request,
	stream bool) error {
	subj := s.subj.DirectExec(pool, agentID, req.Command)
	if stream {
		subj = s.subj.DirectStream(pool, agentID, req.Command)
	}
	out := nats.NewMsg(subj)
	for k, v := range m.Header {
		out.Header[k] = v
	}
	out.Header.Set(HeaderForwarded, strconv.Itoa(req.Hops+1))
	if !req.Deadline.IsZero() {
		// The next agent counts from when it reads the request: pass on what is
		// left, not what the caller first gave.
		left := max(time.Until(req.Deadline).Milliseconds(), 1)
		out.Header.Set(HeaderTimeout, strconv.FormatInt(left, 10))
	}
	out.Data = m.Data
	if stream {
		out.Reply = m.Reply
		if err := s.nc.PublishMsg(out); err != nil {
			return fmt.Errorf("forward stream request %s to agent %s: %w", req.RequestID, agentID, err)
		}
		return nil
	}
	return s.relay(m, out, agentID, req)
}

func (s *Server) relay(m, out *nats.Msg, agentID string, req *schemas.Request) error {
	ctx, cancel := context.WithTimeout(s.ctx, DefaultTimeout)
	if !req.Deadline.IsZero() {
		cancel()
		ctx, cancel = context.WithDeadline(s.ctx, req.Deadline)
	}
	defer cancel()
	resp, err := s.nc.RequestMsgWithContext(ctx, out)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		s.suspect(agentID)
		return fmt.Errorf("forward request %s to agent %s: %w", req.RequestID, agentID, errNotThere)
	case err != nil:
		// The caller's deadline passed: it is gone too, and needs no answer.
		return nil
	}
	if m.Reply == "" {
		return nil
	}
	back := nats.NewMsg(m.Reply)
	back.Header, back.Data = resp.Header, resp.Data
	if err := m.RespondMsg(back); err != nil {
		s.log.Warn().Err(err).Str(keyRequestID, req.RequestID).Msg("relayed reply failed")
	}
	return nil
}

// forwardTo forwards a request placed by capacity; it reports false, having
// forgotten the peer, when the peer turned out to be gone, so the request runs
// here instead.
func (s *Server) forwardTo(pc *peerCapacity, m *nats.Msg, pool, agentID string,
	req *schemas.Request, stream bool) bool {
	err := s.forward(m, pool, agentID, req, stream)
	if errors.Is(err, errNotThere) {
		pc.forget(agentID)
		return false
	}
	return err == nil
}

func (s *Server) suspect(agentID string) {
	s.mu.Lock()
	s.suspects[agentID] = time.Now()
	s.mu.Unlock()
}

// alive reports whether an agent is registered and not found gone meanwhile.
func (s *Server) alive(agentID string) bool {
	s.mu.Lock()
	at, suspected := s.suspects[agentID]
	if suspected && time.Since(at) > suspectFor {
		delete(s.suspects, agentID)
		suspected = false
	}
	s.mu.Unlock()
	return !suspected && (s.opts.Registry == nil || s.opts.Registry.Alive(agentID))
}
