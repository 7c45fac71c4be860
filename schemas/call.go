package schemas

import (
	"fmt"
	"time"
)

// Request is one command call as the agent's pool sees it, whatever transport
// brought it.
type Request struct {
	Command     string
	RequestID   string
	SessionID   string
	Traceparent string
	// Deadline is when the caller stops waiting; zero means none.
	Deadline time.Time
	// QueueTimeout, when set and shorter than the pool's, bounds the wait for a
	// worker.
	QueueTimeout time.Duration
	// Args is the JSON object of arguments, or raw bytes when Raw is set.
	Args []byte
	Raw  bool
	// Session routes a session call; nil for a stateless one.
	Session *SessionRoute
	// Movable lets the pool hand the request back while it is queued, so it can
	// run on another agent that has a free worker.
	Movable bool
	// Hops counts how often agents forwarded the request already.
	Hops int
}

// Result is a command's answer.
type Result struct {
	// Body is the JSON result, or raw bytes when Raw is set.
	Body     []byte
	Raw      bool
	WorkerID string
}

// Error categories, the reference's.
const (
	CategoryTimeout    = "timeout"
	CategoryWorker     = "worker"
	CategoryValidation = "validation"
	CategoryPool       = "pool"
)

// Error reasons the product produces.
const (
	ReasonQueueTimeout       = "queue_timeout"
	ReasonDeadlineExceeded   = "deadline_exceeded"
	ReasonPoolSaturated      = "pool_saturated"
	ReasonPoolNotFound       = "pool_not_found"
	ReasonPoolStopping       = "pool_stopping"
	ReasonWorkerCrashed      = "worker_crashed"
	ReasonWorkerHung         = "worker_hung"
	ReasonPythonException    = "python_exception"
	ReasonUnknownCommand     = "unknown_command"
	ReasonBadArguments       = "bad_arguments"
	ReasonPayloadTooLarge    = "payload_too_large"
	ReasonInvalidRequest     = "invalid_request"
	ReasonSessionLost        = "session_lost"
	ReasonWorkerBusy         = "worker_busy"
	ReasonSessionUnavailable = "session_worker_unavailable"
	ReasonCancelled          = "cancelled"
	ReasonRequestTimeout     = "request_timeout"
	ReasonPermissionDenied   = "permission_denied"
)

// Error is the public error body of a failed call: the same shape on the wire
// (JSON), in worker frames and for Go callers, who match it with errors.As.
type Error struct {
	Category string         `json:"category"`
	Reason   string         `json:"reason"`
	Message  string         `json:"message"`
	Details  map[string]any `json:"details,omitempty"`
}

// NewError returns an error of the category and reason with a formatted message.
func NewError(category, reason, format string, args ...any) *Error {
	return &Error{Category: category, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s/%s: %s", e.Category, e.Reason, e.Message)
}

// Is matches another *Error by category and reason, so errors.Is works against a
// template such as &Error{Category: "pool", Reason: "pool_saturated"}. An empty
// field in the template matches anything.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return (t.Category == "" || t.Category == e.Category) &&
		(t.Reason == "" || t.Reason == e.Reason)
}

// WithDetail returns e with one more detail set.
func (e *Error) WithDetail(key string, v any) *Error {
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	e.Details[key] = v
	return e
}

// SessionRoute tells a pool which worker a session call wants, and how firmly.
type SessionRoute struct {
	// WorkerID and Incarnation name the leased worker on this agent; empty when
	// this agent holds no lease for the session.
	WorkerID    string
	Incarnation uint32
	// Epoch names the lease's lifetime (its creation time): the worker keeps a
	// session's state per epoch, so a new lease never sees an old one's state.
	Epoch int64
	// Mode is hint, strict_queue or strict_fail_fast.
	Mode string
	// Bind writes the lease for the worker chosen, before the request runs, when
	// the session has no usable lease here: a new session, a reset, a takeover.
	// An error aborts the request.
	Bind func(workerID string, incarnation uint32) (epoch int64, err error)
	// Reset is set by the pool when hint mode started the session afresh because
	// the leased worker was gone.
	Reset bool
	// NeedBind is set while routing when Bind must run on the chosen worker.
	NeedBind bool
	// Guest is set by the pool when a hint call runs on a worker that does
	// not hold the session: it gets an empty state there, dropped after the
	// call, and the session's state stays on its worker.
	Guest bool
}
