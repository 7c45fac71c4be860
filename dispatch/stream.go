package dispatch

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/snakepit-go/snakepit/schemas"
)

// Stream headers and values of the public contract.
const (
	// HeaderWindow on a stream request: chunks the reader lets be unacknowledged.
	// Default 32; 0 turns flow control off for readers that cannot acknowledge.
	HeaderWindow = "Snakepit-Window"
	// HeaderKeepalive on a stream request: milliseconds of silence after which the
	// agent sends a keepalive message. Default 0: none.
	HeaderKeepalive = "Snakepit-Keepalive"
	// HeaderIdleTimeout on a stream request: milliseconds without an ack, while
	// chunks are unacknowledged, after which the reader is taken as gone.
	HeaderIdleTimeout = "Snakepit-Idle-Timeout"
	// HeaderPart on a chunk split to fit the server's max payload: "i/n".
	HeaderPart = "Snakepit-Part"

	StreamEnd       = "end"
	StreamKeepalive = "keepalive"
	StreamCancel    = "cancel"

	DefaultWindow      = 32
	MaxWindow          = 1024
	DefaultStreamIdle  = 30 * time.Second
	chunkHeaderReserve = 1024
)

var (
	errReaderCancelled = errors.New("dispatch: reader cancelled the stream")
	errReaderGone      = errors.New("dispatch: reader stopped acknowledging")
)

// streamOptions are what a stream request asks for in its headers.
type streamOptions struct {
	window    int // 0: no flow control
	keepalive time.Duration
	idle      time.Duration
}

func decodeStreamOptions(h nats.Header) (streamOptions, error) {
	o := streamOptions{window: DefaultWindow, idle: DefaultStreamIdle}
	fields := []struct {
		header string
		min    int64
		max    int64
		set    func(int64)
	}{
		{HeaderWindow, 0, MaxWindow, func(v int64) { o.window = int(v) }},
		{HeaderKeepalive, 0, 3600_000, func(v int64) { o.keepalive = time.Duration(v) * time.Millisecond }},
		{HeaderIdleTimeout, 1, 3600_000, func(v int64) { o.idle = time.Duration(v) * time.Millisecond }},
	}
	for _, f := range fields {
		raw := h.Get(f.header)
		if raw == "" {
			continue
		}
		v, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || v < f.min || v > f.max {
			return o, schemas.NewError(schemas.CategoryValidation, schemas.ReasonInvalidRequest,
				"%s: want an integer from %d to %d, got %q", f.header, f.min, f.max, raw)
		}
		f.set(v)
	}
	return o, nil
}

// serverStream is one stream this agent is sending.
type serverStream struct {
	s       *Server
	id      string
	reply   string
	ackSubj string
	req     *schemas.Request
	opts    streamOptions
	acks    chan uint64 // latest ack only
	cancel  context.CancelCauseFunc

	sent      atomic.Uint64
	acked     atomic.Uint64
	lastSend  atomic.Int64 // unix ns
	lastAck   atomic.Int64 // unix ns
	maxChunk  int
	publishMu sync.Mutex
}

func (s *Server) streamHandler(p Pool, pl placement) nats.MsgHandler {
	return func(m *nats.Msg) {
		received := time.Now()
		s.inflight.Add(1)
		go func() {
			defer s.inflight.Done()
			s.serveStream(p, m, received, pl)
		}()
	}
}

func (s *Server) serveStream(p Pool, m *nats.Msg, received time.Time, pl placement) {
	req, err := decodeRequest(m, received)
	var opts streamOptions
	if err == nil {
		opts, err = decodeStreamOptions(m.Header)
	}
	if err != nil || m.Reply == "" {
		if err != nil {
			s.replyError(m, req, asError(err))
		}
		return
	}
	if opts.window == 0 && req.Deadline.IsZero() {
		// Without acks nothing tells a gone reader from a slow one: such a
		// stream ends at the stream timeout unless the caller set its own.
		req.Deadline = received.Add(DefaultStreamTimeout)
	}
	ctx, cancel := context.WithCancelCause(s.ctx)
	defer cancel(nil)
	if !req.Deadline.IsZero() {
		var stop context.CancelFunc
		ctx, stop = context.WithDeadline(ctx, req.Deadline)
		defer stop()
	}
	ss := s.openStream(p.Name(), m.Reply, req, opts, cancel)
	defer s.closeStream(ss)
	watchDone := make(chan struct{})
	go ss.watch(ctx, watchDone)

	window := opts.window
	if window == 0 {
		window = DefaultWindow
	}
	run := func() error {
		return p.ExecuteStream(ctx, req, &schemas.StreamCall{Window: window, Emit: ss.emit, Acks: ss.acks})
	}
	if req.SessionID == "" || s.opts.Sessions == nil {
		if s.placed(p, pl, m, req, true, run, &err) {
			cancel(nil)
			<-watchDone
			return
		}
	} else {
		var forwarded bool
		if _, forwarded, err = s.runSession(p, m, req, true, run); forwarded && err == nil {
			cancel(nil)
			<-watchDone
			return
		}
	}
	cancel(nil)
	<-watchDone
	ss.finish(m, err)
}

func (s *Server) openStream(pool, reply string, req *schemas.Request, opts streamOptions,
	cancel context.CancelCauseFunc) *serverStream {
	id := nuid.Next()
	ss := &serverStream{
		s: s, id: id, reply: reply, req: req, opts: opts, cancel: cancel,
		ackSubj: s.subj.Ack(pool, s.opts.AgentID, id),
		acks:    make(chan uint64, 1),
		// A chunk and its headers must fit the server's max payload.
		maxChunk: max(int(s.nc.MaxPayload())-chunkHeaderReserve, 1024),
	}
	now := time.Now().UnixNano()
	ss.lastSend.Store(now)
	ss.lastAck.Store(now)
	s.mu.Lock()
	s.streams[id] = ss
	s.mu.Unlock()
	return ss
}

func (s *Server) closeStream(ss *serverStream) {
	s.mu.Lock()
	delete(s.streams, ss.id)
	s.mu.Unlock()
}

// ackHandler receives acknowledgements and cancels for this agent's streams.
func (s *Server) ackHandler(m *nats.Msg) {
	s.mu.Lock()
	ss := s.streams[lastToken(m.Subject)]
	s.mu.Unlock()
	if ss == nil {
		return
	}
	if m.Header.Get(HeaderStream) == StreamCancel {
		ss.cancel(errReaderCancelled)
		return
	}
	seq, err := strconv.ParseUint(string(m.Data), 10, 64)
	if err != nil {
		return
	}
	ss.ack(seq)
}

// ack records the reader's progress and passes the latest value on.
func (ss *serverStream) ack(seq uint64) {
	ss.lastAck.Store(time.Now().UnixNano())
	for {
		old := ss.acked.Load()
		if seq <= old || ss.acked.CompareAndSwap(old, seq) {
			break
		}
	}
	// One writer (the ack subscription, or emit without flow control): drain
	// the stale value, then leave the newest.
	select {
	case <-ss.acks:
	default:
	}
	select {
	case ss.acks <- ss.acked.Load():
	default:
	}
}

// emit publishes one chunk, split into parts when it exceeds the max payload.
func (ss *serverStream) emit(c schemas.Chunk) error {
	parts := max(1, (len(c.Body)+ss.maxChunk-1)/ss.maxChunk)
	for i := 0; i < parts; i++ {
		body := c.Body[i*ss.maxChunk : min(len(c.Body), (i+1)*ss.maxChunk)]
		out := nats.NewMsg(ss.reply)
		out.Header.Set(HeaderSeq, strconv.FormatUint(c.Seq, 10))
		out.Header.Set(HeaderAck, ss.ackSubj)
		out.Header.Set(HeaderRequestID, ss.req.RequestID)
		out.Header.Set(HeaderWorker, c.WorkerID)
		if c.Raw {
			out.Header.Set(HeaderContentType, ContentTypeOctetStream)
		}
		if r := ss.req.Session; r != nil && r.Reset {
			out.Header.Set(HeaderSessionReset, "true")
		}
		if parts > 1 {
			out.Header.Set(HeaderPart, strconv.Itoa(i+1)+"/"+strconv.Itoa(parts))
		}
		out.Data = body
		if err := ss.publish(out); err != nil {
			return err
		}
	}
	ss.sent.Store(c.Seq)
	if ss.opts.window == 0 {
		ss.ack(c.Seq)
	}
	return nil
}

func (ss *serverStream) publish(m *nats.Msg) error {
	ss.publishMu.Lock()
	defer ss.publishMu.Unlock()
	ss.lastSend.Store(time.Now().UnixNano())
	return ss.s.nc.PublishMsg(m)
}

// watch sends keepalives while the stream is silent and cancels it when the
// reader stops acknowledging chunks it has been sent.
func (ss *serverStream) watch(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	tick := ss.opts.idle / 4
	if ss.opts.keepalive > 0 {
		tick = min(tick, ss.opts.keepalive/4)
	}
	t := time.NewTicker(max(tick, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			ss.check(now)
		}
	}
}

func (ss *serverStream) check(now time.Time) {
	if ka := ss.opts.keepalive; ka > 0 && now.Sub(time.Unix(0, ss.lastSend.Load())) >= ka {
		m := nats.NewMsg(ss.reply)
		m.Header.Set(HeaderStream, StreamKeepalive)
		m.Header.Set(HeaderRequestID, ss.req.RequestID)
		m.Header.Set(HeaderAck, ss.ackSubj)
		_ = ss.publish(m)
	}
	waiting := ss.sent.Load() > ss.acked.Load()
	if ss.opts.window > 0 && waiting && now.Sub(time.Unix(0, ss.lastAck.Load())) > ss.opts.idle {
		ss.cancel(errReaderGone)
	}
}

// finish sends the end marker, or the error that ends the stream.
func (ss *serverStream) finish(m *nats.Msg, err error) {
	if err == nil {
		out := nats.NewMsg(ss.reply)
		out.Header.Set(HeaderStream, StreamEnd)
		out.Header.Set(HeaderRequestID, ss.req.RequestID)
		if err := ss.publish(out); err != nil {
			ss.s.log.Warn().Err(err).Str(keyRequestID, ss.req.RequestID).Msg("stream end failed")
		}
		return
	}
	switch {
	case errors.Is(err, errReaderCancelled), errors.Is(err, errReaderGone):
		err = schemas.NewError(schemas.CategoryWorker, schemas.ReasonCancelled,
			"stream %s ended: %v", ss.req.RequestID, err)
	}
	ss.s.replyError(m, ss.req, asError(err))
}
