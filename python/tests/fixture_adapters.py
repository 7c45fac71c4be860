"""Adapters that exist only for the tests (imported by worker processes).

Not named test_*, so unittest discovery does not collect it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, AsyncIterator, Dict, Iterator, Optional, Sequence

from snakepit_worker import Adapter, Context, command

HOOK_LOG_ENV = "FIXTURE_HOOK_LOG"


class AsyncAdapter(Adapter):
    """Coroutines, async generators and values JSON cannot hold."""

    @command
    async def add(self, ctx: Context, a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    @command
    async def wait_forever(self, ctx: Context) -> None:
        _log_line(os.environ.get(HOOK_LOG_ENV), "task started\n")
        try:
            await asyncio.sleep(3600)
        finally:
            _log_line(os.environ.get(HOOK_LOG_ENV), "task cancelled\n")

    @command
    async def countdown(self, ctx: Context,
                        n: int = 3) -> AsyncIterator[Dict[str, int]]:
        for left in range(n, 0, -1):
            await asyncio.sleep(0)
            yield {"left": left}

    @command
    def unencodable(self, ctx: Context) -> Any:
        return {"set": {1, 2}}

    @command
    def nan(self, ctx: Context) -> float:
        return float("nan")

    @command
    def huge(self, ctx: Context) -> bytes:
        return bytes(64 * 1024 * 1024)

    @command
    def pieces(self, ctx: Context) -> Iterator[bytes]:
        yield b"ab"
        yield bytearray(b"cd")

    @command
    def custom_error(self, ctx: Context) -> None:
        raise FixtureError("custom")

    @command
    def own_type_error(self, ctx: Context, n: Any = 1) -> Any:
        return n + "x"  # TypeError from inside the command

    @command
    def upload(self, ctx: Context, data: bytes) -> Dict[str, Any]:
        return {"length": len(data), "type": type(data).__name__}

    @command(name="context-info")
    def context_info(self, ctx: Context) -> Dict[str, Any]:
        return {"worker_id": ctx.worker_id, "request_id": ctx.request_id,
                "session_id": ctx.session_id, "deadline": ctx.deadline,
                "traceparent": ctx.traceparent, "command": ctx.command,
                "has_session": ctx.session is not None}

    def on_session_end(self, session_id: str, state: Dict[str, Any],
                       reason: str) -> None:
        _log_line(os.environ.get(HOOK_LOG_ENV),
                  f"hook {session_id} {reason}\n")
        raise RuntimeError("hook failure is only logged")


class FixtureError(Exception):
    pass


class PlainClass:
    """Not an Adapter subclass, and its __init__ takes no args."""

    def __init__(self) -> None:
        self.ready = True

    @command
    def hello(self, ctx: Context) -> str:
        return "hi" if self.ready else "not ready"


class NotThreadSafe(Adapter):
    @command
    def who(self, ctx: Context) -> str:
        return ctx.worker_id


class BrokenInit(Adapter):
    def __init__(self, args: Optional[Sequence[str]] = None) -> None:
        raise RuntimeError("adapter refuses to start")


def _log_line(path: Optional[str], line: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line)
    else:
        sys.stderr.write(line)
