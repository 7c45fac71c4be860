package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	_ "embed"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/snakepit-go/snakepit/schemas"
)

//go:embed pipe_echo.py
var pipeEchoScript []byte

// Subjects of the floors, on the agent's own server.
const (
	subjectEcho     = "bench.floor.echo"
	subjectComposed = "bench.floor.composed"
	subjectStream   = "bench.floor.stream"

	// headerBenchError carries a floor responder's failure back to the caller.
	headerBenchError = "Bench-Error"
)

// frameShape is what one product call puts on a worker pipe: the REQUEST frame
// the agent writes and the RESULT body the worker answers with. The floors use
// the same sizes.
type frameShape struct {
	meta  []byte
	args  []byte
	reply []byte
}

// newFrameShape builds REQUEST meta like the agent's (command, a request id of
// the same length, a deadline) for args, answered with reply. The deadline is a
// day away, past any run: the worker runtime refuses a request whose deadline
// has passed, and every frame of the run carries this one.
func newFrameShape(command string, args, reply []byte) (frameShape, error) {
	meta, err := json.Marshal(map[string]any{
		"command": command, "request_id": nuid.Next(),
		"deadline_ms": time.Now().Add(24 * time.Hour).UnixMilli(),
	})
	if err != nil {
		return frameShape{}, fmt.Errorf("encode floor meta: %w", err)
	}
	return frameShape{meta: meta, args: args, reply: reply}, nil
}

// framePool is a fixed set of Python children that answer REQUEST frames, each
// used by one caller at a time, like the slots of a pool.
type framePool struct {
	children []*pyChild
	free     chan *pyChild
	shape    frameShape
	nextID   atomic.Uint32
}

func newFramePool(children []*pyChild, shape frameShape) *framePool {
	p := &framePool{children: children, free: make(chan *pyChild, len(children)), shape: shape}
	for _, c := range children {
		p.free <- c
	}
	return p
}

// startEchoPool writes the echo script under dir and starts n bare echo
// children of it: the pipe floor.
func startEchoPool(python, dir string, n int, shape frameShape) (*framePool, error) {
	script := filepath.Join(dir, "pipe_echo.py")
	if err := os.WriteFile(script, pipeEchoScript, 0o644); err != nil {
		return nil, fmt.Errorf("write echo script %s: %w", script, err)
	}
	var children []*pyChild
	for range n {
		c, err := startPyChild(python, []string{script, "--reply", string(shape.reply)}, nil)
		if err != nil {
			closeChildren(children)
			return nil, err
		}
		children = append(children, c)
	}
	return newFramePool(children, shape), nil
}

// startRuntimePool starts n real worker runtimes with the showcase adapter,
// talked to directly over their pipes: the product's Python side, no agent.
func startRuntimePool(python, runtimeDir string, n int, shape frameShape) (*framePool, error) {
	var children []*pyChild
	for i := range n {
		c, _, err := startRuntime(python, runtimeDir, fmt.Sprintf("bench-direct-%d", i+1))
		if err != nil {
			closeChildren(children)
			return nil, err
		}
		children = append(children, c)
	}
	return newFramePool(children, shape), nil
}

func closeChildren(children []*pyChild) {
	for _, c := range children {
		c.close()
	}
}

// call makes one round trip on a free child, waiting for one if all are busy.
func (p *framePool) call(ctx context.Context) ([]byte, error) {
	var c *pyChild
	select {
	case c = <-p.free:
	case <-ctx.Done():
		return nil, fmt.Errorf("echo pool: %w", context.Cause(ctx))
	}
	defer func() { p.free <- c }()
	f := schemas.Frame{
		Kind: schemas.KindRequest, ID: p.nextID.Add(1), Meta: p.shape.meta, Body: p.shape.args,
	}
	answer, err := c.roundTrip(&f)
	if err != nil {
		return nil, err
	}
	return answer.Body, nil
}

func (p *framePool) close() { closeChildren(p.children) }

func (p *framePool) pids() []int {
	out := make([]int, len(p.children))
	for i, c := range p.children {
		out[i] = c.pid()
	}
	return out
}

// serveEcho answers every request on subjectEcho with the product's reply body,
// in the subscription's own goroutine: the least a NATS responder can do.
func serveEcho(nc *nats.Conn, reply []byte) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(subjectEcho, func(m *nats.Msg) { _ = m.Respond(reply) })
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subjectEcho, err)
	}
	return sub, nc.Flush()
}

// serveComposed joins the two floors: each request on subjectComposed is handed
// to a goroutine at once, makes a round trip on a free echo child and is
// answered with the child's body. It is the agent's path with none of its logic.
func serveComposed(ctx context.Context, nc *nats.Conn,
	pool *framePool) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(subjectComposed, func(m *nats.Msg) {
		go func() {
			body, err := pool.call(ctx)
			if err != nil {
				out := nats.NewMsg(m.Reply)
				out.Header.Set(headerBenchError, err.Error())
				_ = m.RespondMsg(out)
				return
			}
			_ = m.Respond(body)
		}()
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subjectComposed, err)
	}
	_ = sub.SetPendingLimits(1<<16, 256<<20)
	return sub, nc.Flush()
}

// natsCaller is a bare request to subject, the floor's client side.
func natsCaller(nc *nats.Conn, subject string, body []byte) caller {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		resp, err := nc.RequestWithContext(ctx, subject, body)
		if err != nil {
			return fmt.Errorf("request %s: %w", subject, err)
		}
		if e := resp.Header.Get(headerBenchError); e != "" {
			return fmt.Errorf("request %s: %w: %s", subject, errFloorFailed, e)
		}
		return nil
	}
}

// publishRate is how fast bare NATS carries chunks from one connection to a
// subscriber on another.
type publishRate struct {
	Chunks     int     `json:"chunks"`
	ChunkBytes int     `json:"chunk_bytes"`
	Window     int     `json:"window"`
	PerSecond  float64 `json:"chunks_per_s"`
	MBPerS     float64 `json:"mb_per_s"`
}

// measurePublish publishes n chunks of size bytes with at most window of them
// not yet received, the same window a worker stream keeps, and times the lot.
func measurePublish(ctx context.Context, pub, sub *nats.Conn,
	n, size, window int) (publishRate, error) {
	var got atomic.Int64
	progress := make(chan struct{}, 1)
	s, err := sub.Subscribe(subjectStream, func(*nats.Msg) {
		got.Add(1)
		select {
		case progress <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return publishRate{}, fmt.Errorf("subscribe %s: %w", subjectStream, err)
	}
	defer s.Unsubscribe()
	_ = s.SetPendingLimits(window*2, window*2*size)
	if err := sub.Flush(); err != nil {
		return publishRate{}, fmt.Errorf("flush %s: %w", subjectStream, err)
	}
	chunk := make([]byte, size)
	_, _ = rand.Read(chunk)
	began := time.Now()
	if err := publishWindowed(ctx, pub, chunk, n, window, &got, progress); err != nil {
		return publishRate{}, err
	}
	elapsed := time.Since(began).Seconds()
	return publishRate{
		Chunks: n, ChunkBytes: size, Window: window,
		PerSecond: *num(float64(n) / elapsed), MBPerS: *num(float64(n*size) / 1e6 / elapsed),
	}, nil
}

func publishWindowed(ctx context.Context, nc *nats.Conn, chunk []byte, n, window int,
	got *atomic.Int64, progress <-chan struct{}) error {
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for sent := 0; got.Load() < int64(n); {
		if sent < n && int64(sent)-got.Load() < int64(window) {
			if err := nc.Publish(subjectStream, chunk); err != nil {
				return fmt.Errorf("publish %s chunk %d: %w", subjectStream, sent, err)
			}
			sent++
			continue
		}
		select {
		case <-progress:
		case <-deadline.C:
			return fmt.Errorf("publish %s: %d of %d chunks arrived in 30s",
				subjectStream, got.Load(), n)
		case <-ctx.Done():
			return fmt.Errorf("publish %s: %w", subjectStream, context.Cause(ctx))
		}
	}
	return nil
}
