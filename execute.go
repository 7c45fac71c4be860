package snakepit

import (
	"context"
	"fmt"
)

// Execute runs command with args on a worker of the pool and returns its
// result: JSON values as any (numbers as json.Number, so they stay exact), or
// []byte for a raw result. args may be nil, any value that encodes as a JSON
// object, json.RawMessage, or []byte to pass raw bytes. A failed call returns
// a *Error.
func (rt *Runtime) Execute(ctx context.Context, command string, args any,
	opts ...CallOption) (any, error) {
	if rt.stopped() {
		return nil, fmt.Errorf("execute %s: %w", command, ErrNotStarted)
	}
	o := rt.callOptions(opts)
	return rt.client.Execute(ctx, o.pool, command, args, o.dispatch()...)
}

// ExecuteInSession is Execute in the session sessionID: calls of one session
// prefer the same worker, whose adapter keeps per-session state.
func (rt *Runtime) ExecuteInSession(ctx context.Context, sessionID, command string, args any,
	opts ...CallOption) (any, error) {
	return rt.Execute(ctx, command, args, append(opts, WithSession(sessionID))...)
}

// Execute is Runtime.Execute on the process-wide runtime.
func Execute(ctx context.Context, command string, args any, opts ...CallOption) (any, error) {
	rt, err := Current()
	if err != nil {
		return nil, fmt.Errorf("execute %s: %w", command, err)
	}
	return rt.Execute(ctx, command, args, opts...)
}

// ExecuteInSession is Runtime.ExecuteInSession on the process-wide runtime.
func ExecuteInSession(ctx context.Context, sessionID, command string, args any,
	opts ...CallOption) (any, error) {
	rt, err := Current()
	if err != nil {
		return nil, fmt.Errorf("execute %s in session %s: %w", command, sessionID, err)
	}
	return rt.ExecuteInSession(ctx, sessionID, command, args, opts...)
}
