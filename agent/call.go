package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/snakepit-go/snakepit/schemas"
)

// reasonRequeue is the ERROR reason of a pipelined request its worker handed
// back unstarted (FRAMES.md); callers never see it.
const reasonRequeue = "requeue"

// requestMeta is the meta of a REQUEST frame.
type requestMeta struct {
	Command   string `json:"command"`
	RequestID string `json:"request_id"`
	SessionID string `json:"session_id,omitempty"`
	Epoch     int64  `json:"session_epoch,omitempty"`
	// Guest says the worker does not hold the session (a hint call run
	// elsewhere): it must neither see nor keep the session's state.
	Guest       bool   `json:"session_guest,omitempty"`
	DeadlineMs  int64  `json:"deadline_ms,omitempty"`
	Traceparent string `json:"traceparent,omitempty"`
	Stream      bool   `json:"stream,omitempty"`
	Window      int    `json:"window,omitempty"`
	// Pipelined says the request was sent while the worker runs another.
	Pipelined bool `json:"pipelined,omitempty"`
}

// pending is one request waiting for its frames. The reader is the only sender;
// frames is closed after the final frame, or without one if the worker died.
type pending struct {
	frames chan *schemas.Frame
	// behind is set, under worker.mu, while the request waits in the pipe of a
	// one-at-a-time worker behind another that has not answered yet: it has
	// surely not started.
	behind bool
}

// deliver queues a frame without blocking the reader; it reports false when the
// channel is full, which only a worker ignoring its stream window can cause.
func (p *pending) deliver(f *schemas.Frame) bool {
	select {
	case p.frames <- f:
		return true
	default:
		return false
	}
}

// register allocates a request id; it returns errWorkerGone once the process
// has exited. pipelined says the request waits behind another (pending.behind).
func (w *worker) register(capacity int) (id uint32, p *pending, pipelined bool, err error) {
	p = &pending{frames: make(chan *schemas.Frame, capacity)}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gone {
		return 0, nil, false, errWorkerGone
	}
	p.behind = w.oneAtATime() && len(w.calls) > 0
	w.nextID++
	w.calls[w.nextID] = p
	return w.nextID, p, p.behind, nil
}

// oneAtATime reports whether the worker runs its requests one after another, in
// the order they were sent (--threads 1).
func (w *worker) oneAtATime() bool { return w.hello.Threads <= 1 }

func (w *worker) unregister(id uint32) {
	w.mu.Lock()
	delete(w.calls, id)
	w.mu.Unlock()
}

// call sends one request and waits for its answer. It returns errWorkerGone
// when the request could not reach a live process. The worker stays busy until it
// answers: a caller that gives up early does not free it.
func (w *worker) call(req *schemas.Request) (*schemas.Result, error) {
	id, p, pipelined, err := w.register(1)
	if err != nil {
		return nil, err
	}
	if err := w.sendRequest(id, req, requestMeta{Pipelined: pipelined}); err != nil {
		w.unregister(id)
		return nil, sendError(req, err)
	}
	f, ok := <-p.frames
	if !ok {
		w.mu.Lock()
		unstarted := p.behind
		w.mu.Unlock()
		if unstarted {
			// It never left the pipe: another worker may take it.
			return nil, errWorkerGone
		}
		return nil, w.exitErr
	}
	return w.answer(f)
}

func sendError(req *schemas.Request, err error) error {
	if errors.Is(err, schemas.ErrFrameTooLarge) {
		return schemas.NewError(schemas.CategoryValidation, schemas.ReasonPayloadTooLarge,
			"arguments of %d bytes exceed the worker frame limit", len(req.Args))
	}
	// The request never reached a live process: another worker may take it.
	return errWorkerGone
}

func (w *worker) answer(f *schemas.Frame) (*schemas.Result, error) {
	switch f.Kind {
	case schemas.KindResult:
		return &schemas.Result{Body: f.Body, Raw: f.Raw(), WorkerID: w.id}, nil
	case schemas.KindError:
		e := w.frameError(f)
		if e.Category == schemas.CategoryPool && e.Reason == reasonRequeue {
			return nil, errRequeued
		}
		return nil, e
	}
	return nil, schemas.NewError(schemas.CategoryWorker, schemas.ReasonPythonException,
		"worker %s answered with frame kind %d", w.id, f.Kind)
}

func (w *worker) frameError(f *schemas.Frame) *schemas.Error {
	e := &schemas.Error{}
	if err := json.Unmarshal(f.Meta, e); err != nil || e.Category == "" {
		e = schemas.NewError(schemas.CategoryWorker, schemas.ReasonPythonException,
			"worker sent an unreadable error: %s", f.Meta)
	}
	return e.WithDetail("worker_id", w.id)
}

func (w *worker) sendRequest(id uint32, req *schemas.Request, meta requestMeta) error {
	meta.Command, meta.RequestID = req.Command, req.RequestID
	meta.SessionID, meta.Traceparent = req.SessionID, req.Traceparent
	if req.Session != nil {
		meta.Epoch, meta.Guest = req.Session.Epoch, req.Session.Guest
	}
	if !req.Deadline.IsZero() {
		meta.DeadlineMs = req.Deadline.UnixMilli()
	}
	f := schemas.Frame{Kind: schemas.KindRequest, ID: id, Meta: appendMeta(nil, &meta), Body: req.Args}
	if req.Raw {
		f.Flags = schemas.FlagRaw
	}
	return w.send(&f)
}

// stream runs a streaming request: every CHUNK goes to sc.Emit in order, reader
// acknowledgements from sc.Acks go to Python as ACK frames, and ctx ending sends
// CANCEL. It returns once Python has ended the stream, so the worker is free.
func (w *worker) stream(ctx context.Context, req *schemas.Request, sc *schemas.StreamCall) error {
	// Python never has more than Window chunks unacknowledged; two more frames
	// (END or ERROR, and a chunk racing a cancel) fit beside them.
	id, p, _, err := w.register(sc.Window + 2)
	if err != nil {
		return err
	}
	if err := w.sendRequest(id, req, requestMeta{Stream: true, Window: sc.Window}); err != nil {
		w.unregister(id)
		return sendError(req, err)
	}
	st := streamState{w: w, id: id, sc: sc}
	done := ctx.Done()
	for {
		select {
		case f, ok := <-p.frames:
			if !ok {
				return w.exitErr
			}
			if final, err := st.frame(f); final {
				return err
			}
		case seq := <-sc.Acks:
			st.ack(seq)
		case <-done:
			done = nil
			st.cancel(context.Cause(ctx))
		}
	}
}

// streamState follows one stream on a worker.
type streamState struct {
	w         *worker
	id        uint32
	sc        *schemas.StreamCall
	cancelled error // why the stream was cancelled, if it was
	acked     uint64
}

// frame handles one frame of the stream and reports whether it was the last.
func (st *streamState) frame(f *schemas.Frame) (bool, error) {
	switch f.Kind {
	case schemas.KindChunk:
		if st.cancelled != nil {
			return false, nil
		}
		var meta struct {
			Seq uint64 `json:"seq"`
		}
		_ = json.Unmarshal(f.Meta, &meta)
		c := schemas.Chunk{Seq: meta.Seq, Body: f.Body, Raw: f.Raw(), WorkerID: st.w.id}
		if err := st.sc.Emit(c); err != nil {
			st.cancel(err)
		}
		return false, nil
	case schemas.KindEnd:
		return true, st.cancelled
	case schemas.KindError:
		if st.cancelled != nil {
			return true, st.cancelled
		}
		return true, st.w.frameError(f)
	case schemas.KindResult:
		// A worker that answered a stream with one result: one chunk.
		err := st.sc.Emit(schemas.Chunk{Seq: 1, Body: f.Body, Raw: f.Raw(), WorkerID: st.w.id})
		return true, err
	}
	return false, nil
}

func (st *streamState) ack(seq uint64) {
	if seq <= st.acked {
		return
	}
	st.acked = seq
	meta := fmt.Appendf(nil, `{"seq":%d}`, seq)
	_ = st.w.send(&schemas.Frame{Kind: schemas.KindAck, ID: st.id, Meta: meta})
}

func (st *streamState) cancel(cause error) {
	if st.cancelled != nil {
		return
	}
	if cause == nil {
		cause = context.Canceled
	}
	st.cancelled = cause
	_ = st.w.send(&schemas.Frame{Kind: schemas.KindCancel, ID: st.id, Meta: []byte(`{"reason":"cancelled"}`)})
}

// endSession sends SESSION_END so the adapter drops the session's state.
func (w *worker) endSession(sessionID string, epoch int64, reason string) {
	meta, err := json.Marshal(map[string]any{"session_id": sessionID, "reason": reason, "session_epoch": epoch})
	if err == nil {
		_ = w.send(&schemas.Frame{Kind: schemas.KindSessionEnd, Meta: meta})
	}
}
