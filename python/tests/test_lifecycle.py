"""A worker's life: sessions, SHUTDOWN, end of file, crashes, start-up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import List

from harness import (
    DEADLINE, PYTHON_DIR, SHOWCASE, FramePipe, LeakCheckedCase,
    pid_gone, poll_until, read_text, worker_command, worker_env,
)
from snakepit_worker import _frames


def count_of(frame: _frames.Frame) -> int:
    assert frame.kind == _frames.RESULT, frame
    return int(json.loads(frame.body)["count"])


class SessionTest(LeakCheckedCase):
    def setUp(self) -> None:
        super().setUp()
        self.log = self.temp_path("sessions.log")
        self.worker = self.start(
            env={"SNAKEPIT_SHOWCASE_SESSION_LOG": self.log})

    def test_state_across_calls_and_session_end(self) -> None:
        w = self.worker
        got = json.loads(w.call(1, "initialize", {"config": {"k": 1}},
                                session_id="s1").body)
        self.assertEqual(got, {"session_id": "s1", "worker_id": "t1",
                               "initialized": True})
        self.assertEqual(count_of(w.call(2, "process", session_id="s1")), 1)
        self.assertEqual(count_of(w.call(3, "process", {"data": "d"},
                                         session_id="s1")), 2)
        self.assertEqual(count_of(w.call(4, "process", session_id="s2")), 1)
        self.assertEqual(count_of(w.call(5, "process")), 1)
        self.assertEqual(count_of(w.call(6, "process", session_id="s1")), 3)

        w.send(_frames.SESSION_END, 0, {"session_id": "s1",
                                        "reason": "expired"})
        poll_until(lambda: read_text(self.log) == "s1 expired\n",
                   "the session end hook")
        # A new session under the old id starts empty.
        self.assertEqual(count_of(w.call(7, "process", session_id="s1")), 1)
        final = json.loads(w.call(8, "finalize", session_id="s2").body)
        self.assertEqual(final["count"], 1)

        w.send(_frames.SESSION_END, 0, {"session_id": "never-seen",
                                        "reason": "dropped"})
        w.send(_frames.SHUTDOWN)
        self.assertEqual(w.recv_eof(), [])
        self.assertEqual(w.wait(), 0)
        lines = read_text(self.log).splitlines()
        self.assertEqual(lines[0], "s1 expired")
        self.assertEqual(sorted(lines[1:]), ["s1 shutdown", "s2 shutdown"])
        self.assertIn("session s2 ended (shutdown)", w.stderr_text())

    def test_epochs_keep_old_and_new_leases_apart(self) -> None:
        w = self.worker
        self.assertEqual(count_of(w.call(1, "process", session_id="e",
                                         session_epoch=100)), 1)
        self.assertEqual(count_of(w.call(2, "process", session_id="e",
                                         session_epoch=100)), 2)
        # A new lease for the same id starts afresh; the old state ends.
        self.assertEqual(count_of(w.call(3, "process", session_id="e",
                                         session_epoch=200)), 1)
        poll_until(lambda: read_text(self.log) == "e reset\n",
                   "the old epoch's end hook")
        # The old lease's late SESSION_END leaves the new state alone.
        w.send(_frames.SESSION_END, 0, {"session_id": "e",
                                        "reason": "dropped",
                                        "session_epoch": 100})
        self.assertEqual(count_of(w.call(4, "process", session_id="e",
                                         session_epoch=200)), 2)
        w.send(_frames.SESSION_END, 0, {"session_id": "e",
                                        "reason": "dropped",
                                        "session_epoch": 200})
        poll_until(lambda: read_text(self.log).endswith("e dropped\n"),
                   "the new epoch's end hook")
        w.send(_frames.SHUTDOWN)
        self.assertEqual(w.recv_eof(), [])
        self.assertEqual(w.wait(), 0)

    def test_a_guest_call_neither_sees_nor_keeps_the_state(self) -> None:
        w = self.worker
        self.assertEqual(count_of(w.call(1, "process", session_id="g",
                                         session_epoch=100)), 1)
        # A hint call while another worker holds the session: its own empty
        # state, every time, and the session's state here is untouched.
        for i in (2, 3):
            self.assertEqual(count_of(w.call(i, "process", session_id="g",
                                             session_epoch=300,
                                             session_guest=True)), 1)
        self.assertEqual(count_of(w.call(4, "process", session_id="g",
                                         session_epoch=100)), 2)
        # Nor does a guest of a session unknown here leave a state behind to
        # end: only g ends at shutdown.
        self.assertEqual(count_of(w.call(5, "process", session_id="h",
                                         session_guest=True)), 1)
        w.send(_frames.SHUTDOWN)
        self.assertEqual(w.recv_eof(), [])
        self.assertEqual(w.wait(), 0)
        self.assertEqual(read_text(self.log), "g shutdown\n")


class ShutdownTest(LeakCheckedCase):
    def test_shutdown_lets_running_requests_finish(self) -> None:
        worker = self.start()
        worker.request(1, "long_running_task", {"seconds": 0.3})
        worker.send(_frames.SHUTDOWN)
        worker.request(2, "ping")
        frames = {f.id: f for f in worker.recv_eof()}
        self.assertEqual(worker.wait(), 0)
        self.assertEqual(frames[1].kind, _frames.RESULT)
        self.assertEqual(json.loads(frames[1].body)["slept"], 0.3)
        self.assertEqual(frames[2].kind, _frames.ERROR)
        self.assertEqual(frames[2].meta["reason"], "cancelled")
        self.assertIn("shutting down", frames[2].meta["message"])

    def test_pings_and_acks_still_served_while_draining(self) -> None:
        worker = self.start()
        worker.request(1, "batch_inference", {"items": [1, 2]},
                       stream=True, window=1)
        self.assertEqual(worker.recv().meta, {"seq": 1})
        worker.send(_frames.SHUTDOWN)
        worker.send(_frames.PING, 0, {"seq": 4})
        self.assertEqual(worker.recv().kind, _frames.PONG)
        worker.send(_frames.ACK, 1, {"seq": 1})
        self.assertEqual(worker.recv().meta, {"seq": 2})
        worker.send(_frames.ACK, 1, {"seq": 2})
        self.assertEqual([f.kind for f in worker.recv_eof()],
                         [_frames.END])
        self.assertEqual(worker.wait(), 0)


class ExitTest(LeakCheckedCase):
    def test_eof_exits_without_waiting_for_commands(self) -> None:
        worker = self.start()
        worker.request(1, "sleep_release", {"seconds": 3600})
        worker.request(2, "hang")  # queued, never started
        worker.close_input()
        self.assertEqual(worker.wait(), 0)
        self.assertEqual(worker.recv_eof(), [])

    def test_crash_exit_code(self) -> None:
        worker = self.start()
        worker.request(1, "crash", {"exit_code": 7})
        self.assertEqual(worker.recv_eof(), [])
        self.assertEqual(worker.wait(), 7)

    def test_broken_out_pipe_exits(self) -> None:
        worker = self.start()
        assert worker.from_fd is not None
        os.close(worker.from_fd)
        worker.from_fd = None
        worker.request(1, "ping")
        self.assertEqual(worker.wait(), 0)

    def test_bad_frame_exits_4(self) -> None:
        worker = self.start()
        worker.send_bytes(bytes.fromhex("0000000c 63 00 0000 00000000"
                                        "00000000"))
        self.assertEqual(worker.recv_eof(), [])
        self.assertEqual(worker.wait(), 4)
        self.assertIn("unknown frame kind 99", worker.stderr_text())

    def test_meta_not_an_object_exits_4(self) -> None:
        worker = self.start()
        meta = b"[1]"
        worker.send_bytes(
            (12 + len(meta)).to_bytes(4, "big") + b"\x05\x00\x00\x00"
            + bytes(4) + len(meta).to_bytes(4, "big") + meta)
        self.assertEqual(worker.wait(), 4)

    def test_spawned_child_outlives_the_command(self) -> None:
        worker = self.start()
        frame = worker.call(1, "spawn_child", {"seconds": 3600})
        pid = json.loads(frame.body)["pid"]
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as src:
                ppid = int(src.read().rsplit(")", 1)[1].split()[1])
            self.assertEqual(ppid, worker.proc.pid)
        finally:
            os.kill(pid, signal.SIGKILL)
        poll_until(lambda: pid_gone(pid), "the spawned child to end")


class StartTest(LeakCheckedCase):
    def run_worker(self, *argv: str) -> "subprocess.CompletedProcess[str]":
        return subprocess.run(
            [sys.executable, "-m", "snakepit_worker", *argv],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            cwd=PYTHON_DIR, env=worker_env(), timeout=DEADLINE)

    def test_import_error_exits_3_without_hello(self) -> None:
        worker = self.spawn(adapter="no_such_adapter_module:Thing")
        self.assertEqual(worker.recv_eof(), [])
        self.assertEqual(worker.wait(), 3)
        err = worker.stderr_text()
        self.assertIn("Traceback (most recent call last)", err)
        self.assertIn("ModuleNotFoundError", err)

    def test_failing_constructor_exits_3(self) -> None:
        worker = self.spawn(adapter="fixture_adapters:BrokenInit")
        self.assertEqual(worker.recv_eof(), [])
        self.assertEqual(worker.wait(), 3)
        self.assertIn("adapter refuses to start", worker.stderr_text())

    def test_missing_class_exits_3(self) -> None:
        worker = self.spawn(adapter="snakepit_worker.examples.showcase:Nope")
        self.assertEqual(worker.wait(), 3)
        self.assertIn("AttributeError", worker.stderr_text())

    def test_bad_usage_exits_2(self) -> None:
        cases = {
            "no worker id": ["--adapter", SHOWCASE],
            "no adapter": ["--worker-id", "w"],
            "adapter without class": ["--adapter", "mod", "--worker-id",
                                      "w"],
            "zero threads": ["--adapter", SHOWCASE, "--worker-id", "w",
                             "--threads", "0"],
            "closed descriptor": ["--adapter", SHOWCASE, "--worker-id",
                                  "w", "--in-fd", "250", "--out-fd", "251"],
            "unknown option": ["--adapter", SHOWCASE, "--worker-id", "w",
                               "--nope"],
        }
        for name, argv in cases.items():
            with self.subTest(name):
                done = self.run_worker(*argv)
                self.assertEqual(done.returncode, 2, done.stderr)
                self.assertNotEqual(done.stderr, "")


class ParentDeathTest(LeakCheckedCase):
    """The worker dies with its parent even while its pipes stay open."""

    def test_parent_death_kills_worker(self) -> None:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        fds: List[int] = [to_w, from_r]
        cmd = worker_command(SHOWCASE, "orphan", to_r, from_w)
        middle_code = (
            "import subprocess, sys, time\n"
            f"p = subprocess.Popen({cmd!r}, pass_fds=({to_r}, {from_w}))\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(3600)\n")
        middle = subprocess.Popen(
            [sys.executable, "-c", middle_code], pass_fds=(to_r, from_w),
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
            cwd=PYTHON_DIR, env=worker_env())
        os.close(to_r)
        os.close(from_w)
        worker_pid = 0
        try:
            assert middle.stdout is not None
            worker_pid = int(middle.stdout.readline())
            reader = FramePipe(from_r, None)
            self.assertEqual(reader.recv().kind, _frames.HELLO)
            middle.kill()
            middle.wait(DEADLINE)
            # This test still holds the worker's input open, so only the
            # parent-death signal can end it.
            self.assertEqual(reader.recv_eof(), [])
            poll_until(lambda: pid_gone(worker_pid), "the worker to die")
        finally:
            if middle.poll() is None:
                middle.kill()
            middle.wait(DEADLINE)
            if middle.stdout is not None:
                middle.stdout.close()
            if worker_pid and not pid_gone(worker_pid):
                os.kill(worker_pid, signal.SIGKILL)
            for fd in fds:
                os.close(fd)
