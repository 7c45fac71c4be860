package agent

import (
	"errors"
	"fmt"
)

var (
	// ErrStartTimeout: a worker sent no handshake within pool_startup_timeout.
	ErrStartTimeout = errors.New("agent: worker start timed out")
	// ErrHandshake: a worker's first frame was not an acceptable HELLO.
	ErrHandshake = errors.New("agent: bad worker handshake")
	// ErrPoolStopped: the pool is shutting down and takes no work.
	ErrPoolStopped = errors.New("agent: pool stopped")
	// ErrNotThreadSafe: thread_safety_checks refused an adapter not declared
	// thread safe for the thread profile.
	ErrNotThreadSafe = errors.New("agent: adapter not thread safe")

	// errWorkerGone: the worker exited before the request was sent; try another.
	errWorkerGone = errors.New("agent: worker gone")
	// errRequeued: a pipelined request its worker handed back unstarted, still
	// busy with the one ahead of it; queue it again.
	errRequeued = errors.New("agent: pipelined request handed back")
)

// StartError is a worker that did not come up, with what it wrote last.
type StartError struct {
	Pool, Adapter, Python, Worker string
	// Exit says how the process ended, if it did.
	Exit string
	// Output holds the last lines of its stdout and stderr.
	Output string
	Err    error
}

func (e *StartError) Error() string {
	msg := fmt.Sprintf("pool %s: worker %s with adapter %s (%s) failed to start%s: %v",
		e.Pool, e.Worker, e.Adapter, e.Python, e.Exit, e.Err)
	if e.Output != "" {
		msg += "\nlast output:\n" + e.Output
	}
	if errors.Is(e.Err, ErrNotThreadSafe) {
		return msg
	}
	return msg + "\nlikely causes: the adapter module is not importable (PYTHONPATH, adapter_env)," +
		" the class name is wrong, its constructor raised, or the interpreter is older than 3.9"
}

func (e *StartError) Unwrap() error { return e.Err }
