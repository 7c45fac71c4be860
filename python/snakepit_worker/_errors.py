"""The public error bodies a worker puts in the meta of ERROR frames.

    {"category": "worker", "reason": "python_exception",
     "message": "boom",
     "details": {"type": "ValueError", "traceback": "Traceback ..."}}

Categories and reasons are part of the wire contract; the builders below
are the only place that spells them.
"""

from __future__ import annotations

import os
import traceback
from types import TracebackType
from typing import Any, Dict, List, Optional

__all__ = [
    "ErrorBody", "error_body", "exception_body", "unknown_command",
    "bad_arguments", "cancelled", "deadline_passed", "payload_too_large",
    "requeue", "type_name",
]

ErrorBody = Dict[str, Any]

WORKER = "worker"
VALIDATION = "validation"
POOL = "pool"
TIMEOUT = "timeout"

# Error bodies travel on to NATS, whose default payload limit is 1 MB:
# keep a runaway message or traceback from filling it.
_MAX_MESSAGE = 16 * 1024
_MAX_TRACEBACK = 64 * 1024

# Frames of these files are the runtime calling the adapter; a traceback
# starts at the first frame after them.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_INTERNAL = frozenset(
    os.path.join(_PACKAGE_DIR, name)
    for name in (
        "_runtime.py", "_adapter.py", "_errors.py", "_json.py",
    )
)
# The event loop and the JSON encoder also sit between the runtime and
# the adapter's code or value.
_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__))
_SKIPPED_DIRS = tuple(
    os.path.join(_STDLIB_DIR, name) + os.sep for name in ("asyncio", "json")
)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n... ({cut} characters cut) ...\n{text[-half:]}"


def error_body(
    category: str,
    reason: str,
    message: str,
    details: Optional[Dict[str, Any]] = None,
) -> ErrorBody:
    return {
        "category": category,
        "reason": reason,
        "message": _clip(message, _MAX_MESSAGE),
        "details": details if details is not None else {},
    }


def type_name(cls: type) -> str:
    """ValueError for builtins, module.Qualified.Name otherwise."""
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", cls.__name__)
    if module in (None, "builtins"):
        return str(qualname)
    return f"{module}.{qualname}"


def _user_frames(tb: Optional[TracebackType]) -> Optional[TracebackType]:
    while tb is not None:
        filename = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if filename not in _INTERNAL and not filename.startswith(
                _SKIPPED_DIRS):
            return tb
        tb = tb.tb_next
    return None


def format_exception(exc: BaseException) -> str:
    """The traceback of exc, starting at the adapter's own frames."""
    tb = _user_frames(exc.__traceback__)
    lines = traceback.format_exception(type(exc), exc, tb)
    return _clip("".join(lines), _MAX_TRACEBACK)


def exception_body(exc: BaseException) -> ErrorBody:
    """worker/python_exception with the type and traceback of exc."""
    details = {
        "type": type_name(type(exc)),
        "traceback": format_exception(exc),
    }
    return error_body(WORKER, "python_exception", str(exc), details)


def unknown_command(name: str, known: List[str]) -> ErrorBody:
    message = f'unknown command "{name}"; known: {", ".join(known)}'
    details = {"command": name, "known": list(known)}
    return error_body(VALIDATION, "unknown_command", message, details)


def bad_arguments(name: str, problem: str) -> ErrorBody:
    message = f'bad arguments for command "{name}": {problem}'
    return error_body(
        VALIDATION, "bad_arguments", message, {"command": name})


def cancelled(name: str, why: Optional[str]) -> ErrorBody:
    message = f'command "{name}" was cancelled'
    details: Dict[str, Any] = {"command": name}
    if why:
        message = f"{message}: {why}"
        details["cancel_reason"] = why
    return error_body(WORKER, "cancelled", message, details)


def deadline_passed(name: str) -> ErrorBody:
    """A request not started because its caller's deadline had passed."""
    return error_body(
        TIMEOUT, "deadline_exceeded",
        f'command "{name}" was not started: the caller\'s deadline passed',
        {"command": name})


def requeue(name: str) -> ErrorBody:
    """A pipelined request handed back unstarted: the worker is still busy.

    The agent runs it elsewhere; callers never see this body.
    """
    return error_body(
        POOL, "requeue",
        f'command "{name}" was handed back: the worker is still busy',
        {"command": name})


def payload_too_large(name: str, size: int, limit: int) -> ErrorBody:
    message = (
        f'result of command "{name}" is {size} bytes, more than a frame '
        f"holds ({limit} bytes)"
    )
    details = {"command": name, "bytes": size, "limit": limit}
    return error_body(WORKER, "payload_too_large", message, details)
