package sessions

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/snakepit-go/snakepit/schemas"
)

// memStore is a Store in memory with the bucket's rules: create only if absent,
// update only at the latest revision, and a watch that sees every change.
type memStore struct {
	mu      sync.Mutex
	rev     uint64
	keys    map[string]Entry
	watch   func(Entry)
	updates int
}

func newMemStore() *memStore { return &memStore{keys: map[string]Entry{}} }

func (s *memStore) put(key string, value []byte) Entry {
	s.rev++
	e := Entry{Key: key, Value: value, Revision: s.rev}
	s.keys[key] = e
	return e
}

func (s *memStore) Create(
	_ context.Context, key string, value []byte, _ time.Duration,
) (uint64, error) {
	s.mu.Lock()
	if _, ok := s.keys[key]; ok {
		s.mu.Unlock()
		return 0, fmt.Errorf("create %s: %w", key, ErrStoreExists)
	}
	e := s.put(key, value)
	w := s.watch
	s.mu.Unlock()
	if w != nil {
		w(e)
	}
	return e.Revision, nil
}

func (s *memStore) Update(
	_ context.Context, key string, value []byte, rev uint64, _ time.Duration,
) (uint64, error) {
	s.mu.Lock()
	if cur, ok := s.keys[key]; !ok || cur.Revision != rev {
		s.mu.Unlock()
		return 0, fmt.Errorf("update %s: %w", key, ErrStoreRevision)
	}
	s.updates++
	e := s.put(key, value)
	w := s.watch
	s.mu.Unlock()
	if w != nil {
		w(e)
	}
	return e.Revision, nil
}

func (s *memStore) Get(_ context.Context, key string) (Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.keys[key]
	if !ok {
		return Entry{}, ErrStoreNotFound
	}
	return e, nil
}

func (s *memStore) Delete(_ context.Context, key string, _ uint64) error {
	s.mu.Lock()
	delete(s.keys, key)
	s.rev++
	e := Entry{Key: key, Revision: s.rev, Deleted: true, Reason: EndDropped}
	w := s.watch
	s.mu.Unlock()
	if w != nil {
		w(e)
	}
	return nil
}

func (s *memStore) Watch(_ context.Context, fn func(Entry), ready func()) (func(), error) {
	s.mu.Lock()
	for _, e := range s.keys {
		fn(e)
	}
	s.watch = fn
	s.mu.Unlock()
	ready()
	return func() {}, nil
}

func newManager(
	t *testing.T, st *memStore, agent string, ends chan<- string, now func() time.Time,
) *Manager {
	t.Helper()
	m := New(Options{
		AgentID: agent, Store: st, Now: now,
		OnEnd: func(l *schemas.Lease, reason string) {
			if ends != nil {
				ends <- l.SessionId + " " + l.WorkerId + " " + reason
			}
		},
	})
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

func TestClaimHasOneWinner(t *testing.T) {
	st := newMemStore()
	managers := []*Manager{newManager(t, st, "a", nil, nil), newManager(t, st, "b", nil, nil)}
	var wg sync.WaitGroup
	wins := make(chan string, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := managers[i%2]
			l := &schemas.Lease{Pool: "p", SessionId: "s", AgentId: m.opts.AgentID, WorkerId: fmt.Sprint(i)}
			_, err := m.Claim(t.Context(), l, time.Hour)
			var held *HeldError
			switch {
			case err == nil:
				wins <- l.WorkerId
			case !errors.As(err, &held) || !errors.Is(err, ErrHeld):
				t.Errorf("Claim(%d) error = %v, want a HeldError", i, err)
			}
		}()
	}
	wg.Wait()
	close(wins)
	if n := len(wins); n != 1 {
		t.Fatalf("%d claims won, want exactly 1", n)
	}
	winner := <-wins
	for _, m := range managers {
		if l, _, ok := m.Lookup("p", "s"); !ok || l.WorkerId != winner {
			t.Fatalf("agent %s sees lease %v, want worker %s", m.opts.AgentID, l, winner)
		}
	}
}

func TestReplaceIsCompareAndSwap(t *testing.T) {
	st := newMemStore()
	ends := make(chan string, 4)
	m := newManager(t, st, "a", ends, nil)
	l := &schemas.Lease{Pool: "p", SessionId: "s", AgentId: "a", WorkerId: "w1"}
	rev, err := m.Claim(t.Context(), l, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	moved := &schemas.Lease{Pool: "p", SessionId: "s", AgentId: "a", WorkerId: "w2"}
	if _, err := m.Replace(t.Context(), moved, rev, time.Hour); err != nil {
		t.Fatalf("Replace at the current revision = %v", err)
	}
	if got := <-ends; got != "s w1 moved" {
		t.Fatalf("end notice = %q, want the old worker's session moved", got)
	}
	stale := &schemas.Lease{Pool: "p", SessionId: "s", AgentId: "a", WorkerId: "w3"}
	if _, err := m.Replace(t.Context(), stale, rev, time.Hour); !errors.Is(err, ErrConflict) {
		t.Fatalf("Replace at a stale revision = %v, want ErrConflict", err)
	}
	if err := m.Drop(t.Context(), "p", "s"); err != nil {
		t.Fatal(err)
	}
	if got := <-ends; got != "s w2 dropped" {
		t.Fatalf("end notice = %q, want s w2 dropped", got)
	}
}

func TestTouchRenewsOnlyWhenDue(t *testing.T) {
	st := newMemStore()
	var mu sync.Mutex
	clock := time.Unix(1000, 0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	m := newManager(t, st, "a", nil, now)
	claimed := &schemas.Lease{
		Pool: "p", SessionId: "s", AgentId: "a", AgentRun: "run-1", WorkerId: "w", Incarnation: 3,
	}
	if _, err := m.Claim(t.Context(), claimed, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	m.Touch("p", "s", 30*time.Second)
	m.bg.Wait()
	if st.updates != 0 {
		t.Fatalf("%d renewals right after the claim, want 0", st.updates)
	}
	mu.Lock()
	clock = clock.Add(11 * time.Second)
	mu.Unlock()
	m.Touch("p", "s", 30*time.Second)
	m.bg.Wait()
	if st.updates != 1 {
		t.Fatalf("%d renewals after a third of the TTL, want 1", st.updates)
	}
	l, _, _ := m.Lookup("p", "s")
	if l.RenewedUnixMs != now().UnixMilli() {
		t.Fatalf("renewed at %d, want %d", l.RenewedUnixMs, now().UnixMilli())
	}
	// A renewal changes the times only: every other field stays the holder's.
	if l.AgentRun != "run-1" || l.WorkerId != "w" || l.Incarnation != 3 ||
		l.CreatedUnixMs != claimed.CreatedUnixMs {
		t.Fatalf("renewed lease = %+v, want the claim's run, worker, incarnation and creation", l)
	}
}

func TestKeyRoundTrip(t *testing.T) {
	for _, id := range []string{"a", "user 42@example.com", "a.b/c", "🐍", string(make([]byte, 0))} {
		if id == "" {
			if err := ValidateID(id); !errors.Is(err, ErrInvalidID) {
				t.Errorf("ValidateID(empty) = %v, want ErrInvalidID", err)
			}
			continue
		}
		pool, back, err := ParseKey(Key("pool-1", id))
		if err != nil || pool != "pool-1" || back != id {
			t.Errorf("ParseKey(Key(%q)) = %q, %q, %v", id, pool, back, err)
		}
	}
}
