package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/schemas"
)

// DefaultStreamTimeout bounds a whole stream when neither ctx nor an option says.
const DefaultStreamTimeout = 300 * time.Second

// clientKeepalive is how often the client asks for keepalives on a silent stream.
const clientKeepalive = 5 * time.Second

// ErrHalt, returned by a stream callback, stops the stream early without error:
// the reference's :halt.
var ErrHalt = errors.New("dispatch: halt stream")

// Chunk is one streamed value.
type Chunk struct {
	Seq    uint64
	Data   []byte
	Raw    bool
	Worker string
}

// Decode unmarshals a JSON chunk into v; numbers in an interface stay exact.
func (c *Chunk) Decode(v any) error {
	if c.Raw {
		return fmt.Errorf("decode chunk %d: %w", c.Seq, ErrRawResult)
	}
	d := json.NewDecoder(bytes.NewReader(c.Data))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("decode chunk %d: %w", c.Seq, err)
	}
	return nil
}

// WithWindow sets how many chunks may be in flight unacknowledged. Default 32.
func WithWindow(n int) CallOption { return func(o *callOptions) { o.window = n } }

// WithIdleTimeout sets how long a stream may be silent (no chunk, no
// keepalive) before the reader gives up, and how long the agent waits for an ack
// before it takes the reader as gone. Default 30 s.
func WithIdleTimeout(d time.Duration) CallOption { return func(o *callOptions) { o.idle = d } }

// ExecuteStream runs a streaming command and calls fn for each chunk, in order.
// fn may return ErrHalt to stop early (ExecuteStream then returns nil) or another
// error, which cancels the stream and is returned. ExecuteStream returns nil only
// after the end marker, an ErrHalt, and otherwise the error that ended it.
func (c *Client) ExecuteStream(ctx context.Context, pool, command string, args any,
	fn func(*Chunk) error, opts ...CallOption) error {
	o := callOptions{window: DefaultWindow, idle: DefaultStreamIdle}
	for _, f := range opts {
		f(&o)
	}
	if !config.ValidToken(pool) || !config.ValidToken(command) {
		return schemas.NewError(schemas.CategoryValidation, schemas.ReasonInvalidRequest,
			"pool %q and command %q must be letters, digits, '_' or '-'", pool, command)
	}
	if o.timeout == 0 {
		o.timeout = DefaultStreamTimeout
	}
	ctx, cancel := callContext(ctx, o.timeout)
	defer cancel()
	r, err := c.openStream(ctx, pool, command, args, &o)
	if err != nil {
		return err
	}
	defer r.sub.Unsubscribe()
	return r.run(ctx, fn)
}

// streamReader is the client end of one stream.
type streamReader struct {
	c       *Client
	pool    string
	command string
	sub     *nats.Subscription
	opts    *callOptions
	ackSubj string
	next    uint64 // the seq expected next
	parts   [][]byte
}

func (c *Client) openStream(ctx context.Context, pool, command string, args any,
	o *callOptions) (*streamReader, error) {
	msg, err := c.requestMsg(c.subj.Stream(pool, command), args, o)
	if err != nil {
		return nil, err
	}
	// Subscribe before publishing, so no chunk can come before the subscription.
	msg.Reply = c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(msg.Reply)
	if err != nil {
		return nil, fmt.Errorf("stream %s.%s: subscribe: %w", pool, command, err)
	}
	_ = sub.SetPendingLimits(-1, 512<<20)
	msg.Header.Set(HeaderWindow, strconv.Itoa(o.window))
	// Keepalives come often enough that a slow generator never looks idle.
	keepalive := max(min(clientKeepalive, o.idle/3), time.Millisecond)
	msg.Header.Set(HeaderKeepalive, strconv.FormatInt(keepalive.Milliseconds(), 10))
	msg.Header.Set(HeaderIdleTimeout, strconv.FormatInt(o.idle.Milliseconds(), 10))
	if dl, ok := ctx.Deadline(); ok {
		msg.Header.Set(HeaderTimeout, strconv.FormatInt(max(time.Until(dl).Milliseconds(), 1), 10))
	}
	if err := c.nc.PublishMsg(msg); err != nil {
		sub.Unsubscribe()
		return nil, transportError(pool, command, err)
	}
	return &streamReader{c: c, pool: pool, command: command, sub: sub, opts: o, next: 1}, nil
}

func (r *streamReader) run(ctx context.Context, fn func(*Chunk) error) error {
	for {
		m, err := r.nextMsg(ctx)
		if err != nil {
			r.cancel()
			return err
		}
		chunk, done, err := r.accept(m)
		if done || err != nil {
			return err
		}
		if chunk == nil {
			continue
		}
		if err := fn(chunk); err != nil {
			r.cancel()
			if errors.Is(err, ErrHalt) {
				return nil
			}
			return err
		}
		r.ack(chunk.Seq)
	}
}

func (r *streamReader) nextMsg(ctx context.Context) (*nats.Msg, error) {
	ictx, cancel := context.WithTimeout(ctx, r.opts.idle)
	defer cancel()
	m, err := r.sub.NextMsgWithContext(ictx)
	switch {
	case err == nil:
		return m, nil
	case errors.Is(err, nats.ErrNoResponders):
		return nil, transportError(r.pool, r.command, err)
	case ctx.Err() != nil:
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, schemas.NewError(schemas.CategoryTimeout, schemas.ReasonRequestTimeout,
				"stream %s.%s did not end before the deadline", r.pool, r.command)
		}
		return nil, fmt.Errorf("stream %s.%s: %w", r.pool, r.command, context.Cause(ctx))
	case errors.Is(err, context.DeadlineExceeded):
		return nil, schemas.NewError(schemas.CategoryTimeout, schemas.ReasonRequestTimeout,
			"stream %s.%s silent for %v", r.pool, r.command, r.opts.idle)
	}
	return nil, fmt.Errorf("stream %s.%s: %w", r.pool, r.command, err)
}

// accept handles one message: a chunk (returned whole once all its parts came),
// a keepalive (nil chunk), the end (done), or an error reply.
func (r *streamReader) accept(m *nats.Msg) (*Chunk, bool, error) {
	if a := m.Header.Get(HeaderAck); a != "" {
		r.ackSubj = a
	}
	if m.Header.Get(HeaderError) != "" {
		_, err := replyOf(m)
		return nil, true, err
	}
	switch m.Header.Get(HeaderStream) {
	case StreamEnd:
		return nil, true, nil
	case StreamKeepalive:
		return nil, false, nil
	}
	seq, err := strconv.ParseUint(m.Header.Get(HeaderSeq), 10, 64)
	if err != nil || seq != r.next {
		return nil, true, schemas.NewError(schemas.CategoryWorker, "stream_gap",
			"stream %s.%s: chunk %q arrived, want %d", r.pool, r.command, m.Header.Get(HeaderSeq), r.next)
	}
	data, complete := r.reassemble(m)
	if !complete {
		return nil, false, nil
	}
	r.next++
	return &Chunk{
		Seq: seq, Data: data, Worker: m.Header.Get(HeaderWorker),
		Raw: m.Header.Get(HeaderContentType) == ContentTypeOctetStream,
	}, false, nil
}

// reassemble joins the parts of a split chunk; it reports whether the chunk is
// complete.
func (r *streamReader) reassemble(m *nats.Msg) ([]byte, bool) {
	part := m.Header.Get(HeaderPart)
	if part == "" {
		return m.Data, true
	}
	i, n, _ := strings.Cut(part, "/")
	r.parts = append(r.parts, m.Data)
	if i != n {
		return nil, false
	}
	data := bytes.Join(r.parts, nil)
	r.parts = nil
	return data, true
}

func (r *streamReader) ack(seq uint64) {
	if r.ackSubj != "" && r.opts.window > 0 {
		_ = r.c.nc.Publish(r.ackSubj, strconv.AppendUint(nil, seq, 10))
	}
}

// cancel tells the agent to stop the generator, when the agent is known.
func (r *streamReader) cancel() {
	if r.ackSubj == "" {
		return
	}
	m := nats.NewMsg(r.ackSubj)
	m.Header.Set(HeaderStream, StreamCancel)
	_ = r.c.nc.PublishMsg(m)
	_ = r.c.nc.Flush()
}

// ExecuteInSessionStream is ExecuteStream in session.
func (c *Client) ExecuteInSessionStream(ctx context.Context, pool, session, command string, args any,
	fn func(*Chunk) error, opts ...CallOption) error {
	return c.ExecuteStream(ctx, pool, command, args, fn, append(opts, WithSession(session))...)
}
