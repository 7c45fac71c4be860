package jetstream

import "errors"

var (
	// ErrKeyExists: a create found the key already there.
	ErrKeyExists = errors.New("jetstream: key exists")
	// ErrRevisionMismatch: a compare-and-swap found another revision.
	ErrRevisionMismatch = errors.New("jetstream: revision mismatch")
	// ErrNotFound: the key does not exist or was deleted.
	ErrNotFound = errors.New("jetstream: key not found")
	// ErrBucketMismatch: the bucket exists with settings other than ours.
	ErrBucketMismatch = errors.New("jetstream: bucket settings differ")
	// ErrUnsupported: the server is too old for per-key TTLs (needs 2.11+).
	ErrUnsupported = errors.New("jetstream: server lacks per-key TTL support")
)
