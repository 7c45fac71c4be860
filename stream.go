package snakepit

import (
	"context"
	"fmt"
	"time"

	"github.com/snakepit-go/snakepit/dispatch"
)

// DefaultStreamTimeout bounds ExecuteStream and ExecuteInSessionStream (the
// reference's 300000 ms).
const DefaultStreamTimeout = 300 * time.Second

// DefaultCheckoutTimeout bounds how long a stream waits for a worker (the
// reference's :checkout_timeout, 5000 ms).
const DefaultCheckoutTimeout = 5 * time.Second

// Chunk is one streamed value; Decode it, or read Data (raw when Raw is set).
type Chunk = dispatch.Chunk

// ErrHalt, returned by a stream callback, stops the stream early without error
// (the reference's :halt).
var ErrHalt = dispatch.ErrHalt

// WithCheckoutTimeout bounds how long the call waits in the queue for a
// worker. Default DefaultCheckoutTimeout for streams, pool_queue_timeout
// otherwise.
func WithCheckoutTimeout(d time.Duration) CallOption {
	return func(o *callOptions) { o.checkout = d }
}

// ExecuteStream runs a streaming command and calls fn with each chunk, in
// order. It returns nil after the last chunk (or when fn returned ErrHalt), and
// otherwise the error that ended the stream: fn's own, or a *Error.
func (rt *Runtime) ExecuteStream(ctx context.Context, command string, args any,
	fn func(*Chunk) error, opts ...CallOption) error {
	if rt.stopped() {
		return fmt.Errorf("execute stream %s: %w", command, ErrNotStarted)
	}
	o := rt.callOptions(append([]CallOption{
		WithTimeout(DefaultStreamTimeout), WithCheckoutTimeout(DefaultCheckoutTimeout),
	}, opts...))
	return rt.client.ExecuteStream(ctx, o.pool, command, args, fn, o.dispatch()...)
}

// ExecuteInSessionStream is ExecuteStream in the session sessionID.
func (rt *Runtime) ExecuteInSessionStream(ctx context.Context, sessionID, command string, args any,
	fn func(*Chunk) error, opts ...CallOption) error {
	return rt.ExecuteStream(ctx, command, args, fn, append(opts, WithSession(sessionID))...)
}

// ExecuteStream is Runtime.ExecuteStream on the process-wide runtime.
func ExecuteStream(ctx context.Context, command string, args any, fn func(*Chunk) error,
	opts ...CallOption) error {
	rt, err := Current()
	if err != nil {
		return fmt.Errorf("execute stream %s: %w", command, err)
	}
	return rt.ExecuteStream(ctx, command, args, fn, opts...)
}

// ExecuteInSessionStream is Runtime.ExecuteInSessionStream on the process-wide
// runtime.
func ExecuteInSessionStream(ctx context.Context, sessionID, command string, args any,
	fn func(*Chunk) error, opts ...CallOption) error {
	rt, err := Current()
	if err != nil {
		return fmt.Errorf("execute stream %s in session %s: %w", command, sessionID, err)
	}
	return rt.ExecuteInSessionStream(ctx, sessionID, command, args, fn, opts...)
}
