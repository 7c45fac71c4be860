package dispatch

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/snakepit-go/snakepit/schemas"
)

// Capacity-aware routing across agents. NATS hands a queue-group message to a
// random member, whatever its load. So each agent publishes its pool's capacity
// (idle workers, queue room) when it changes, every agent keeps the others'
// latest figures, and a request that reaches an agent with no idle worker is
// forwarded to one that has, as is a request already queued here when another
// agent reports an idle worker. Figures travel in well under a millisecond on a
// local network; inside that window two agents may send work to the same idle
// worker, and the second request waits in that agent's queue.

// capacityRefresh is how often an agent republishes unchanged figures; peers
// forget figures older than capacityStale.
const (
	capacityRefresh = time.Second
	capacityStale   = 3 * capacityRefresh
)

// peerCapacity is the latest figures of the other agents of one pool.
type peerCapacity struct {
	mu    sync.Mutex
	peers map[string]*peer
	// reserved are idle peer workers set aside by rebalance for the requests
	// it handed back, one entry per request.
	reserved chan string
}

type peer struct {
	free, room int
	seen       time.Time
}

func newPeerCapacity() *peerCapacity {
	return &peerCapacity{peers: map[string]*peer{}, reserved: make(chan string, 1024)}
}

// reserve sets aside up to n idle peer workers, most idle peers first.
func (pc *peerCapacity) reserve(n int, now time.Time) []string {
	var out []string
	for len(out) < n {
		t := pc.pick(false, now)
		if t == "" {
			break
		}
		out = append(out, t)
	}
	return out
}

// unreserve gives reserved workers back to the estimates.
func (pc *peerCapacity) unreserve(targets []string) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for _, t := range targets {
		if p, ok := pc.peers[t]; ok {
			p.free++
		}
	}
}

// update stores a peer's figures; it reports whether the peer has a free worker.
func (pc *peerCapacity) update(c *schemas.Capacity, now time.Time) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if c.Draining {
		delete(pc.peers, c.AgentId)
		return false
	}
	pc.peers[c.AgentId] = &peer{free: int(c.Free), room: int(c.Room), seen: now}
	return c.Free > 0
}

// pick returns a peer with a free worker (or, with wantRoom, queue room),
// preferring the most, and counts one of them as taken until its next figures.
func (pc *peerCapacity) pick(wantRoom bool, now time.Time) string {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	best, bestN, ties := "", 0, 0
	for id, p := range pc.peers {
		if now.Sub(p.seen) > capacityStale {
			delete(pc.peers, id)
			continue
		}
		n := p.free
		if wantRoom {
			n = p.room
		}
		switch {
		case n > bestN:
			best, bestN, ties = id, n, 1
		case n == bestN && n > 0:
			ties++
			if rand.IntN(ties) == 0 {
				best = id
			}
		}
	}
	if best != "" {
		if wantRoom {
			pc.peers[best].room--
		} else {
			pc.peers[best].free--
		}
	}
	return best
}

// empty reports whether no peer is known: one agent alone routes nothing.
func (pc *peerCapacity) empty() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return len(pc.peers) == 0
}

// forget drops a peer that turned out to be gone.
func (pc *peerCapacity) forget(agentID string) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	delete(pc.peers, agentID)
}

// capacityHandler receives the other agents' figures for pool p; when one has
// idle workers and requests wait here, they are handed back to be forwarded.
func (s *Server) capacityHandler(p Pool, pc *peerCapacity) nats.MsgHandler {
	return func(m *nats.Msg) {
		c := &schemas.Capacity{}
		if protojson.Unmarshal(m.Data, c) != nil || c.AgentId == s.opts.AgentID {
			return
		}
		if pc.update(c, time.Now()) {
			s.rebalance(p, pc)
		}
	}
}

// rebalance moves queued requests to peers that have idle workers.
//
// Each idle peer worker is reserved before a request is handed back for it, so
// one idle worker moves one request: without the reservation every change of
// the queue would hand back requests for the same idle worker again, and those
// that found no target would go back to the end of the queue.
func (s *Server) rebalance(p Pool, pc *peerCapacity) {
	queued := int(p.Capacity().Queued)
	if queued == 0 {
		return
	}
	targets := pc.reserve(queued, time.Now())
	if len(targets) == 0 {
		return
	}
	moved := p.Reroute(len(targets))
	pc.unreserve(targets[moved:])
	for _, t := range targets[:moved] {
		select {
		case pc.reserved <- t:
		default:
			pc.unreserve([]string{t})
		}
	}
}

// publishCapacity republishes this agent's figures for p whenever they change
// and every capacityRefresh, until ctx ends.
func (s *Server) publishCapacity(ctx context.Context, p Pool, pc *peerCapacity) {
	defer s.bg.Done()
	t := time.NewTicker(capacityRefresh)
	defer t.Stop()
	var last *schemas.Capacity
	for {
		// Alone, changes matter to nobody: only the refresh goes out, so peers
		// can find this agent, and the request path wakes no goroutine here.
		var changed <-chan struct{}
		if !pc.empty() {
			changed = p.CapacityChanged()
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
			last = nil
		}
		c := p.Capacity()
		if last != nil && sameCounts(last, c) {
			continue
		}
		last = c
		s.sendCapacity(p.Name(), c)
		if c.Queued > 0 {
			s.rebalance(p, pc)
		}
	}
}

// sameCounts reports whether peers would see the same figures in a and b.
func sameCounts(a, b *schemas.Capacity) bool {
	return a.Free == b.Free && a.Room == b.Room && a.Queued == b.Queued && a.Draining == b.Draining
}

func (s *Server) sendCapacity(pool string, c *schemas.Capacity) {
	c.UnixMs = time.Now().UnixMilli()
	b, err := protojson.Marshal(c)
	if err == nil {
		_ = s.nc.Publish(s.subj.Capacity(pool, s.opts.AgentID), b)
	}
}

// announceDraining tells the peers this agent takes no more work.
func (s *Server) announceDraining() {
	for _, p := range s.pools {
		c := proto.Clone(p.Capacity()).(*schemas.Capacity)
		c.Draining, c.Free, c.Room = true, 0, 0
		s.sendCapacity(p.Name(), c)
	}
}

// placeElsewhere forwards a request to a peer with a free worker when this agent
// has none (or, with its queue full, to one with room). It reports whether it did.
func (s *Server) placeElsewhere(p Pool, pc *peerCapacity, m *nats.Msg, req *schemas.Request,
	stream bool) bool {
	if pc.empty() {
		return false
	}
	local := p.Capacity()
	if local.Free > 0 {
		return false
	}
	now := time.Now()
	target := pc.pick(false, now)
	if target == "" && local.Room == 0 {
		target = pc.pick(true, now)
	}
	return target != "" && s.forwardTo(pc, m, p.Name(), target, req, stream)
}

// placeRerouted sends a request the pool handed back to a peer with a free
// worker; it reports false when none is left, and the request runs here.
func (s *Server) placeRerouted(p Pool, pc *peerCapacity, m *nats.Msg, req *schemas.Request,
	stream bool) bool {
	var target string
	select {
	case target = <-pc.reserved:
	default:
		target = pc.pick(false, time.Now())
	}
	return target != "" && s.forwardTo(pc, m, p.Name(), target, req, stream)
}
