"""Test helpers: a real worker process on a pipe pair, and leak checks.

    test --os.pipe()--> [to_w]  ==>  [to_r] --in-fd-->  worker
    test <--select/read- [from_r] <== [from_w] <-out-fd- worker

The worker is started with ``python -m snakepit_worker`` and the two
child ends passed by pass_fds; its stdout and stderr go to temporary
files so no thread is needed to drain them. Every wait polls to a
deadline; nothing sleeps a fixed time to decide an outcome.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from typing import Any, Callable, Dict, List, Optional, Sequence, Set

from snakepit_worker import _frames, _json
from snakepit_worker._frames import Frame

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(TESTS_DIR)
SHOWCASE = "snakepit_worker.examples.showcase:Showcase"

#: Seconds any single wait may take before a test fails.
DEADLINE = 20.0


def worker_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    path = [PYTHON_DIR, TESTS_DIR]
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    env.update(extra or {})
    return env


def worker_command(adapter: str, worker_id: str, in_fd: int, out_fd: int,
                   threads: int = 1,
                   args: Sequence[str] = ()) -> List[str]:
    cmd = [
        sys.executable, "-m", "snakepit_worker",
        "--adapter", adapter, "--worker-id", worker_id,
        "--in-fd", str(in_fd), "--out-fd", str(out_fd),
        "--threads", str(threads),
    ]
    if args:
        cmd += ["--", *args]
    return cmd


def poll_until(check: Callable[[], Any], what: str,
               timeout: float = DEADLINE) -> Any:
    """Call check until it returns something truthy; fail at deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as src:
            return src.read()
    except FileNotFoundError:
        return ""


def pid_gone(pid: int) -> bool:
    """True once pid no longer exists or is a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as src:
            stat = src.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def child_pids(parent: int) -> Set[int]:
    """Pids whose parent is parent, read from /proc (empty elsewhere)."""
    found: Set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as src:
                fields = src.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.add(int(entry))
    return found


class FramePipe:
    """The test's ends of a frame pipe pair: send to, and recv from."""

    def __init__(self, read_fd: Optional[int],
                 write_fd: Optional[int]) -> None:
        self.from_fd = read_fd
        self.to_fd = write_fd
        self._buf = bytearray()

    # ---- frames ----------------------------------------------------

    def send(self, kind: int, frame_id: int = 0,
             meta: Optional[Dict[str, Any]] = None, body: bytes = b"",
             flags: int = 0) -> None:
        self.send_bytes(_frames.encode(kind, frame_id, meta, body, flags))

    def send_bytes(self, data: bytes) -> None:
        assert self.to_fd is not None
        _frames.write_all(self.to_fd, data)

    def request(self, frame_id: int, command: str,
                args: Optional[Dict[str, Any]] = None,
                raw: Optional[bytes] = None, **meta: Any) -> None:
        meta = {"command": command, "request_id": f"r{frame_id}", **meta}
        if raw is not None:
            self.send(_frames.REQUEST, frame_id, meta, raw, _frames.RAW)
        else:
            body = b"" if args is None else _json.dumps(args)
            self.send(_frames.REQUEST, frame_id, meta, body)

    def call(self, frame_id: int, command: str,
             args: Optional[Dict[str, Any]] = None,
             raw: Optional[bytes] = None, **meta: Any) -> Frame:
        """Send a REQUEST and return the next frame, which must answer it."""
        self.request(frame_id, command, args, raw, **meta)
        frame = self.recv()
        if frame.id != frame_id:
            raise AssertionError(f"expected an answer to {frame_id}, "
                                 f"got {frame}")
        return frame

    def recv(self, timeout: float = DEADLINE) -> Frame:
        """The next frame; EOFError at end of file, TimeoutError late."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._take()
            if frame is not None:
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame from the worker in time")
            self._fill(remaining)

    def recv_eof(self, timeout: float = DEADLINE) -> List[Frame]:
        """Read frames until end of file; return those read."""
        frames: List[Frame] = []
        while True:
            try:
                frames.append(self.recv(timeout))
            except EOFError:
                return frames

    def _fill(self, timeout: float) -> None:
        assert self.from_fd is not None
        ready, _, _ = select.select([self.from_fd], [], [], timeout)
        if not ready:
            return
        data = os.read(self.from_fd, 1 << 20)
        if not data:
            if self._buf:
                raise AssertionError(
                    f"end of file after {len(self._buf)} stray bytes")
            raise EOFError("worker closed its frame pipe")
        self._buf += data

    def _take(self) -> Optional[Frame]:
        if len(self._buf) < _frames.HEADER_SIZE:
            return None
        total = 4 + int.from_bytes(self._buf[:4], "big")
        if len(self._buf) < total:
            return None
        frame = _frames.decode(bytes(self._buf[:total]))
        del self._buf[:total]
        return frame


class WorkerProcess(FramePipe):
    """One worker subprocess and the test's ends of its frame pipes."""

    #: The HELLO frame, once LeakCheckedCase.start() has read it.
    hello: Frame

    def __init__(self, adapter: str = SHOWCASE, worker_id: str = "t1",
                 threads: int = 1, args: Sequence[str] = (),
                 env: Optional[Dict[str, str]] = None,
                 nonblocking: bool = False) -> None:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        super().__init__(from_r, to_w)
        if nonblocking:  # as a parent using an event loop might leave them
            os.set_blocking(to_r, False)
            os.set_blocking(from_w, False)
        self.stdout = tempfile.TemporaryFile()
        self.stderr = tempfile.TemporaryFile()
        cmd = worker_command(adapter, worker_id, to_r, from_w, threads,
                             args)
        try:
            self.proc = subprocess.Popen(
                cmd, pass_fds=(to_r, from_w), stdin=subprocess.DEVNULL,
                stdout=self.stdout, stderr=self.stderr, cwd=PYTHON_DIR,
                env=worker_env(env))
        finally:
            os.close(to_r)
            os.close(from_w)

    # ---- process ---------------------------------------------------

    def close_input(self) -> None:
        if self.to_fd is not None:
            os.close(self.to_fd)
            self.to_fd = None

    def wait(self, timeout: float = DEADLINE) -> int:
        return self.proc.wait(timeout)

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    def stdout_bytes(self) -> bytes:
        self.stdout.seek(0)
        return self.stdout.read()

    def close(self) -> None:
        """Close the pipes, kill the process if needed, and reap it."""
        self.close_input()
        if self.from_fd is not None:
            os.close(self.from_fd)
            self.from_fd = None
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE)

    def dispose(self) -> None:
        """close(), then drop the captured output."""
        self.close()
        self.stdout.close()
        self.stderr.close()


class LeakCheckedCase(unittest.TestCase):
    """Starts workers through spawn(); tearDown proves nothing is left.

    Left over would be: a thread this test started, a worker process not
    reaped, or any other child of this process that appeared meanwhile.
    """

    def setUp(self) -> None:
        self._threads_before = set(threading.enumerate())
        self._children_before = child_pids(os.getpid())
        self._workers: List[WorkerProcess] = []

    def temp_path(self, name: str) -> str:
        """A path in a temporary directory removed after the test."""
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        return os.path.join(tmp.name, name)

    def spawn(self, **kwargs: Any) -> WorkerProcess:
        worker = WorkerProcess(**kwargs)
        self._workers.append(worker)
        return worker

    def start(self, **kwargs: Any) -> WorkerProcess:
        """spawn() and read the HELLO frame."""
        worker = self.spawn(**kwargs)
        hello = worker.recv()
        self.assertEqual(hello.kind, _frames.HELLO, worker.stderr_text())
        worker.hello = hello
        return worker

    def tearDown(self) -> None:
        for worker in self._workers:
            worker.dispose()
        for worker in self._workers:
            self.assertIsNotNone(worker.proc.returncode)
        poll_until(self._no_new_threads, "threads to end")
        poll_until(self._no_new_children, "child processes to end")

    def _no_new_threads(self) -> bool:
        alive = {t for t in threading.enumerate() if t.is_alive()}
        return not (alive - self._threads_before)

    def _no_new_children(self) -> bool:
        return not (child_pids(os.getpid()) - self._children_before)
