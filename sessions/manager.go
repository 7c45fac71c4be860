// Package sessions holds the lease rules of session affinity: a lease ties a
// session to one worker of one agent; exactly one agent wins a new lease (a
// create); every later change is a compare-and-swap by revision; a lease lives
// for its TTL, renewed on use. Agents route from a local copy of the leases kept
// current by a watch, so the hot path makes no KV round trip. It knows nothing of
// NATS or processes: the store and the liveness of agents are given to it.
package sessions

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/snakepit-go/snakepit/schemas"
)

// Reasons a session ends, as the adapter's end hook sees them.
const (
	EndExpired = "expired"
	EndDropped = "dropped"
	EndMoved   = "moved"
)

// Options configure a Manager.
type Options struct {
	AgentID string
	Store   Store
	// OnEnd is called, on the watch goroutine, when a lease this agent held is
	// deleted, expires, or is moved to another worker.
	OnEnd func(l *schemas.Lease, reason string)
	Log   zerolog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Manager keeps the local copy of the leases and changes them in the store.
type Manager struct {
	opts Options
	log  zerolog.Logger
	stop func()
	bg   sync.WaitGroup // renewals in flight

	mu       sync.Mutex
	leases   map[string]*held
	renewing map[string]bool
	// loading is the copy a Rewatch fills until its watch is ready.
	loading map[string]*held
}

// held is a lease at the revision it was read.
type held struct {
	lease *schemas.Lease
	rev   uint64
}

// HeldError is returned when another agent holds the lease; it carries the lease
// so the request can be forwarded to its owner.
type HeldError struct {
	Lease *schemas.Lease
	Rev   uint64
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("session %q of pool %s: lease held by agent %s", e.Lease.SessionId, e.Lease.Pool, e.Lease.AgentId)
}

func (e *HeldError) Unwrap() error { return ErrHeld }

var leaseJSON = protojson.MarshalOptions{UseProtoNames: true}

// New returns a manager; Start fills its copy of the leases.
func New(opts Options) *Manager {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OnEnd == nil {
		opts.OnEnd = func(*schemas.Lease, string) {}
	}
	return &Manager{
		opts: opts, log: opts.Log,
		leases: map[string]*held{}, renewing: map[string]bool{},
	}
}

// Start loads every lease and follows changes until Stop.
func (m *Manager) Start(ctx context.Context) error {
	ready := make(chan struct{})
	var once sync.Once
	stop, err := m.opts.Store.Watch(ctx, m.apply, func() {
		once.Do(func() {
			m.mu.Lock()
			if m.loading != nil {
				m.leases, m.loading = m.loading, nil
			}
			m.mu.Unlock()
			close(ready)
		})
	})
	if err != nil {
		return fmt.Errorf("watch leases: %w", err)
	}
	select {
	case <-ready:
	case <-ctx.Done():
		stop()
		return fmt.Errorf("watch leases: %w", context.Cause(ctx))
	}
	m.stop = stop
	return nil
}

// Rewatch starts the watch over with an empty copy: after a reconnect the old
// watch may be dead, and a server that lost its store has new revisions that
// the old copy would take for stale ones.
//
// Routing goes on from the old copy until the new watch has loaded every
// lease; then the fresh copy replaces it whole.
func (m *Manager) Rewatch(ctx context.Context) error {
	if m.stop != nil {
		m.stop()
	}
	fresh := map[string]*held{}
	m.mu.Lock()
	m.loading = fresh
	m.mu.Unlock()
	return m.Start(ctx)
}

// Stop ends the watch and waits for renewals in flight.
func (m *Manager) Stop() {
	if m.stop != nil {
		m.stop()
	}
	m.bg.Wait()
}

// apply folds one watched entry into the local copy.
func (m *Manager) apply(e Entry) {
	if e.Deleted {
		m.put(e.Key, nil, e.Revision, e.Reason)
		return
	}
	lease := &schemas.Lease{}
	if err := protojson.Unmarshal(e.Value, lease); err != nil {
		m.log.Warn().Err(err).Str("key", e.Key).Msg("unreadable lease ignored")
		return
	}
	m.put(e.Key, lease, e.Revision, "")
}

// put stores a lease (nil: deleted) unless the copy already has a newer
// revision, and tells the adapter when a session this agent held ended or moved.
// The watch and this agent's own writes both come through here, whichever first.
func (m *Manager) put(key string, lease *schemas.Lease, rev uint64, reason string) {
	m.mu.Lock()
	if m.loading != nil {
		// Reloading after a reconnect: fill the fresh copy quietly.
		if lease == nil {
			delete(m.loading, key)
		} else {
			m.loading[key] = &held{lease: lease, rev: rev}
		}
		m.mu.Unlock()
		return
	}
	old := m.leases[key]
	if old != nil && old.rev >= rev {
		m.mu.Unlock()
		return
	}
	if lease == nil {
		delete(m.leases, key)
	} else {
		m.leases[key] = &held{lease: lease, rev: rev}
	}
	m.mu.Unlock()

	if old == nil || old.lease.AgentId != m.opts.AgentID {
		return
	}
	switch {
	case lease == nil:
		m.opts.OnEnd(old.lease, reason)
	case lease.AgentId != old.lease.AgentId || lease.WorkerId != old.lease.WorkerId ||
		lease.Incarnation != old.lease.Incarnation:
		m.opts.OnEnd(old.lease, EndMoved)
	}
}

// Lookup returns the local copy of a session's lease.
func (m *Manager) Lookup(pool, id string) (*schemas.Lease, uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.leases[Key(pool, id)]
	if !ok {
		return nil, 0, false
	}
	return h.lease, h.rev, true
}

// List returns the local copy of every lease of pool ("" for all pools).
func (m *Manager) List(pool string) []*schemas.Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*schemas.Lease
	for _, h := range m.leases {
		if pool == "" || h.lease.Pool == pool {
			out = append(out, h.lease)
		}
	}
	return out
}

// Claim creates a new lease; only one contender can win. A loser gets a
// *HeldError naming the winner.
func (m *Manager) Claim(ctx context.Context, l *schemas.Lease, ttl time.Duration) (uint64, error) {
	key := Key(l.Pool, l.SessionId)
	now := m.opts.Now().UnixMilli()
	l.CreatedUnixMs, l.RenewedUnixMs, l.TtlSeconds = now, now, ttlSeconds(ttl)
	rev, err := m.opts.Store.Create(ctx, key, m.encode(l), ttl)
	if err == nil {
		m.remember(key, l, rev)
		return rev, nil
	}
	if !errors.Is(err, ErrStoreExists) {
		return 0, fmt.Errorf("claim lease %s: %w", key, err)
	}
	cur, rev, gerr := m.read(ctx, key)
	if gerr != nil {
		return 0, fmt.Errorf("claim lease %s: %w", key, ErrConflict)
	}
	// Route by the winner's lease from now on, ahead of the watch.
	m.remember(key, cur, rev)
	return 0, &HeldError{Lease: cur, Rev: rev}
}

// Replace moves a lease read at rev to l (another worker, or this agent taking
// over from a dead one). It fails with ErrConflict if the lease changed.
func (m *Manager) Replace(ctx context.Context, l *schemas.Lease, rev uint64,
	ttl time.Duration) (uint64, error) {
	key := Key(l.Pool, l.SessionId)
	now := m.opts.Now().UnixMilli()
	l.RenewedUnixMs, l.TtlSeconds = now, ttlSeconds(ttl)
	if l.CreatedUnixMs == 0 {
		l.CreatedUnixMs = now
	}
	nrev, err := m.opts.Store.Update(ctx, key, m.encode(l), rev, ttl)
	if errors.Is(err, ErrStoreRevision) || errors.Is(err, ErrStoreNotFound) {
		return 0, fmt.Errorf("replace lease %s at revision %d: %w", key, rev, ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("replace lease %s: %w", key, err)
	}
	m.remember(key, l, nrev)
	return nrev, nil
}

// Touch renews a lease this agent holds when a third of its TTL has passed. The
// renewal runs in the background: a request never waits for it.
func (m *Manager) Touch(pool, id string, ttl time.Duration) {
	key := Key(pool, id)
	now := m.opts.Now()
	m.mu.Lock()
	h, ok := m.leases[key]
	due := ok && h.lease.AgentId == m.opts.AgentID && !m.renewing[key] &&
		now.Sub(time.UnixMilli(h.lease.RenewedUnixMs)) >= ttl/3
	if due {
		m.renewing[key] = true
	}
	m.mu.Unlock()
	if !due {
		return
	}
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		m.renew(key, h, ttl)
	}()
}

func (m *Manager) renew(key string, h *held, ttl time.Duration) {
	defer func() {
		m.mu.Lock()
		delete(m.renewing, key)
		m.mu.Unlock()
	}()
	l := cloneLease(h.lease)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := m.Replace(ctx, l, h.rev, ttl); err != nil {
		m.log.Debug().Err(err).Str("key", key).Msg("lease renewal skipped")
	}
}

// Drop deletes a session's lease; the owner's adapter sees the session end.
func (m *Manager) Drop(ctx context.Context, pool, id string) error {
	key := Key(pool, id)
	if err := m.opts.Store.Delete(ctx, key, 0); err != nil {
		return fmt.Errorf("drop lease %s: %w", key, err)
	}
	return nil
}

func (m *Manager) read(ctx context.Context, key string) (*schemas.Lease, uint64, error) {
	e, err := m.opts.Store.Get(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	l := &schemas.Lease{}
	if err := protojson.Unmarshal(e.Value, l); err != nil {
		return nil, 0, fmt.Errorf("decode lease %s: %w", key, err)
	}
	return l, e.Revision, nil
}

// remember updates the local copy at once, ahead of the watch.
func (m *Manager) remember(key string, l *schemas.Lease, rev uint64) {
	m.put(key, l, rev, "")
}

func (m *Manager) encode(l *schemas.Lease) []byte {
	b, _ := leaseJSON.Marshal(l)
	return b
}

func cloneLease(l *schemas.Lease) *schemas.Lease {
	return proto.Clone(l).(*schemas.Lease)
}

func ttlSeconds(ttl time.Duration) uint32 {
	return uint32(max(ttl/time.Second, 1))
}
