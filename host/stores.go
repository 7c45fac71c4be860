package host

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/snakepit-go/snakepit/jetstream"
	"github.com/snakepit-go/snakepit/sessions"
)

// leaseStore is the sessions bucket as the sessions package wants it: the same
// calls, with jetstream's errors translated to sessions' at this seam.
type leaseStore struct{ kv *jetstream.KV }

func (s leaseStore) Create(ctx context.Context, key string, value []byte,
	ttl time.Duration) (uint64, error) {
	rev, err := s.kv.Create(ctx, key, value, ttl)
	return rev, storeError(err)
}

func (s leaseStore) Update(ctx context.Context, key string, value []byte, rev uint64,
	ttl time.Duration) (uint64, error) {
	nrev, err := s.kv.Update(ctx, key, value, rev, ttl)
	return nrev, storeError(err)
}

func (s leaseStore) Get(ctx context.Context, key string) (sessions.Entry, error) {
	e, err := s.kv.Get(ctx, key)
	return sessionEntry(e), storeError(err)
}

func (s leaseStore) Delete(ctx context.Context, key string, rev uint64) error {
	return storeError(s.kv.Delete(ctx, key, rev))
}

func (s leaseStore) Watch(ctx context.Context, fn func(sessions.Entry),
	ready func()) (func(), error) {
	stop, err := s.kv.Watch(ctx, func(e jetstream.Entry) { fn(sessionEntry(e)) }, ready)
	return stop, storeError(err)
}

func sessionEntry(e jetstream.Entry) sessions.Entry {
	return sessions.Entry{Key: e.Key, Value: e.Value, Revision: e.Revision, Deleted: e.Deleted, Reason: e.Reason}
}

func storeError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyExists):
		return fmt.Errorf("%w: %w", sessions.ErrStoreExists, err)
	case errors.Is(err, jetstream.ErrRevisionMismatch):
		return fmt.Errorf("%w: %w", sessions.ErrStoreRevision, err)
	case errors.Is(err, jetstream.ErrNotFound):
		return fmt.Errorf("%w: %w", sessions.ErrStoreNotFound, err)
	}
	return err
}
