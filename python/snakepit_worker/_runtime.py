"""The worker loop: frames in, adapter calls, frames out.

    in-fd --> reader thread --+-- PING ---------------> PONG (at once)
                              +-- REQUEST --> executor (--threads N)
                              |                 | bind, call, await,
                              |                 | iterate generators
                              |                 v
                              |        RESULT | CHUNK.. END | ERROR
                              +-- ACK / CANCEL --> wake the stream
                              +-- SESSION_END --> on_session_end hook
                              +-- SHUTDOWN ----> drain, hooks, exit 0
    out-fd <-- one write lock, whole frames only <-- every thread

The main thread only waits: for end of file on in-fd (the agent is
gone: exit at once), a broken out-fd (exit), a bad frame (exit 4) or a
SHUTDOWN whose running requests have all finished (exit 0).
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import logging
import os
import platform
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import (TYPE_CHECKING, Any, Callable, ContextManager, Dict,
                    List, Optional, Tuple)

if TYPE_CHECKING:
    # Imported when an async command first runs: asyncio is a fifth of the
    # worker's start-up.
    import asyncio

from . import _errors, _frames, _json
from ._adapter import BindError, Command, Context, commands_of
from ._frames import Frame, FrameError, FrameReader
from ._version import PROTOCOL_VERSION, __version__

__all__ = [
    "Worker", "EXIT_OK", "EXIT_INTERNAL", "EXIT_USAGE", "EXIT_ADAPTER",
    "EXIT_PROTOCOL", "DEFAULT_WINDOW",
]

log = logging.getLogger("snakepit_worker")

EXIT_OK = 0
#: The runtime itself failed.
EXIT_INTERNAL = 1
#: Bad command line.
EXIT_USAGE = 2
#: The adapter could not be imported or constructed.
EXIT_ADAPTER = 3
#: The agent sent a frame that breaks the layout.
EXIT_PROTOCOL = 4

#: How often the standby reader checks whether the read role is free.
STANDBY_POLL = 0.02

#: How long a pipelined request found waiting behind a running one may
#: wait for it before it goes back to the agent (see FRAMES.md).
PIPELINE_HOLD = 0.01

#: Chunks a stream may have unacknowledged when REQUEST has no window.
DEFAULT_WINDOW = 32

# Largest body that still fits a frame with a small meta.
_MAX_BODY = _frames.MAX_LENGTH - 4096

_BYTES = (bytes, bytearray, memoryview)

# Results that are surely neither coroutines nor generators: the checks of
# inspect are skipped for them.
_PLAIN = frozenset((dict, list, str, int, float, bool, bytes, type(None)))
# Plain results that are encoded as JSON.
_PLAIN_JSON = _PLAIN - {bytes}

# (kind, meta, body, flags) of the frame that ends a request.
Outcome = Tuple[int, Optional[Dict[str, Any]], bytes, int]


class _PipeClosed(Exception):
    """out-fd is gone; the process is on its way out."""


class _Request:
    """One request from REQUEST to its last frame."""

    __slots__ = (
        "id", "frame", "command", "ctx", "stream", "window", "cond",
        "acked", "task",
    )

    def __init__(self, frame: Frame, command: Command, ctx: Context,
                 stream: bool, window: int,
                 cond: threading.Condition) -> None:
        self.id = frame.id
        self.frame = frame
        self.command = command
        self.ctx = ctx
        self.stream = stream
        self.window = window
        # cond guards acked and task; ACK and CANCEL notify it. It is the
        # worker's, shared by every request: waiters check their own state
        # when woken, and one Condition per request would cost more than
        # the rest of a short request's bookkeeping.
        self.cond = cond
        self.acked = 0
        self.task: Optional[Tuple[asyncio.AbstractEventLoop,
                                  "asyncio.Task[Any]"]] = None


def _encode_value(value: Any) -> Tuple[int, bytes]:
    """flags and body for one result or chunk; TypeError if unencodable."""
    if isinstance(value, bytes):
        return _frames.RAW, value
    if isinstance(value, (bytearray, memoryview)):
        return _frames.RAW, bytes(value)
    return 0, _json.dumps(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array"


def _error(body: _errors.ErrorBody) -> Outcome:
    return (_frames.ERROR, body, b"", 0)


async def _anext(agen: Any) -> Tuple[bool, Any]:
    try:
        return False, await agen.__anext__()
    except StopAsyncIteration:
        return True, None


class Worker:
    """Serves one adapter over a pair of frame pipes until told to stop."""

    def __init__(self, adapter: Any, adapter_spec: str, worker_id: str,
                 in_fd: int, out_fd: int, threads: int = 1) -> None:
        self._adapter = adapter
        self._adapter_spec = adapter_spec
        self._worker_id = worker_id
        self._in_fd = in_fd
        self._out_fd = out_fd
        self._threads = threads
        self._commands = commands_of(adapter)
        self._known = sorted(self._commands)
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="snakepit-exec")
        self._local = threading.local()
        # With one thread, requests run one at a time whether a reader runs
        # them inline or the executor does.
        self._turn = threading.Lock()
        self._one_at_a_time: ContextManager[Any] = contextlib.nullcontext()
        if threads == 1:
            self._one_at_a_time = self._turn

        # _write_lock serializes frames on out-fd; _broken is set under it.
        self._write_lock = threading.Lock()
        self._broken = False

        # _lock guards the fields below; _state, on the same lock, is
        # notified when the main thread must look at them. The hot path
        # takes _lock alone: a Condition's own enter and exit are Python.
        self._lock = threading.Lock()
        self._state = threading.Condition(self._lock)
        self._requests: Dict[int, _Request] = {}
        self._busy = 0
        self._closing = False
        self._exit: Optional[int] = None

        # _flow is every request's cond (see _Request).
        self._flow = threading.Condition()

        self._sessions_lock = threading.Lock()
        self._sessions: Dict[str, Dict[str, Any]] = {}
        # The lease epoch each session's state belongs to: a request with
        # another epoch starts the session afresh, and a SESSION_END for an
        # older epoch leaves the newer state alone.
        self._epochs: Dict[str, int] = {}

    # ---- lifecycle -------------------------------------------------

    def hello_meta(self) -> Dict[str, Any]:
        return {
            "protocol": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "worker_id": self._worker_id,
            "python": platform.python_version(),
            "adapter": self._adapter_spec,
            "commands": list(self._known),
            "thread_safe": bool(
                getattr(type(self._adapter), "thread_safe", False)),
            "runtime": __version__,
            "threads": self._threads,
        }

    def run(self) -> int:
        """Write HELLO, serve frames, and return the exit status."""
        try:
            self._send(_frames.HELLO, 0, self.hello_meta())
        except _PipeClosed:
            return self._exit if self._exit is not None else EXIT_OK
        self._reader = FrameReader(self._in_fd)
        self._read_role = threading.Lock()
        # Two readers take turns when requests run one at a time: the one
        # holding the read role runs a short request itself, sparing a thread
        # hand-off, and the other takes over reading (PING, CANCEL) if the
        # request takes longer than STANDBY_POLL.
        names = ["snakepit-reader"]
        if self._threads == 1:
            names.append("snakepit-standby")
        for name in names:
            threading.Thread(target=self._take_turns, name=name,
                             daemon=True).start()
        with self._state:
            while self._exit is None and not (
                    self._closing and self._busy == 0):
                self._state.wait()
            if self._exit is not None:
                return self._exit
        return self._finish_shutdown()

    def _finish_shutdown(self) -> int:
        done = self._executor.submit(self._end_all_sessions, "shutdown")
        done.add_done_callback(self._notify)
        with self._state:
            while self._exit is None and not done.done():
                self._state.wait()
            if self._exit is not None:
                return self._exit
        log.info("worker %s shut down", self._worker_id)
        return EXIT_OK

    def _notify(self, _future: "Optional[Future[Any]]" = None) -> None:
        with self._state:
            self._state.notify_all()

    def _stop(self, status: int) -> None:
        with self._state:
            if self._exit is None:
                self._exit = status
            self._state.notify_all()

    # ---- reading ---------------------------------------------------

    def _take_turns(self) -> None:
        """Hold the read role whenever it is free, until reading ends.

        Polling, not blocking on the lock, keeps a short inline request
        from waking this thread: only one longer than STANDBY_POLL does.
        """
        while self._exit is None:
            if not self._read_role.acquire(blocking=False):
                time.sleep(STANDBY_POLL)
                continue
            if self._read_loop():
                return

    def _read_loop(self) -> bool:
        """Read and dispatch frames while holding the read role.

        Returns True when reading is over for good, and False when the role
        passed to the other thread while this one ran a request.
        """
        try:
            while True:
                frame = self._reader.read()
                if frame is None:
                    log.info("frame pipe closed by the agent; exiting")
                    self._stop(EXIT_OK)
                    return True
                if frame.kind == _frames.REQUEST:
                    inline = self._on_request(frame)
                else:
                    inline = self._dispatch(frame)
                if inline is not None:
                    self._read_role.release()
                    self._serve(inline)
                    if not self._read_role.acquire(blocking=False):
                        return False
        except FrameError as exc:
            log.error("bad frame from the agent, closing: %s", exc)
            self._stop(EXIT_PROTOCOL)
        except _PipeClosed:
            pass
        except BaseException:
            log.exception("frame reader failed")
            self._stop(EXIT_INTERNAL)
        return True

    def _dispatch(self, frame: Frame) -> Optional["_Request"]:
        """Handle a frame; a request to run on this thread is returned."""
        handler = self._handlers.get(frame.kind)
        if handler is None:
            log.warning("ignored %s frame id %d: not meant for a worker",
                        frame.kind_name, frame.id)
            return None
        return handler(self, frame)

    def _on_ping(self, frame: Frame) -> None:
        meta = {"seq": frame.meta["seq"]} if "seq" in frame.meta else None
        self._send(_frames.PONG, 0, meta)

    def _on_shutdown(self, frame: Frame) -> None:
        with self._state:
            self._closing = True
            running = self._busy
            self._state.notify_all()
        log.info("shutdown requested; %d requests running", running)

    def _find(self, frame_id: int) -> Optional[_Request]:
        with self._lock:
            return self._requests.get(frame_id)

    def _on_ack(self, frame: Frame) -> None:
        seq = frame.meta.get("seq")
        req = self._find(frame.id)
        if req is None or not isinstance(seq, int):
            return
        with req.cond:
            if seq > req.acked:
                req.acked = seq
                req.cond.notify_all()

    def _on_cancel(self, frame: Frame) -> None:
        req = self._find(frame.id)
        if req is None:
            return
        why = frame.meta.get("reason")
        req.ctx.cancel(why if isinstance(why, str) else None)
        with req.cond:
            task = req.task
            req.cond.notify_all()
        if task is not None:
            loop, pending = task
            loop.call_soon_threadsafe(pending.cancel)

    def _on_session_end(self, frame: Frame) -> None:
        session_id = frame.meta.get("session_id")
        reason = frame.meta.get("reason")
        if not isinstance(session_id, str):
            log.warning("SESSION_END without a session_id ignored")
            return
        if not isinstance(reason, str) or not reason:
            reason = "dropped"
        epoch = _optional_int(frame.meta.get("session_epoch"))
        with self._sessions_lock:
            if epoch is not None and self._epochs.get(session_id) not in (
                    None, epoch):
                return
            state = self._sessions.pop(session_id, None)
            self._epochs.pop(session_id, None)
        if state is not None:
            self._executor.submit(
                self._call_hook, session_id, state, reason)

    # ---- requests --------------------------------------------------

    def _on_request(self, frame: Frame) -> Optional["_Request"]:
        name = frame.meta.get("command")
        if type(name) is not str:
            body = _errors.bad_arguments("", "REQUEST meta has no command")
            self._send(_frames.ERROR, frame.id, body)
            return None
        command = self._commands.get(name)
        refusal = self._refusal(frame.id, name, command)
        if refusal is not None:
            self._send(_frames.ERROR, frame.id, refusal)
            return None
        assert command is not None
        req = self._new_request(frame, command)
        with self._lock:
            self._requests[frame.id] = req
            self._busy += 1
            alone = self._busy == 1
        if alone and self._threads == 1 and not req.stream:
            return req
        if self._threads == 1 and frame.meta.get("pipelined") is True:
            self._executor.submit(self._serve_pipelined, req)
        else:
            self._executor.submit(self._serve, req)
        return None

    def _refusal(self, frame_id: int, name: str,
                 command: Optional[Command]) -> Optional[_errors.ErrorBody]:
        """Why a REQUEST cannot start, or None when it can."""
        if command is None:
            return _errors.unknown_command(name, self._known)
        with self._lock:
            if self._closing:
                return _errors.cancelled(name, "worker is shutting down")
            if frame_id in self._requests:
                return _errors.bad_arguments(
                    name, f"request id {frame_id} is already in flight")
        return None

    def _new_request(self, frame: Frame, command: Command) -> _Request:
        meta = frame.meta
        get = meta.get
        session_id = get("session_id")
        session = None
        if type(session_id) is str:
            if get("session_guest") is True:
                # A hint call run here while another worker holds the
                # session: an empty state of its own, kept by nobody.
                session = {}
            else:
                session = self._session(
                    session_id, _optional_int(get("session_epoch")))
        else:
            session_id = None
        deadline_ms = get("deadline_ms")
        deadline = None
        if type(deadline_ms) in (int, float):
            deadline = deadline_ms / 1000.0
        request_id = get("request_id")
        traceparent = get("traceparent")
        # Positional, in the order of Context's parameters: a keyword call
        # costs more than the rest of building the request.
        ctx = Context(
            self._worker_id, command.name,
            request_id if type(request_id) is str else None,
            session_id, session, deadline,
            traceparent if type(traceparent) is str else None,
        )
        window = get("window")
        if type(window) is not int or window < 1:
            window = DEFAULT_WINDOW
        return _Request(frame, command, ctx, get("stream") is True,
                        window, self._flow)

    def _session(self, session_id: str,
                 epoch: Optional[int]) -> Dict[str, Any]:
        """The state of session_id, afresh when epoch (None: not given)
        differs from the one its state belongs to."""
        stale = None
        with self._sessions_lock:
            if epoch is not None:
                known = self._epochs.get(session_id)
                if known != epoch:
                    if known is not None:
                        stale = self._sessions.pop(session_id, None)
                    self._epochs[session_id] = epoch
            state = self._sessions.get(session_id)
            if state is None:
                state = self._sessions[session_id] = {}
        if stale is not None:
            self._executor.submit(self._call_hook, session_id, stale,
                                  "reset")
        return state

    def _serve(self, req: _Request) -> None:
        """Run req and write its last frame, on a reader or the executor."""
        with self._one_at_a_time:
            self._serve_now(req)

    def _serve_pipelined(self, req: _Request) -> None:
        """Run a request the agent sent behind another one, if that one
        ends within PIPELINE_HOLD; else hand it back unstarted."""
        if not self._turn.acquire(timeout=PIPELINE_HOLD):
            try:
                self._final(req, _error(_errors.requeue(req.command.name)))
            except _PipeClosed:
                pass
            finally:
                self._release(req)
            return
        try:
            self._serve_now(req)
        finally:
            self._turn.release()

    def _serve_now(self, req: _Request) -> None:
        try:
            outcome: Optional[Outcome] = self._run(req)
        except _PipeClosed:
            outcome = None
        except BaseException as exc:
            log.exception("request %d failed inside the runtime", req.id)
            outcome = _error(_errors.exception_body(exc))
        try:
            if outcome is not None:
                self._final(req, outcome)
        except _PipeClosed:
            pass
        finally:
            self._release(req)

    def _run(self, req: _Request) -> Outcome:
        if req.ctx.cancelled:
            return self._cancelled(req)
        deadline = req.ctx.deadline
        if deadline is not None and time.time() >= deadline:
            # Nobody waits for it any more (a request queued in the pipe or
            # on the executor may start late).
            return _error(_errors.deadline_passed(req.command.name))
        try:
            value = self._call(req)
            if type(value) not in _PLAIN and inspect.iscoroutine(value):
                value = self._await(req, value)
        except BindError as exc:
            return _error(_errors.bad_arguments(req.command.name, str(exc)))
        except BaseException as exc:
            return self._failure(req, exc)
        if type(value) not in _PLAIN and (
                inspect.isgenerator(value) or inspect.isasyncgen(value)):
            source = _Source(self, req, value)
            if req.stream:
                return self._stream(req, source)
            return self._collect(req, source)
        if req.stream:
            return self._stream(req, _Source(self, req, iter((value,))))
        return self._result(req, value)

    def _call(self, req: _Request) -> Any:
        """Call the command with the request's arguments; BindError when
        they do not fit it."""
        frame = req.frame
        body = frame.body
        if frame.raw:
            return req.command.call_raw(req.ctx, body)
        if body == b"{}" or not body or body.isspace():
            return req.command.call_json(req.ctx, {})
        try:
            kwargs = _json.loads(body)
        except ValueError as exc:
            raise BindError(f"request body is not valid JSON: {exc}")
        if not isinstance(kwargs, dict):
            raise BindError(
                "request body must be a JSON object, not "
                f"{_json_type(kwargs)}")
        return req.command.call_json(req.ctx, kwargs)

    def _await(self, req: _Request, awaitable: Any) -> Any:
        """Run a coroutine on this thread's loop; CANCEL cancels it."""
        loop = self._loop()
        task = loop.create_task(awaitable)
        with req.cond:
            req.task = (loop, task)
        if req.ctx.cancelled:
            task.cancel()
        try:
            return loop.run_until_complete(task)
        finally:
            with req.cond:
                req.task = None

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop: Optional[asyncio.AbstractEventLoop] = getattr(
            self._local, "loop", None)
        if loop is None:
            import asyncio

            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._local.loop = loop
        return loop

    # ---- outcomes --------------------------------------------------

    def _cancelled(self, req: _Request) -> Outcome:
        return _error(_errors.cancelled(
            req.command.name, req.ctx.cancel_reason))

    def _failure(self, req: _Request, exc: BaseException) -> Outcome:
        if req.ctx.cancelled:
            return self._cancelled(req)
        return _error(_errors.exception_body(exc))

    def _encoded(self, req: _Request,
                 value: Any) -> Tuple[Optional[Outcome], int, bytes]:
        """(error, flags, body): error is set when value cannot be sent."""
        try:
            if type(value) in _PLAIN_JSON:
                flags, body = 0, _json.dumps(value)
            else:
                flags, body = _encode_value(value)
        except TypeError as exc:
            return _error(_errors.exception_body(exc)), 0, b""
        if len(body) > _MAX_BODY:
            return _error(_errors.payload_too_large(
                req.command.name, len(body), _MAX_BODY)), 0, b""
        return None, flags, body

    def _result(self, req: _Request, value: Any) -> Outcome:
        if req.ctx.cancelled:
            return self._cancelled(req)
        error, flags, body = self._encoded(req, value)
        if error is not None:
            return error
        return (_frames.RESULT, None, body, flags)

    def _collect(self, req: _Request, source: "_Source") -> Outcome:
        """A generator called without stream: one RESULT of all values."""
        try:
            values: List[Any] = []
            while not req.ctx.cancelled:
                try:
                    done, value = source.next()
                except BaseException as exc:
                    return self._failure(req, exc)
                if done:
                    break
                values.append(value)
        finally:
            source.close()
        if values and all(isinstance(v, _BYTES) for v in values):
            return self._result(req, b"".join(values))
        return self._result(req, values)

    def _stream(self, req: _Request, source: "_Source") -> Outcome:
        """CHUNK per value within the window, then END (or ERROR)."""
        try:
            sent = 0
            while self._wait_window(req, sent):
                try:
                    done, value = source.next()
                except BaseException as exc:
                    return self._failure(req, exc)
                if done or req.ctx.cancelled:
                    break
                error, flags, body = self._encoded(req, value)
                if error is not None:
                    return error
                sent += 1
                self._send(_frames.CHUNK, req.id, {"seq": sent}, body,
                           flags)
        finally:
            source.close()
        if req.ctx.cancelled:
            return self._cancelled(req)
        return (_frames.END, {"chunks": sent}, b"", 0)

    def _wait_window(self, req: _Request, sent: int) -> bool:
        """Block while the window is full; False once cancelled."""
        with req.cond:
            while sent - req.acked >= req.window and not req.ctx.cancelled:
                req.cond.wait()
        return not req.ctx.cancelled

    def _final(self, req: _Request, outcome: Outcome) -> None:
        # Forget the id before answering: the agent may reuse it as soon
        # as it has the answer.
        requests = self._requests
        with self._lock:
            if requests.get(req.id) is req:
                del requests[req.id]
        kind, meta, body, flags = outcome
        self._send(kind, req.id, meta, body, flags)

    def _release(self, req: _Request) -> None:
        requests = self._requests
        with self._lock:
            if requests.get(req.id) is req:
                del requests[req.id]
            self._busy -= 1
            # Only a shutdown waits for the count to drop: waking the main
            # thread after every request would cost a GIL hand-off each time.
            if self._closing and self._busy == 0:
                self._state.notify_all()

    # ---- sessions --------------------------------------------------

    def _end_all_sessions(self, reason: str) -> None:
        with self._sessions_lock:
            ended = list(self._sessions.items())
            self._sessions.clear()
            self._epochs.clear()
        for session_id, state in ended:
            self._call_hook(session_id, state, reason)

    def _call_hook(self, session_id: str, state: Dict[str, Any],
                   reason: str) -> None:
        hook = getattr(self._adapter, "on_session_end", None)
        if not callable(hook):
            return
        try:
            result = hook(session_id, state, reason)
            if inspect.iscoroutine(result):
                self._loop().run_until_complete(result)
        except BaseException:
            log.exception("on_session_end(%r, reason=%r) failed",
                          session_id, reason)

    # ---- writing ---------------------------------------------------

    def _send(self, kind: int, frame_id: int,
              meta: Optional[Dict[str, Any]] = None, body: bytes = b"",
              flags: int = 0) -> None:
        """Write one whole frame; raise _PipeClosed once out-fd is gone."""
        data = _frames.pack(kind, frame_id,
                            _json.dumps(meta) if meta else b"", body, flags)
        with self._write_lock:
            if self._broken:
                raise _PipeClosed()
            try:
                _frames.write_all(self._out_fd, data)
            except OSError as exc:
                self._broken = True
                gone = exc.errno == errno.EPIPE
                if not gone:
                    log.error("writing a frame failed: %s", exc)
                self._stop(EXIT_OK if gone else EXIT_INTERNAL)
                raise _PipeClosed() from exc

    _handlers: Dict[int, Callable[["Worker", Frame],
                                  Optional["_Request"]]] = {
        _frames.PING: _on_ping,
        _frames.REQUEST: _on_request,
        _frames.CANCEL: _on_cancel,
        _frames.ACK: _on_ack,
        _frames.SESSION_END: _on_session_end,
        _frames.SHUTDOWN: _on_shutdown,
    }


def _optional_int(value: Any) -> Optional[int]:
    """An integer from frame meta, or None (booleans are not integers, and
    decoded JSON has no other subclass of int)."""
    return value if type(value) is int else None


class _Source:
    """A sync or async generator seen as next()/close() on one thread."""

    __slots__ = ("_worker", "_req", "_gen", "_async")

    def __init__(self, worker: Worker, req: _Request, gen: Any) -> None:
        self._worker = worker
        self._req = req
        self._gen = gen
        self._async = inspect.isasyncgen(gen)

    def next(self) -> Tuple[bool, Any]:
        """(True, None) at the end, else (False, value)."""
        if self._async:
            done, value = self._worker._await(self._req, _anext(self._gen))
            return done, value
        try:
            return False, next(self._gen)
        except StopIteration:
            return True, None

    def close(self) -> None:
        """Close the generator so its finally blocks run."""
        close = getattr(self._gen, "aclose" if self._async else "close",
                        None)
        if close is None:
            return
        try:
            if self._async:
                self._worker._loop().run_until_complete(close())
            else:
                close()
        except BaseException:
            log.exception("closing the generator of %s failed",
                          self._req.command.name)
