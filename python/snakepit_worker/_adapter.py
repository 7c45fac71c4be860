"""What an adapter author sees: Adapter, @command and Context.

    class Mine(Adapter)          commands_of(instance)
      @command ping  ----------> {"ping": Command(...)}
                                         |
    REQUEST "ping" {"message": "hi"}     v
      body --> kwargs ------> Command.call_json(ctx, kwargs)

This module knows nothing about frames or threads; _runtime drives it.
"""

from __future__ import annotations

import importlib
import inspect
import re
import threading
from typing import (
    Any, Callable, Dict, List, Optional, Sequence, TypeVar, Union,
    overload,
)

__all__ = [
    "Adapter", "command", "Context", "Command", "commands_of",
    "load_adapter", "BindError",
]

_F = TypeVar("_F", bound=Callable[..., Any])

# The attribute @command sets on a function: the command's name.
_MARK = "__snakepit_command__"

# Command names become one NATS subject token.
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class Adapter:
    """Base class for adapters; subclass it and mark methods @command.

    thread_safe tells the agent whether one worker may run several
    requests of this adapter at once (``--threads`` above 1).
    """

    #: Whether commands may run concurrently in one worker.
    thread_safe: bool = False

    def __init__(self, args: Optional[Sequence[str]] = None) -> None:
        #: The words after ``--`` on the worker's command line.
        self.adapter_args: List[str] = list(args or [])

    def on_session_end(
        self, session_id: str, state: Dict[str, Any], reason: str
    ) -> None:
        """Called once a session ends: expired, dropped or shutdown.

        state is the session's dict, already dropped by the worker.
        """


@overload
def command(func: _F) -> _F: ...


@overload
def command(
    func: None = None, *, name: Optional[str] = None
) -> Callable[[_F], _F]: ...


def command(
    func: Optional[_F] = None, *, name: Optional[str] = None
) -> Union[_F, Callable[[_F], _F]]:
    """Mark a method as a command, named after it or by name=."""

    def mark(target: _F) -> _F:
        if not callable(target):
            raise TypeError(f"@command needs a function, got {target!r}")
        command_name = name if name is not None else target.__name__
        if not _NAME.match(command_name):
            raise ValueError(
                f"command name {command_name!r} must use only letters, "
                "digits, '_' and '-'")
        setattr(target, _MARK, command_name)
        return target

    if func is not None:
        return mark(func)
    return mark


class Context:
    """What the runtime knows about one request.

    session is the per-session dict shared by every request of
    session_id; it lives until the session ends, and is None for calls
    without a session. deadline is in Unix seconds, or None.
    """

    __slots__ = (
        "worker_id", "request_id", "session_id", "session", "deadline",
        "traceparent", "command", "_cancelled", "_cancel_reason", "_event",
    )

    def __init__(
        self,
        worker_id: str,
        command: str,
        request_id: Optional[str] = None,
        session_id: Optional[str] = None,
        session: Optional[Dict[str, Any]] = None,
        deadline: Optional[float] = None,
        traceparent: Optional[str] = None,
    ) -> None:
        self.worker_id = worker_id
        self.command = command
        self.request_id = request_id
        self.session_id = session_id
        self.session = session
        self.deadline = deadline
        self.traceparent = traceparent
        self._cancelled = False
        self._cancel_reason: Optional[str] = None
        # Made by the first wait() only: most requests never sleep, and an
        # Event costs as much as the rest of the request's bookkeeping.
        self._event: Optional[threading.Event] = None

    @property
    def cancelled(self) -> bool:
        """Whether the agent sent CANCEL for this request."""
        return self._cancelled

    @property
    def cancel_reason(self) -> Optional[str]:
        """The reason given with CANCEL, if any."""
        return self._cancel_reason

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Sleep up to timeout seconds, waking early on CANCEL.

        Returns True when the request was cancelled.
        """
        event = self._event
        if event is None:
            with _EVENT_LOCK:
                if self._event is None:
                    self._event = threading.Event()
                event = self._event
        # cancel() sets the flag and looks for the event under the lock the
        # event was made under: either it sets the event or the flag is
        # seen here, so a CANCEL is never missed.
        if self._cancelled:
            return True
        return event.wait(timeout)

    def cancel(self, reason: Optional[str] = None) -> None:
        """Mark the request cancelled (the runtime calls this)."""
        with _EVENT_LOCK:
            if not self._cancelled:
                self._cancel_reason = reason
                self._cancelled = True
            event = self._event
        if event is not None:
            event.set()

    def __repr__(self) -> str:
        return (
            f"Context(command={self.command!r}, "
            f"request_id={self.request_id!r}, "
            f"session_id={self.session_id!r})")


# Guards the lazy creation of Context events and the cancel flag.
_EVENT_LOCK = threading.Lock()


class BindError(Exception):
    """The request's arguments do not fit the command's parameters."""


class Command:
    """One command of a loaded adapter: a bound method and its signature."""

    __slots__ = ("name", "func", "signature", "_bind_first")

    def __init__(self, name: str, func: Callable[..., Any]) -> None:
        self.name = name
        self.func = func
        self.signature = inspect.signature(func)
        # A wrapper (functools.wraps) takes any arguments and runs before the
        # function it wraps can refuse them: check those first.
        self._bind_first = hasattr(func, "__wrapped__")
        try:
            self.signature.bind_partial(None)
        except TypeError:
            raise TypeError(
                f"command {name!r} must take ctx as its first parameter"
            ) from None

    def bind_json(
        self, ctx: Context, kwargs: Dict[str, Any]
    ) -> inspect.BoundArguments:
        """Bind ctx and keyword arguments, or raise BindError."""
        try:
            return self.signature.bind(ctx, **kwargs)
        except TypeError as exc:
            raise BindError(str(exc)) from None

    def bind_raw(self, ctx: Context, data: bytes) -> inspect.BoundArguments:
        """Bind ctx and one positional bytes argument, or raise BindError."""
        try:
            return self.signature.bind(ctx, data)
        except TypeError as exc:
            raise BindError(str(exc)) from None

    def call_json(self, ctx: Context, kwargs: Dict[str, Any]) -> Any:
        """Call the command with ctx and keyword arguments.

        Raises BindError when the arguments do not fit its parameters (the
        command did not run), and whatever the command itself raises.
        """
        if self._bind_first:
            bound = self.bind_json(ctx, kwargs)
            return self.func(*bound.args, **bound.kwargs)
        try:
            return self.func(ctx, **kwargs)
        except TypeError as exc:
            _refused_by_the_call(exc)
            raise

    def call_raw(self, ctx: Context, data: bytes) -> Any:
        """Call the command with ctx and the raw body; see call_json."""
        if self._bind_first:
            self.bind_raw(ctx, data)
            return self.func(ctx, data)
        try:
            return self.func(ctx, data)
        except TypeError as exc:
            _refused_by_the_call(exc)
            raise


def _refused_by_the_call(exc: TypeError) -> None:
    """Raise BindError if exc came from the call itself, not the command.

    Python checks a call's arguments before the function's first line:
    a TypeError from that check has no frame of the command in its
    traceback, only the caller's. One raised inside the command has more.
    """
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is None:
        raise BindError(str(exc)) from None


def commands_of(adapter: Any) -> Dict[str, Command]:
    """Every @command method of adapter, by command name."""
    attrs: Dict[str, None] = {}
    for klass in reversed(type(adapter).__mro__):
        for attr in vars(klass):
            attrs[attr] = None
    table: Dict[str, Command] = {}
    for attr in attrs:
        found = getattr(type(adapter), attr, None)
        name = getattr(found, _MARK, None)
        if not isinstance(name, str):
            continue
        if name in table:
            raise ValueError(f"two methods are named command {name!r}")
        table[name] = Command(name, getattr(adapter, attr))
    return table


def _takes_args(cls: type) -> bool:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    keyword = (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    for param in params.values():
        if param.name == "args" and param.kind in keyword:
            return True
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            return True
    return False


def resolve(spec: str) -> type:
    """Import "module:Class" (Class may be dotted) and return the class."""
    module_name, _, qualname = spec.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not isinstance(target, type):
        raise TypeError(f"adapter {spec!r} is not a class")
    return target


def load_adapter(spec: str, args: Sequence[str]) -> Any:
    """Import and construct the adapter named by "module:Class"."""
    cls = resolve(spec)
    if _takes_args(cls):
        return cls(args=list(args))
    return cls()
