"""The template: one interpreter per pool that forks each of its workers.

    agent --{"argv": [...]} + fds: frames in, frames out, stdout, stderr-->
    template (runtime imported, no adapter, one thread)
        | fork: the child takes the fds as 3, 4, 1, 2 and runs main(argv)
        v
    agent <--{"spawned": pid} or {"failed": "why"}-- (one per request)
    agent <--{"exited": pid, "status": wait status}-- (each child reaped)

Messages are JSON, one per packet of a SOCK_SEQPACKET socket the agent
passes as --control-fd. A forked worker skips the interpreter's start-up
and the runtime's imports; it still imports and constructs its adapter
itself, so no adapter code ever runs in the template, and a worker is the
same as one started on its own. The template exits when the agent closes
the socket; its workers, whose parent it is, then get SIGKILL.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import socket
import sys
import traceback
from typing import Any, Callable, List, Sequence, Tuple

__all__ = ["serve"]

# Received descriptors are moved above this before being put in place, so
# that putting one at 3 or 4 cannot close another not yet placed.
_HIGH_FD = 10

# Frames in, frames out, stdout, stderr.
_FDS = 4

# Seconds between reaps even when no SIGCHLD came.
_REAP_EVERY = 1.0


def serve(control_fd: int, run: Callable[[Sequence[str]], int]) -> int:
    """Fork a worker running run(argv) for each request until end of file."""
    sock = socket.socket(fileno=control_fd)
    os.set_inheritable(control_fd, False)
    # SIGCHLD only wakes the loop, through the wakeup pipe: a Python-level
    # handler could run late, when the signal lands just before the loop
    # blocks again, and an exit would wait for the next request.
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
        os.set_inheritable(fd, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _sig, _frame: None)
    while True:
        try:
            ready, _, _ = select.select([sock, wake_r], [], [], _REAP_EVERY)
        except InterruptedError:  # pragma: no cover - retried by Python
            continue
        if wake_r in ready:
            _drain(wake_r)
        _reap(sock)
        if sock not in ready:
            continue
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, _FDS)
        except OSError:
            return 0
        if not data:
            return 0
        try:
            reply = _spawn(sock, data, fds, run, (wake_r, wake_w))
        finally:
            for fd in fds:
                os.close(fd)
        _send(sock, reply)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _spawn(sock: socket.socket, data: bytes, fds: List[int],
           run: Callable[[Sequence[str]], int],
           wake: Tuple[int, int]) -> Any:
    try:
        msg = json.loads(data)
        argv = msg["argv"]
        if not isinstance(argv, list) or not all(
                isinstance(a, str) for a in argv):
            raise ValueError("argv must be a list of strings")
    except (ValueError, KeyError, TypeError) as exc:
        return {"failed": f"bad spawn request: {exc}"}
    if len(fds) != _FDS:
        return {"failed": f"spawn request with {len(fds)} descriptors, "
                          f"want {_FDS}"}
    try:
        pid = os.fork()
    except OSError as exc:
        return {"failed": f"fork: {exc}"}
    if pid == 0:
        _child(sock, fds, argv, run, wake)
    try:
        # Also done by the child: whichever runs first, the worker leads its
        # own process group before the agent hears of it.
        os.setpgid(pid, pid)
    except OSError:
        pass
    return {"spawned": pid}


def _child(sock: socket.socket, fds: List[int], argv: List[str],
           run: Callable[[Sequence[str]], int],
           wake: Tuple[int, int]) -> None:
    status = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in wake:
            os.close(fd)
        os.setpgid(0, 0)
        sock.close()
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, _HIGH_FD) for fd in fds]
        null = os.open(os.devnull, os.O_RDONLY)
        for fd, target in zip([null] + high, (0, 3, 4, 1, 2)):
            os.dup2(fd, target)
            os.close(fd)
        for fd in fds:
            if fd > 4:
                os.close(fd)
        status = run(argv)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        os._exit(status)


def _reap(sock: socket.socket) -> None:
    """Report every child that has exited."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"exited": pid, "status": status})


def _send(sock: socket.socket, msg: Any) -> None:
    try:
        sock.send(json.dumps(msg).encode("utf-8"))
    except OSError:
        pass
