// Package jetstream is the one place that uses nats.go's JetStream API: it
// provisions the product's KV buckets idempotently and hands out KV handles whose
// errors are this package's sentinels. It holds no lease or fleet rules.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Bucket names of the product.
const (
	SessionsBucket = "snakepit-sessions"
	AgentsBucket   = "snakepit-agents"
)

// BucketConfig is what the product needs of a bucket.
type BucketConfig struct {
	Name        string
	Description string
	// MarkerTTL keeps delete markers of expired keys, so watchers see expiry.
	MarkerTTL time.Duration
	Replicas  int
}

// SessionsConfig is the sessions bucket: per-key TTLs with expiry markers, kept
// on replicas servers (1 for a single server, 3 in a cluster).
func SessionsConfig(replicas int) BucketConfig {
	return BucketConfig{Name: SessionsBucket, Description: "Snakepit session leases",
		MarkerTTL: time.Minute, Replicas: replicas}
}

// AgentsConfig is the agent registry bucket.
func AgentsConfig(replicas int) BucketConfig {
	return BucketConfig{Name: AgentsBucket, Description: "Snakepit live agents",
		MarkerTTL: time.Minute, Replicas: replicas}
}

// Entry is one key's value at a revision; Deleted is set for a delete, a purge
// or an expiry, with Reason "expired" for a TTL expiry.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
	Created  time.Time
	Deleted  bool
	Reason   string
}

// KV is a handle on one bucket.
type KV struct {
	js     natsjs.JetStream
	kv     natsjs.KeyValue
	bucket string
}

// opTimeout bounds a KV call whose ctx has no deadline.
const opTimeout = 5 * time.Second

func withDefault(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, opTimeout)
}

// Open provisions the bucket if it does not exist and opens it. An existing
// bucket whose settings differ is reported with ErrBucketMismatch, not changed.
func Open(ctx context.Context, nc *nats.Conn, cfg BucketConfig) (*KV, error) {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	js, err := natsjs.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", cfg.Name, err)
	}
	want := natsjs.KeyValueConfig{
		Bucket: cfg.Name, Description: cfg.Description, History: 1,
		LimitMarkerTTL: cfg.MarkerTTL, Replicas: max(cfg.Replicas, 1),
		Storage: natsjs.FileStorage,
	}
	kv, err := js.CreateKeyValue(ctx, want)
	if errors.Is(err, natsjs.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, cfg.Name)
		if err == nil {
			err = checkBucket(ctx, kv, want)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", cfg.Name, translate(err))
	}
	return &KV{js: js, kv: kv, bucket: cfg.Name}, nil
}

// Lookup opens an existing bucket without creating it; ErrNotFound if absent.
func Lookup(ctx context.Context, nc *nats.Conn, name string) (*KV, error) {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	js, err := natsjs.New(nc)
	if err != nil {
		return nil, fmt.Errorf("look up bucket %s: %w", name, err)
	}
	kv, err := js.KeyValue(ctx, name)
	if errors.Is(err, natsjs.ErrBucketNotFound) {
		return nil, fmt.Errorf("look up bucket %s: %w: %w", name, ErrNotFound, err)
	}
	if err != nil {
		return nil, fmt.Errorf("look up bucket %s: %w", name, err)
	}
	return &KV{js: js, kv: kv, bucket: name}, nil
}

func checkBucket(ctx context.Context, kv natsjs.KeyValue, want natsjs.KeyValueConfig) error {
	st, err := kv.Status(ctx)
	if err != nil {
		return err
	}
	if st.LimitMarkerTTL() != want.LimitMarkerTTL || st.History() != int64(want.History) {
		return fmt.Errorf("%w: has history %d and marker ttl %v, want %d and %v",
			ErrBucketMismatch, st.History(), st.LimitMarkerTTL(), want.History, want.LimitMarkerTTL)
	}
	return nil
}

// Bucket returns the bucket's name.
func (k *KV) Bucket() string { return k.bucket }

// Create writes key only if it does not exist, with a per-key TTL.
func (k *KV) Create(ctx context.Context, key string, value []byte,
	ttl time.Duration) (uint64, error) {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	rev, err := k.kv.Create(ctx, key, value, natsjs.KeyTTL(ttl))
	if err != nil {
		return 0, fmt.Errorf("create %s/%s: %w", k.bucket, key, translate(err))
	}
	return rev, nil
}

// Update writes key only if its latest revision is rev, and sets a fresh TTL.
// kv.Update would drop the key's TTL, so this publishes to the key's subject with
// an expected last sequence and a message TTL instead.
func (k *KV) Update(ctx context.Context, key string, value []byte, rev uint64,
	ttl time.Duration) (uint64, error) {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	m := &nats.Msg{Subject: "$KV." + k.bucket + "." + key, Data: value, Header: nats.Header{}}
	opts := []natsjs.PublishOpt{natsjs.WithExpectLastSequencePerSubject(rev)}
	if ttl > 0 {
		opts = append(opts, natsjs.WithMsgTTL(ttl))
	}
	ack, err := k.js.PublishMsg(ctx, m, opts...)
	if isWrongLastSequence(err) {
		// nats.go's ErrKeyExists matches this code too; for an update it means
		// another revision, not an existing key.
		return 0, fmt.Errorf("update %s/%s at revision %d: %w: %w", k.bucket, key, rev, ErrRevisionMismatch, err)
	}
	if err != nil {
		return 0, fmt.Errorf("update %s/%s at revision %d: %w", k.bucket, key, rev, translate(err))
	}
	return ack.Sequence, nil
}

// Get returns key's latest value, or ErrNotFound.
func (k *KV) Get(ctx context.Context, key string) (Entry, error) {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	e, err := k.kv.Get(ctx, key)
	if err != nil {
		return Entry{}, fmt.Errorf("get %s/%s: %w", k.bucket, key, translate(err))
	}
	return entryOf(e), nil
}

// Delete removes key; with rev > 0 only if its latest revision is rev.
func (k *KV) Delete(ctx context.Context, key string, rev uint64) error {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	var opts []natsjs.KVDeleteOpt
	if rev > 0 {
		opts = append(opts, natsjs.LastRevision(rev))
	}
	if err := k.kv.Delete(ctx, key, opts...); err != nil {
		return fmt.Errorf("delete %s/%s: %w", k.bucket, key, translate(err))
	}
	return nil
}

// List returns every live key's latest value.
func (k *KV) List(ctx context.Context) ([]Entry, error) {
	ctx, cancel := withDefault(ctx)
	defer cancel()
	lister, err := k.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", k.bucket, translate(err))
	}
	var out []Entry
	for key := range lister.Keys() {
		e, err := k.kv.Get(ctx, key)
		if err == nil {
			out = append(out, entryOf(e))
		}
	}
	return out, nil
}

// Watch calls fn for every key's current value, then ready once, then for every
// change, until stop is called. fn and ready run on one goroutine.
// The watch outlives ctx, which only bounds starting it.
func (k *KV) Watch(ctx context.Context, fn func(Entry), ready func()) (stop func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("watch %s: %w", k.bucket, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	w, err := k.kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch %s: %w", k.bucket, translate(err))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil {
				ready()
				continue
			}
			fn(entryOf(e))
		}
	}()
	return func() { _ = w.Stop(); cancel(); <-done }, nil
}

func entryOf(e natsjs.KeyValueEntry) Entry {
	out := Entry{Key: e.Key(), Value: e.Value(), Revision: e.Revision(), Created: e.Created()}
	switch e.Operation() {
	case natsjs.KeyValueDelete:
		out.Deleted, out.Reason = true, "dropped"
	case natsjs.KeyValuePurge:
		out.Deleted, out.Reason = true, "expired"
	}
	return out
}

// translate maps nats.go's errors to this package's sentinels.
func translate(err error) error {
	switch {
	case errors.Is(err, natsjs.ErrKeyExists):
		return fmt.Errorf("%w: %w", ErrKeyExists, err)
	case errors.Is(err, natsjs.ErrKeyNotFound), errors.Is(err, natsjs.ErrKeyDeleted):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case isWrongLastSequence(err):
		return fmt.Errorf("%w: %w", ErrRevisionMismatch, err)
	case errors.Is(err, natsjs.ErrLimitMarkerTTLNotSupported):
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return err
}

func isWrongLastSequence(err error) bool {
	var apiErr *natsjs.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequenceConstant)
}
