"""The template process: forks workers on request and reports their exits."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any, Dict, List, Tuple

from harness import (DEADLINE, SHOWCASE, FramePipe, LeakCheckedCase,
                     pid_gone, poll_until, worker_env)
from snakepit_worker import _frames


class Template:
    """A template process and the test's end of its control socket."""

    def __init__(self) -> None:
        self.sock, child = socket.socketpair(socket.AF_UNIX,
                                             socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "snakepit_worker", "--template",
             "--control-fd", str(child.fileno())],
            pass_fds=(child.fileno(),), env=worker_env(),
            stderr=subprocess.PIPE)
        child.close()
        self.sock.settimeout(DEADLINE)
        self.exits: Dict[int, int] = {}

    def spawn(self, argv: List[str]) -> Tuple[Dict[str, Any], FramePipe]:
        """Send a spawn request with fresh pipes; return the answer."""
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        out_r, out_w = os.pipe()
        msg = json.dumps({"argv": argv}).encode()
        socket.send_fds(self.sock, [msg], [to_r, from_w, out_w, out_w])
        for fd in (to_r, from_w, out_w):
            os.close(fd)
        self.outputs = getattr(self, "outputs", []) + [out_r]
        return self.answer(), FramePipe(from_r, to_w)

    def answer(self) -> Dict[str, Any]:
        """The next answer to a spawn; exits met on the way are kept."""
        while True:
            msg = self.recv()
            if "exited" not in msg:
                return msg
            self.exits[msg["exited"]] = msg["status"]

    def recv(self) -> Dict[str, Any]:
        data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError("template closed its socket")
        return json.loads(data)

    def exit_of(self, pid: int) -> int:
        while pid not in self.exits:
            msg = self.recv()
            self.exits[msg["exited"]] = msg["status"]
        return self.exits.pop(pid)

    def close(self) -> int:
        self.sock.close()
        status = self.proc.wait(DEADLINE)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        for fd in getattr(self, "outputs", []):
            os.close(fd)
        return status


def worker_argv(worker_id: str) -> List[str]:
    return ["--adapter", SHOWCASE, "--worker-id", worker_id,
            "--in-fd", "3", "--out-fd", "4", "--threads", "1"]


class TemplateTest(LeakCheckedCase):
    def setUp(self) -> None:
        super().setUp()
        self.template = Template()
        self.closed = False

    def tearDown(self) -> None:
        # Before the leak check: the template is a child of this process.
        if not self.closed:
            self.template.close()
        super().tearDown()

    def test_forks_workers_that_serve_and_reports_their_exits(self) -> None:
        workers = []
        for n in (1, 2):
            answer, pipe = self.template.spawn(worker_argv(f"w-{n}"))
            self.assertIn("spawned", answer)
            pid = answer["spawned"]
            hello = pipe.recv()
            self.assertEqual(hello.kind, _frames.HELLO)
            self.assertEqual(hello.meta["pid"], pid)
            self.assertEqual(hello.meta["worker_id"], f"w-{n}")
            self.assertEqual(os.getpgid(pid), pid)
            workers.append((pid, pipe))
        for pid, pipe in workers:
            frame = pipe.call(7, "ping", {"message": "hi"})
            self.assertEqual(frame.kind, _frames.RESULT)
            self.assertEqual(json.loads(frame.body)["pid"], pid)
        pid, pipe = workers[0]
        os.close(pipe.to_fd)  # end of file: the worker exits 0
        self.assertEqual(os.waitstatus_to_exitcode(
            self.template.exit_of(pid)), 0)
        pid, pipe = workers[1]
        os.kill(pid, 9)
        self.assertEqual(os.waitstatus_to_exitcode(
            self.template.exit_of(pid)), -9)
        os.close(pipe.to_fd)
        for _, pipe in workers:
            os.close(pipe.from_fd)

    def test_bad_requests_are_refused(self) -> None:
        socket.send_fds(self.template.sock, [b"not json"], [])
        self.assertIn("bad spawn request", self.template.answer()["failed"])
        r, w = os.pipe()
        socket.send_fds(self.template.sock,
                        [json.dumps({"argv": ["x"]}).encode()], [r])
        os.close(r)
        os.close(w)
        self.assertIn("1 descriptors", self.template.answer()["failed"])

    def test_its_workers_die_with_it(self) -> None:
        answer, pipe = self.template.spawn(worker_argv("w-1"))
        pid = answer["spawned"]
        self.assertEqual(pipe.recv().kind, _frames.HELLO)
        self.closed = True
        self.assertEqual(self.template.close(), 0)
        poll_until(lambda: pid_gone(pid), "the worker gone with its template")
        os.close(pipe.to_fd)
        os.close(pipe.from_fd)
