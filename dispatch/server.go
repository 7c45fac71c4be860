package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/schemas"
	"github.com/snakepit-go/snakepit/sessions"
)

// Pool is what the NATS side needs of a local pool.
type Pool interface {
	Name() string
	Execute(ctx context.Context, req *schemas.Request) (*schemas.Result, error)
	ExecuteStream(ctx context.Context, req *schemas.Request, sc *schemas.StreamCall) error
	Stats() *schemas.PoolStats
	Workers() []*schemas.WorkerInfo
	Config() config.Pool
	Capacity() *schemas.Capacity
	CapacityChanged() <-chan struct{}
	Reroute(n int) int
}

// ServerOptions configure the agent's NATS side.
type ServerOptions struct {
	// Prefix is the subject prefix. Default "snakepit".
	Prefix  string
	AgentID string
	Host    string
	Version string
	Log     zerolog.Logger
	// Sessions routes session requests; nil serves them without affinity.
	Sessions *sessions.Manager
	// Registry tells which agents are alive; nil takes every agent as alive.
	Registry *Registry
	// OnDrain is called when an operator drains this agent; it should stop the
	// agent gracefully. Nil refuses drains.
	OnDrain func()
}

// Server subscribes an agent's pools to their subjects and replies to requests.
type Server struct {
	nc      *nats.Conn
	opts    ServerOptions
	subj    Subjects
	pools   []Pool
	log     zerolog.Logger
	started time.Time

	// ctx ends when the server must abandon running work.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	subs    []*nats.Subscription
	ackSubs []*nats.Subscription
	streams map[string]*serverStream
	// runID names this run of the agent in the leases it writes.
	runID string
	// suspects are agents whose direct subject had no responders, by the time
	// they were found so; they count as gone until the registry catches up.
	suspects map[string]time.Time
	inflight sync.WaitGroup
	bg       sync.WaitGroup // capacity publishers
	control  *control
}

// NewServer returns a server that has not subscribed yet.
func NewServer(nc *nats.Conn, pools []Pool, opts ServerOptions) *Server {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Version == "" {
		opts.Version = Version
	}
	s := &Server{
		nc: nc, opts: opts, subj: Subjects{opts.Prefix}, pools: pools, runID: nuid.Next(),
		log: opts.Log, started: time.Now(), streams: map[string]*serverStream{},
		suspects: map[string]time.Time{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Start subscribes every pool: its queue group on the shared subjects and a plain
// subscription on this agent's direct subjects; then the control service.
func (s *Server) Start() error {
	for _, p := range s.pools {
		if err := s.subscribePool(p); err != nil {
			s.StopIntake()
			return err
		}
	}
	c, err := startControl(s)
	if err != nil {
		return err
	}
	s.control = c
	return s.nc.Flush()
}

// subscribePool subscribes one pool's exec and stream subjects, shared (queue
// group) and direct, and this agent's ack subject for its streams.
func (s *Server) subscribePool(p Pool) error {
	name, id := p.Name(), s.opts.AgentID
	pc := newPeerCapacity()
	shared, direct := placement{pc: pc}, placement{pc: pc, direct: true}
	subs := []struct {
		subject, queue string
		h              nats.MsgHandler
	}{
		{s.subj.Exec(name, "*"), s.subj.QueueGroup(name), s.handler(p, shared)},
		{s.subj.DirectExec(name, id, "*"), "", s.handler(p, direct)},
		{s.subj.Stream(name, "*"), s.subj.QueueGroup(name), s.streamHandler(p, shared)},
		{s.subj.DirectStream(name, id, "*"), "", s.streamHandler(p, direct)},
		{s.subj.Ack(name, id, "*"), "", s.ackHandler},
		{s.subj.Capacity(name, "*"), "", s.capacityHandler(p, pc)},
	}
	for _, sd := range subs {
		sub, err := s.nc.QueueSubscribe(sd.subject, sd.queue, sd.h)
		if err != nil {
			return fmt.Errorf("subscribe pool %s on %s: %w", name, sd.subject, err)
		}
		// Handlers only decode and hand off; limits protect memory, not pace.
		_ = sub.SetPendingLimits(1<<16, 256<<20)
		s.mu.Lock()
		if sd.subject == s.subj.Ack(name, id, "*") {
			// Acks keep flowing while running streams finish after StopIntake.
			s.ackSubs = append(s.ackSubs, sub)
		} else {
			s.subs = append(s.subs, sub)
		}
		s.mu.Unlock()
	}
	s.bg.Add(1)
	go s.publishCapacity(s.ctx, p, pc)
	return nil
}

// StopIntake unsubscribes the pools so no new request arrives; requests already
// received go on.
func (s *Server) StopIntake() {
	s.announceDraining()
	s.mu.Lock()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		_ = sub.Unsubscribe()
	}
	if s.nc.IsConnected() {
		_ = s.nc.FlushTimeout(time.Second)
	}
}

// Wait blocks until every received request has been answered or ctx ends, then
// stops the control service.
func (s *Server) Wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.cancel()
		<-done
	}
	s.cancel()
	s.bg.Wait()
	s.mu.Lock()
	for _, sub := range s.ackSubs {
		_ = sub.Unsubscribe()
	}
	s.ackSubs = nil
	s.mu.Unlock()
	if s.control != nil {
		s.control.stop()
	}
}

// placement is how requests from one subscription may move between agents:
// pc holds the pool's peers; direct ones were addressed to this agent and are
// never moved to another.
type placement struct {
	pc     *peerCapacity
	direct bool
}

// handler serves requests of pool p arriving as pl says.
func (s *Server) handler(p Pool, pl placement) nats.MsgHandler {
	return func(m *nats.Msg) {
		received := time.Now()
		s.inflight.Add(1)
		go func() {
			defer s.inflight.Done()
			s.serve(p, m, received, pl)
		}()
	}
}

func (s *Server) serve(p Pool, m *nats.Msg, received time.Time, pl placement) {
	req, err := decodeRequest(m, received)
	if err != nil {
		s.replyError(m, req, asError(err))
		return
	}
	// No context with the deadline: the pool bounds a call's wait by
	// req.Deadline itself, and a context's timer per call was a visible cost.
	ctx := s.ctx
	var res *schemas.Result
	run := func() (err error) { res, err = p.Execute(ctx, req); return err }
	if req.SessionID == "" || s.opts.Sessions == nil {
		if s.placed(p, pl, m, req, false, run, &err) {
			return
		}
	} else {
		var forwarded bool
		if _, forwarded, err = s.runSession(p, m, req, false, run); forwarded && err == nil {
			return
		}
	}
	if err != nil {
		s.replyError(m, req, asError(err))
		return
	}
	s.replyResult(m, req, res)
}

// decodeRequest turns a NATS message into a pool request; a bad request yields the
// request (for its id) and a validation error.
func decodeRequest(m *nats.Msg, received time.Time) (*schemas.Request, error) {
	req := &schemas.Request{Command: lastToken(m.Subject), Args: m.Data}
	h := m.Header
	req.RequestID = h.Get(HeaderRequestID)
	if req.RequestID == "" {
		req.RequestID = nuid.Next()
	}
	req.Traceparent = h.Get(HeaderTraceparent)
	if err := decodeSession(req, h); err != nil {
		return req, err
	}
	if err := decodeRouting(req, h); err != nil {
		return req, err
	}
	if v := h.Get(HeaderTimeout); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms <= 0 || ms > maxTimeoutMs {
			return req, schemas.NewError(schemas.CategoryValidation, schemas.ReasonInvalidRequest,
				"%s: want 1 to %d milliseconds, got %q", HeaderTimeout, maxTimeoutMs, v)
		}
		req.Deadline = received.Add(time.Duration(ms) * time.Millisecond)
	}
	if v := h.Get(HeaderQueueTimeout); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms <= 0 || ms > maxTimeoutMs {
			return req, schemas.NewError(schemas.CategoryValidation, schemas.ReasonInvalidRequest,
				"%s: want 1 to %d milliseconds, got %q", HeaderQueueTimeout, maxTimeoutMs, v)
		}
		req.QueueTimeout = time.Duration(ms) * time.Millisecond
	}
	if h.Get(HeaderContentType) == ContentTypeOctetStream {
		req.Raw = true
		return req, nil
	}
	return req, checkJSONArgs(req)
}

func decodeSession(req *schemas.Request, h nats.Header) error {
	vals, ok := h[HeaderSession]
	if !ok {
		return nil
	}
	if err := sessions.ValidateID(vals[0]); err != nil {
		return schemas.NewError(schemas.CategoryValidation, schemas.ReasonInvalidRequest,
			"%s: want 1 to %d bytes of UTF-8, got %d bytes", HeaderSession, sessions.MaxSessionID, len(vals[0]))
	}
	req.SessionID = vals[0]
	return nil
}

// maxTimeoutMs is the longest timeout a request may ask for: a day.
const maxTimeoutMs = 24 * 3600 * 1000

// decodeRouting checks the affinity mode and the forwarding hop count.
func decodeRouting(req *schemas.Request, h nats.Header) error {
	switch mode := h.Get(HeaderAffinity); mode {
	case "", config.AffinityHint, config.AffinityStrictQueue, config.AffinityStrictFailFast:
	default:
		return schemas.NewError(schemas.CategoryValidation, schemas.ReasonInvalidRequest,
			"%s: want hint, strict_queue or strict_fail_fast, got %q", HeaderAffinity, mode)
	}
	if v := h.Get(HeaderForwarded); v != "" {
		hops, err := strconv.Atoi(v)
		if err != nil || hops < 1 || hops > maxHops {
			return schemas.NewError(schemas.CategoryValidation, schemas.ReasonInvalidRequest,
				"%s: want 1 to %d, got %q", HeaderForwarded, maxHops, v)
		}
		req.Hops = hops
	}
	return nil
}

// checkJSONArgs accepts an empty body as {} and otherwise only a JSON object.
func checkJSONArgs(req *schemas.Request) error {
	body := bytes.TrimSpace(req.Args)
	if len(body) == 0 {
		req.Args = []byte("{}")
		return nil
	}
	if !utf8.Valid(body) {
		return schemas.NewError(schemas.CategoryValidation, schemas.ReasonBadArguments,
			"arguments are not valid UTF-8; send Content-Type: %s for raw bytes", ContentTypeOctetStream)
	}
	if body[0] != '{' || !json.Valid(body) {
		return schemas.NewError(schemas.CategoryValidation, schemas.ReasonBadArguments,
			"arguments must be a JSON object, got %q", truncate(body, 64))
	}
	req.Args = body
	return nil
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}

// asError turns any error from a pool into the public error body.
func asError(err error) *schemas.Error {
	var e *schemas.Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return schemas.NewError(schemas.CategoryTimeout, schemas.ReasonDeadlineExceeded, "%v", err)
	}
	return schemas.NewError(schemas.CategoryWorker, "internal", "%v", err)
}

func (s *Server) replyResult(m *nats.Msg, req *schemas.Request, res *schemas.Result) {
	if m.Reply == "" {
		return
	}
	out := nats.NewMsg(m.Reply)
	out.Header.Set(HeaderRequestID, req.RequestID)
	out.Header.Set(HeaderWorker, res.WorkerID)
	if req.Session != nil && req.Session.Reset {
		out.Header.Set(HeaderSessionReset, "true")
	}
	if res.Raw {
		out.Header.Set(HeaderContentType, ContentTypeOctetStream)
	}
	out.Data = res.Body
	if err := m.RespondMsg(out); err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			s.replyError(m, req, schemas.NewError(schemas.CategoryValidation, schemas.ReasonPayloadTooLarge,
				"result of %d bytes exceeds the server's max payload of %d", len(res.Body), s.nc.MaxPayload()))
			return
		}
		s.log.Warn().Err(err).Str(keyRequestID, req.RequestID).Str(keySubject, m.Reply).Msg("reply failed")
	}
}

func (s *Server) replyError(m *nats.Msg, req *schemas.Request, e *schemas.Error) {
	s.log.Debug().Str(keyRequestID, req.RequestID).Str(keyCommand, req.Command).
		Str("category", e.Category).Str(keyReason, e.Reason).Msg("request failed")
	if m.Reply == "" {
		return
	}
	out := errorMsg(m.Reply, req.RequestID, e)
	if err := m.RespondMsg(out); err != nil {
		s.log.Warn().Err(err).Str(keyRequestID, req.RequestID).Str(keySubject, m.Reply).Msg("error reply failed")
	}
}

// errorMsg renders an error reply: headers and the JSON body.
func errorMsg(subject, requestID string, e *schemas.Error) *nats.Msg {
	out := nats.NewMsg(subject)
	out.Header.Set(HeaderRequestID, requestID)
	if w, ok := e.Details["worker_id"].(string); ok {
		out.Header.Set(HeaderWorker, w)
	}
	out.Header.Set(HeaderError, e.Category)
	out.Header.Set(HeaderServiceError, headerSafe(e.Message))
	out.Header.Set(HeaderServiceErrorCode, errorCode(e))
	out.Header.Set(HeaderContentType, ContentTypeJSON)
	body, err := json.Marshal(e)
	if err != nil {
		body = []byte(`{"category":"worker","reason":"internal","message":"unencodable error"}`)
	}
	out.Data = body
	return out
}

// headerSafe makes a message fit in one header value: no line breaks, bounded.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 512 {
		s = s[:512]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// placed runs a stateless request here, or forwards it to a peer with a free
// worker, before or while it waits in the queue. It reports true when the
// request was forwarded; otherwise *errp is the outcome of run.
func (s *Server) placed(p Pool, pl placement, m *nats.Msg, req *schemas.Request, stream bool,
	run func() error, errp *error) bool {
	pc := pl.pc
	movable := !pl.direct && req.Hops < maxHops
	if movable && s.placeElsewhere(p, pc, m, req, stream) {
		return true
	}
	req.Movable = movable
	err := run()
	if errors.Is(err, schemas.ErrElsewhere) {
		if s.placeRerouted(p, pc, m, req, stream) {
			return true
		}
		req.Movable = false
		err = run()
	}
	*errp = err
	return false
}
