package sessions

import (
	"context"
	"time"
)

// Entry is one key of the store at one revision.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
	Deleted  bool
	// Reason of a deletion: "expired" (TTL) or "dropped".
	Reason string
}

// Store is the KV bucket the leases live in. Errors wrap ErrStoreExists,
// ErrStoreRevision and ErrStoreNotFound for those cases.
type Store interface {
	// Create writes key only if absent, with a per-key TTL.
	Create(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error)
	// Update writes key only if its latest revision is rev, with a fresh TTL.
	Update(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration) (uint64, error)
	// Get returns the latest value of key.
	Get(ctx context.Context, key string) (Entry, error)
	// Delete removes key if its latest revision is rev (any revision when 0).
	Delete(ctx context.Context, key string, rev uint64) error
	// Watch delivers every current entry, then calls ready, then every change.
	Watch(ctx context.Context, fn func(Entry), ready func()) (stop func(), err error)
}
