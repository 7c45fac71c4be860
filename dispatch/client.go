package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/schemas"
)

// Error is the error every call returns for a failed request; match it with
// errors.As, or errors.Is against a template such as
// &Error{Category: "pool", Reason: "pool_saturated"}.
type Error = schemas.Error

// DefaultTimeout is how long Execute waits when neither ctx nor an option says.
const DefaultTimeout = 60 * time.Second

// Client calls pools over NATS.
type Client struct {
	nc   *nats.Conn
	subj Subjects
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithPrefix sets the subject prefix. Default "snakepit".
func WithPrefix(p string) ClientOption { return func(c *Client) { c.subj.Prefix = p } }

// NewClient returns a client over an open connection.
func NewClient(nc *nats.Conn, opts ...ClientOption) *Client {
	c := &Client{nc: nc, subj: Subjects{DefaultPrefix}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// CallOption sets one option of a call.
type CallOption func(*callOptions)

type callOptions struct {
	timeout     time.Duration
	requestID   string
	session     string
	affinity    string
	traceparent string
	window      int
	idle        time.Duration
	queue       time.Duration
}

// WithTimeout bounds the call; the agent drops work whose deadline has passed.
// Default 60 s, or the ctx deadline if sooner.
func WithTimeout(d time.Duration) CallOption { return func(o *callOptions) { o.timeout = d } }

// WithRequestID sets the request id echoed in the reply and in every log line.
func WithRequestID(id string) CallOption { return func(o *callOptions) { o.requestID = id } }

// WithSession runs the call in a session.
func WithSession(id string) CallOption { return func(o *callOptions) { o.session = id } }

// WithAffinity overrides the pool's affinity mode for this call.
func WithAffinity(mode string) CallOption { return func(o *callOptions) { o.affinity = mode } }

// WithQueueTimeout bounds how long the request may wait in an agent's queue for
// a worker (sent as Snakepit-Queue-Timeout); the pool's pool_queue_timeout
// applies when it is longer. Default: the pool's.
func WithQueueTimeout(d time.Duration) CallOption { return func(o *callOptions) { o.queue = d } }

// WithTraceparent passes W3C trace context to the worker.
func WithTraceparent(tp string) CallOption { return func(o *callOptions) { o.traceparent = tp } }

// Reply is a successful answer.
type Reply struct {
	// Data is the JSON result, or raw bytes when Raw is set.
	Data         []byte
	Raw          bool
	Worker       string
	RequestID    string
	SessionReset bool
	Header       nats.Header
}

// Decode unmarshals a JSON result into v, keeping integers exact when v is an
// interface (they become json.Number).
func (r *Reply) Decode(v any) error {
	if r.Raw {
		return fmt.Errorf("decode reply %s: %w", r.RequestID, ErrRawResult)
	}
	d := json.NewDecoder(bytes.NewReader(r.Data))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("decode reply %s: %w", r.RequestID, err)
	}
	return nil
}

// Execute runs command on pool and returns its decoded result: JSON values as
// any (numbers as json.Number) or []byte for a raw result. args may be nil, a
// value to encode as JSON, json.RawMessage, or []byte to send raw bytes.
func (c *Client) Execute(ctx context.Context, pool, command string, args any,
	opts ...CallOption) (any, error) {
	r, err := c.Call(ctx, pool, command, args, opts...)
	if err != nil {
		return nil, err
	}
	if r.Raw {
		return r.Data, nil
	}
	var v any
	if err := r.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// Call runs command on pool and returns the reply undecoded.
func (c *Client) Call(ctx context.Context, pool, command string, args any,
	opts ...CallOption) (*Reply, error) {
	var o callOptions
	for _, f := range opts {
		f(&o)
	}
	if !config.ValidToken(pool) || !config.ValidToken(command) {
		return nil, schemas.NewError(schemas.CategoryValidation, schemas.ReasonInvalidRequest,
			"pool %q and command %q must be letters, digits, '_' or '-'", pool, command)
	}
	msg, err := c.requestMsg(c.subj.Exec(pool, command), args, &o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := callContext(ctx, o.timeout)
	defer cancel()
	if dl, ok := ctx.Deadline(); ok {
		msg.Header.Set(HeaderTimeout, strconv.FormatInt(max(time.Until(dl).Milliseconds(), 1), 10))
	}
	resp, err := c.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		return nil, transportError(pool, command, err)
	}
	return replyOf(resp)
}

func callContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout > 0 {
		return context.WithTimeout(ctx, timeout)
	}
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

func (c *Client) requestMsg(subject string, args any, o *callOptions) (*nats.Msg, error) {
	msg := nats.NewMsg(subject)
	switch a := args.(type) {
	case nil:
		msg.Data = []byte("{}")
	case []byte:
		msg.Data = a
		msg.Header.Set(HeaderContentType, ContentTypeOctetStream)
	case json.RawMessage:
		msg.Data = a
	default:
		b, err := json.Marshal(a)
		if err != nil {
			return nil, schemas.NewError(schemas.CategoryValidation, schemas.ReasonBadArguments,
				"encode arguments: %v", err)
		}
		if string(b) == "null" {
			// A nil map or pointer means no arguments.
			b = []byte("{}")
		}
		msg.Data = b
	}
	set := func(k, v string) {
		if v != "" {
			msg.Header.Set(k, v)
		}
	}
	set(HeaderRequestID, o.requestID)
	set(HeaderSession, o.session)
	set(HeaderAffinity, o.affinity)
	set(HeaderTraceparent, o.traceparent)
	if o.queue > 0 {
		msg.Header.Set(HeaderQueueTimeout, strconv.FormatInt(max(o.queue.Milliseconds(), 1), 10))
	}
	return msg, nil
}

// replyOf turns a reply message into a Reply or the *Error it carries.
func replyOf(m *nats.Msg) (*Reply, error) {
	if cat := m.Header.Get(HeaderError); cat != "" {
		e := &Error{}
		if err := json.Unmarshal(m.Data, e); err != nil || e.Category == "" {
			e = &Error{Category: cat, Reason: "unknown", Message: m.Header.Get(HeaderServiceError)}
		}
		return nil, e
	}
	return &Reply{
		Data:         m.Data,
		Raw:          m.Header.Get(HeaderContentType) == ContentTypeOctetStream,
		Worker:       m.Header.Get(HeaderWorker),
		RequestID:    m.Header.Get(HeaderRequestID),
		SessionReset: m.Header.Get(HeaderSessionReset) == "true",
		Header:       m.Header,
	}, nil
}

// transportError maps NATS errors of a request to the public categories.
func transportError(pool, command string, err error) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return schemas.NewError(schemas.CategoryPool, schemas.ReasonPoolNotFound,
			"no agent serves pool %q (command %q)", pool, command)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return schemas.NewError(schemas.CategoryTimeout, schemas.ReasonRequestTimeout,
			"no reply from pool %q for %q before the deadline", pool, command)
	case errors.Is(err, nats.ErrPermissionViolation):
		return schemas.NewError(schemas.CategoryValidation, schemas.ReasonPermissionDenied,
			"the server does not let this client call pool %q command %q: %v", pool, command, err)
	case errors.Is(err, nats.ErrMaxPayload):
		return schemas.NewError(schemas.CategoryValidation, schemas.ReasonPayloadTooLarge,
			"request for %q exceeds the server's max payload", command)
	}
	return fmt.Errorf("request %s.%s: %w", pool, command, err)
}

// Reports gathers one report from every live agent: stats, or stats and workers.
// It waits for as many answers as the registry lists agents, so it returns as
// soon as all have answered; without a registry it waits for a quiet moment.
func (c *Client) Reports(ctx context.Context, withWorkers bool) ([]*schemas.AgentReport, error) {
	verb := "stats"
	if withWorkers {
		verb = "workers"
	}
	ctx, cancel := callContext(ctx, 0)
	defer cancel()
	// How many agents to wait for, from the registry; a client that may not
	// read it (permissions) falls back to waiting for a quiet moment.
	want := 0
	actx, acancel := context.WithTimeout(ctx, time.Second)
	if agents, err := c.Agents(actx); err == nil {
		want = len(agents)
	}
	acancel()
	inbox := c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("gather %s: %w", verb, err)
	}
	defer sub.Unsubscribe()
	if err := c.nc.PublishRequest(c.subj.Control(verb), inbox, nil); err != nil {
		return nil, fmt.Errorf("gather %s: %w", verb, err)
	}
	return collectReports(ctx, sub, verb, want)
}

// collectReports reads answers until want have come (want > 0), or else until
// none came for gatherWindow after the first; at most gatherMax in all.
func collectReports(ctx context.Context, sub *nats.Subscription, verb string,
	want int) ([]*schemas.AgentReport, error) {
	var out []*schemas.AgentReport
	ctx, cancel := context.WithTimeout(ctx, gatherMax)
	defer cancel()
	for want <= 0 || len(out) < want {
		wait := gatherMax
		if want <= 0 && len(out) > 0 {
			wait = gatherWindow
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		m, err := sub.NextMsgWithContext(wctx)
		cancel()
		if err != nil {
			break
		}
		r := &schemas.AgentReport{}
		if err := protojson.Unmarshal(m.Data, r); err != nil {
			return out, fmt.Errorf("gather %s: decode answer: %w", verb, err)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, schemas.NewError(schemas.CategoryPool, schemas.ReasonPoolNotFound,
			"no agent answered the %s query", verb)
	}
	return out, nil
}

// ExecuteInSession runs command in session: calls with the same session id go to
// the same worker, which keeps the session's state.
func (c *Client) ExecuteInSession(ctx context.Context, pool, session, command string, args any,
	opts ...CallOption) (any, error) {
	return c.Execute(ctx, pool, command, args, append(opts, WithSession(session))...)
}
