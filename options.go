package snakepit

import (
	"time"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/dispatch"
)

// Defaults of the reference's options.
const (
	// DefaultTimeout bounds Execute and ExecuteInSession (the reference's
	// 60000 ms); a sooner ctx deadline wins.
	DefaultTimeout = 60 * time.Second
	// DefaultAwaitTimeout bounds AwaitReady and RunAsScript's wait for the
	// pools (15000 ms).
	DefaultAwaitTimeout = 15 * time.Second
	// DefaultShutdownTimeout bounds RunAsScript's stop of the runtime (15000 ms).
	DefaultShutdownTimeout = 15 * time.Second
	// DefaultCleanupTimeout bounds Cleanup (5000 ms).
	DefaultCleanupTimeout = 5 * time.Second
)

// CallOption sets one option of a call.
type CallOption func(*callOptions)

type callOptions struct {
	pool      string
	timeout   time.Duration
	session   string
	requestID string
	affinity  string
	checkout  time.Duration
}

// WithPool names the pool (the reference's :pool_name). Default: the pool
// named default, or the first configured pool when none has that name.
func WithPool(name string) CallOption { return func(o *callOptions) { o.pool = name } }

// WithTimeout bounds the call. Default DefaultTimeout.
func WithTimeout(d time.Duration) CallOption { return func(o *callOptions) { o.timeout = d } }

// WithSession runs the call in a session (the reference's :session_id).
func WithSession(id string) CallOption { return func(o *callOptions) { o.session = id } }

// WithRequestID sets the id echoed in the reply and in the agent's logs.
func WithRequestID(id string) CallOption { return func(o *callOptions) { o.requestID = id } }

// WithAffinity overrides the pool's affinity mode for this call: hint,
// strict_queue or strict_fail_fast.
func WithAffinity(mode string) CallOption { return func(o *callOptions) { o.affinity = mode } }

// callOptions applies opts over the runtime's defaults.
func (rt *Runtime) callOptions(opts []CallOption) callOptions {
	o := callOptions{pool: rt.defaultPool(), timeout: DefaultTimeout}
	for _, f := range opts {
		f(&o)
	}
	return o
}

func (o *callOptions) dispatch() []dispatch.CallOption {
	out := []dispatch.CallOption{dispatch.WithTimeout(o.timeout)}
	if o.session != "" {
		out = append(out, dispatch.WithSession(o.session))
	}
	if o.requestID != "" {
		out = append(out, dispatch.WithRequestID(o.requestID))
	}
	if o.affinity != "" {
		out = append(out, dispatch.WithAffinity(o.affinity))
	}
	if o.checkout > 0 {
		out = append(out, dispatch.WithQueueTimeout(o.checkout))
	}
	return out
}

// defaultPool is the pool a call without WithPool goes to.
func (rt *Runtime) defaultPool() string {
	if _, ok := rt.cfg.Pool(config.DefaultPoolName); ok || len(rt.cfg.Pools) == 0 {
		return config.DefaultPoolName
	}
	return rt.cfg.Pools[0].Name
}
