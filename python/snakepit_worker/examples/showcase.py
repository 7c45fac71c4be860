"""Showcase: the bundled example adapter, also the agent's test target.

    snakepit_worker.examples.showcase:Showcase

Groups of commands:

    basics     ping, echo, compute, long_running_task, process_batch,
               fail, crash
    sessions   initialize, process, finalize (+ on_session_end)
    streams    batch_inference, generate_report, stream_bytes,
               infinite_stream, fail_after
    testing    write_output, hang, sleep_release, spawn_child, env, args

Two environment variables let tests observe what happened inside:
SNAKEPIT_SHOWCASE_SESSION_LOG gets "<session_id> <reason>" per ended
session, SNAKEPIT_SHOWCASE_FINALLY_LOG gets "closed" each time an
infinite_stream generator is closed.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
import sys
import threading
from typing import (
    Any, Callable, Dict, Iterator, List, Optional, Sequence, Union,
)

from snakepit_worker import Adapter, Context, command

__all__ = ["Showcase"]

SESSION_LOG_ENV = "SNAKEPIT_SHOWCASE_SESSION_LOG"
FINALLY_LOG_ENV = "SNAKEPIT_SHOWCASE_FINALLY_LOG"

Number = Union[int, float]

# How often long_running_task looks for CANCEL, in seconds.
_STEP = 0.05


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _append(path: Optional[str], line: str) -> None:
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(line)


def _mean(values: List[Number]) -> float:
    if not values:
        raise ValueError("mean of an empty list")
    return sum(values) / len(values)


def _extreme(
    pick: Callable[[List[Number]], Number]
) -> Callable[[List[Number]], Number]:
    def run(values: List[Number]) -> Number:
        if not values:
            raise ValueError("min and max need at least one number")
        return pick(values)
    return run


_LIST_OPERATIONS: Dict[str, Callable[[List[Number]], Any]] = {
    "sum": sum,
    "mean": _mean,
    "min": _extreme(min),
    "max": _extreme(max),
    "product": math.prod,
}


def _numbers(value: Any) -> List[Number]:
    if _is_number(value):
        return [value]
    if isinstance(value, list) and all(_is_number(v) for v in value):
        return list(value)
    raise ValueError("compute input must be a number or a list of numbers")


def _transform(item: Any) -> Any:
    if isinstance(item, str):
        return item.upper()
    if _is_number(item):
        return item * 2
    return item


def _predict(item: Any) -> Dict[str, Any]:
    """A stable stand-in for a model: a score from the item's hash."""
    digest = hashlib.sha256(repr(item).encode("utf-8")).digest()
    score = int.from_bytes(digest[:4], "big") / 2 ** 32
    label = "positive" if score >= 0.5 else "negative"
    return {"label": label, "score": round(score, 6)}


def _write_count(stream: Any, count: int, fill: bytes) -> None:
    """Write exactly count bytes of 79-byte lines to a text stream."""
    stream.flush()
    line = fill * 79 + b"\n"
    whole, rest = divmod(count, len(line))
    out = stream.buffer
    for _ in range(whole):
        out.write(line)
    out.write(line[:rest])
    out.flush()


class Showcase(Adapter):
    """Every kind of command the runtime supports, for demos and tests."""

    thread_safe = True

    def __init__(self, args: Optional[Sequence[str]] = None) -> None:
        super().__init__(args)
        self._children_lock = threading.Lock()
        self._children: List[subprocess.Popen[bytes]] = []

    # ---- basics ----------------------------------------------------

    @command
    def ping(self, ctx: Context, message: str = "pong") -> Dict[str, Any]:
        return {"message": message, "worker_id": ctx.worker_id,
                "pid": os.getpid()}

    @command
    def echo(self, ctx: Context, /, *raw: bytes, **args: Any) -> Any:
        """Arguments back unchanged; a raw body back as the same bytes."""
        if raw:
            if len(raw) != 1 or args:
                raise TypeError("echo takes one raw body or JSON arguments")
            return raw[0]
        return args

    @command
    def compute(self, ctx: Context, input: Any = None,
                operation: str = "sum") -> Dict[str, Any]:
        if operation == "square":
            if _is_number(input):
                result: Any = input * input
            else:
                result = [v * v for v in _numbers(input)]
            return {"operation": operation, "result": result}
        run = _LIST_OPERATIONS.get(operation)
        if run is None:
            known = ", ".join(sorted([*_LIST_OPERATIONS, "square"]))
            raise ValueError(
                f"unknown operation {operation!r}; known: {known}")
        return {"operation": operation, "result": run(_numbers(input))}

    @command
    def long_running_task(self, ctx: Context, seconds: Number = 1.0,
                          data: Any = None) -> Optional[Dict[str, Any]]:
        """Sleep in steps; a CANCEL ends it early (answered cancelled)."""
        if not _is_number(seconds) or seconds < 0:
            raise ValueError("seconds must be a number of at least 0")
        remaining = float(seconds)
        while remaining > 0:
            step = min(_STEP, remaining)
            if ctx.wait(step):
                return None
            remaining -= step
        return {"slept": seconds, "data": data,
                "worker_id": ctx.worker_id}

    @command
    def process_batch(self, ctx: Context, input: Any = None,
                      items: Any = None) -> Dict[str, Any]:
        batch = items if items is not None else input
        if batch is None:
            batch = []
        if not isinstance(batch, list):
            raise ValueError("process_batch needs a list of items")
        results = [_transform(item) for item in batch]
        return {"processed": len(results), "results": results}

    @command
    def fail(self, ctx: Context,
             message: str = "failure requested") -> None:
        raise ValueError(message)

    @command
    def crash(self, ctx: Context, exit_code: int = 1) -> None:
        """Exit the whole process at once, as a segfault would."""
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(exit_code))

    # ---- sessions --------------------------------------------------

    @command
    def initialize(self, ctx: Context,
                   config: Any = None) -> Dict[str, Any]:
        if ctx.session is not None:
            ctx.session.clear()
            ctx.session.update({"config": config, "count": 0})
        return {"session_id": ctx.session_id, "worker_id": ctx.worker_id,
                "initialized": True}

    @command
    def process(self, ctx: Context, data: Any = None) -> Dict[str, Any]:
        if ctx.session is None:
            count = 1
        else:
            count = int(ctx.session.get("count", 0)) + 1
            ctx.session["count"] = count
        return {"count": count, "worker_id": ctx.worker_id,
                "session_id": ctx.session_id, "data": data}

    @command
    def finalize(self, ctx: Context) -> Dict[str, Any]:
        count = 0
        if ctx.session is not None:
            count = int(ctx.session.get("count", 0))
            ctx.session.clear()
        return {"session_id": ctx.session_id, "worker_id": ctx.worker_id,
                "count": count, "finalized": True}

    def on_session_end(self, session_id: str, state: Dict[str, Any],
                       reason: str) -> None:
        print(f"showcase: session {session_id} ended ({reason}), "
              f"count {state.get('count', 0)}", file=sys.stderr)
        _append(os.environ.get(SESSION_LOG_ENV),
                f"{session_id} {reason}\n")

    # ---- streams ---------------------------------------------------

    @command
    def batch_inference(self, ctx: Context,
                        items: Any = None) -> Iterator[Dict[str, Any]]:
        if items is None:
            items = []
        if not isinstance(items, list):
            raise ValueError("batch_inference needs a list of items")
        for index, item in enumerate(items):
            yield {"index": index, "item": item,
                   "prediction": _predict(item)}

    @command
    def generate_report(self, ctx: Context, template: str = "quarterly",
                        sections: int = 5,
                        delay_ms: Number = 100) -> Iterator[Dict[str, Any]]:
        for number in range(1, int(sections) + 1):
            if number > 1 and ctx.wait(delay_ms / 1000.0):
                return
            yield {
                "section": number,
                "of": sections,
                "template": template,
                "title": f"{template} report, section {number}",
                "content": f"Figures for part {number} of {sections}.",
            }

    @command
    def stream_bytes(self, ctx: Context, count: int = 4,
                     size: int = 262144) -> Iterator[Any]:
        """count chunks of random bytes, then their sha256 as JSON."""
        if not 0 <= size <= 32 * 1024 * 1024:
            raise ValueError("size must be between 0 and 32 MiB")
        digest = hashlib.sha256()
        total = 0
        for _ in range(int(count)):
            block = os.urandom(int(size))
            digest.update(block)
            total += len(block)
            yield block
        yield {"sha256": digest.hexdigest(), "bytes": total}

    @command
    def stream_blob(self, ctx: Context, count: int = 4,
                    size: int = 262144) -> Iterator[bytes]:
        """count chunks of one prebuilt block: streaming with no work per
        chunk, to measure the transport alone."""
        if not 0 <= size <= 32 * 1024 * 1024:
            raise ValueError("size must be between 0 and 32 MiB")
        block = bytes(int(size))
        for _ in range(int(count)):
            yield block

    @command
    def infinite_stream(self, ctx: Context,
                        delay_ms: Number = 0) -> Iterator[Dict[str, Any]]:
        """Counts until closed; the finally block logs the close."""
        number = 0
        try:
            while True:
                number += 1
                yield {"i": number}
                if delay_ms and ctx.wait(delay_ms / 1000.0):
                    return
        finally:
            _append(os.environ.get(FINALLY_LOG_ENV), "closed\n")

    @command
    def fail_after(self, ctx: Context,
                   n: int = 3) -> Iterator[Dict[str, Any]]:
        for number in range(1, int(n) + 1):
            yield {"i": number}
        raise ValueError(f"failed after {n} chunks")

    # ---- testing helpers -------------------------------------------

    @command
    def write_output(self, ctx: Context, stdout_bytes: int = 0,
                     stderr_bytes: int = 0) -> Dict[str, int]:
        _write_count(sys.stdout, int(stdout_bytes), b"o")
        _write_count(sys.stderr, int(stderr_bytes), b"e")
        return {"stdout_bytes": int(stdout_bytes),
                "stderr_bytes": int(stderr_bytes)}

    @command
    def hang(self, ctx: Context) -> None:
        """Never returns, and holds the GIL: PING goes unanswered."""
        # Exponential backtracking inside the regex engine, which keeps
        # the GIL for the whole match.
        pattern = re.compile(r"(a+)+$")
        text = "a" * 64 + "b"
        while True:
            pattern.match(text)

    @command
    def sleep_release(self, ctx: Context,
                      seconds: Number = 1.0) -> Dict[str, Any]:
        """Sleep without the GIL; ends early on CANCEL."""
        ctx.wait(float(seconds))
        return {"slept": seconds, "worker_id": ctx.worker_id}

    @command
    def spawn_child(self, ctx: Context,
                    seconds: Number = 60) -> Dict[str, int]:
        """Start a sleeping child process and leave it running."""
        code = f"import time; time.sleep({float(seconds)!r})"
        child = subprocess.Popen([sys.executable, "-c", code],
                                 stdin=subprocess.DEVNULL)
        with self._children_lock:
            self._children.append(child)
        return {"pid": child.pid}

    @command
    def env(self, ctx: Context, name: str) -> Optional[str]:
        return os.environ.get(name)

    @command(name="args")
    def adapter_arguments(self, ctx: Context) -> List[str]:
        return list(self.adapter_args)
