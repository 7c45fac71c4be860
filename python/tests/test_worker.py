"""A real worker process: handshake, requests, errors and heartbeats."""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any, Dict, List, Tuple
import unittest

from harness import SHOWCASE, LeakCheckedCase, poll_until, read_text
from snakepit_worker import _frames
from test_adapter import SHOWCASE_COMMANDS

FIXTURES = "fixture_adapters"


def result(frame: _frames.Frame) -> Any:
    assert frame.kind == _frames.RESULT, frame
    return json.loads(frame.body)  # the stdlib keeps big ints exact


class HandshakeTest(LeakCheckedCase):
    def test_hello(self) -> None:
        worker = self.start(threads=3)
        hello = worker.hello
        self.assertEqual(hello.id, 0)
        self.assertEqual(hello.body, b"")
        meta = hello.meta
        self.assertEqual(meta["protocol"], 1)
        self.assertEqual(meta["pid"], worker.proc.pid)
        self.assertEqual(meta["worker_id"], "t1")
        self.assertEqual(meta["python"], platform.python_version())
        self.assertEqual(meta["adapter"], SHOWCASE)
        self.assertEqual(meta["commands"], SHOWCASE_COMMANDS)
        self.assertIs(meta["thread_safe"], True)
        self.assertEqual(meta["runtime"], "0.1.0")
        self.assertEqual(meta["threads"], 3)

    def test_not_thread_safe_still_runs_with_threads(self) -> None:
        worker = self.start(adapter=f"{FIXTURES}:NotThreadSafe", threads=2)
        self.assertIs(worker.hello.meta["thread_safe"], False)
        self.assertEqual(worker.hello.meta["threads"], 2)
        self.assertEqual(result(worker.call(1, "who")), "t1")
        worker.close()
        self.assertIn("not marked thread_safe", worker.stderr_text())

    def test_plain_class_without_args(self) -> None:
        worker = self.start(adapter=f"{FIXTURES}:PlainClass", args=["x"])
        self.assertEqual(worker.hello.meta["commands"], ["hello"])
        self.assertEqual(result(worker.call(1, "hello")), "hi")

    def test_nonblocking_descriptors_are_made_blocking(self) -> None:
        worker = self.start(nonblocking=True)
        data = os.urandom(1 << 20)
        frame = worker.call(1, "echo", raw=data)
        self.assertEqual(frame.body, data, worker.stderr_text())

    def test_adapter_args(self) -> None:
        worker = self.start(args=["--flag", "value", "--"])
        self.assertEqual(result(worker.call(1, "args")),
                         ["--flag", "value", "--"])


class RequestTest(LeakCheckedCase):
    def setUp(self) -> None:
        super().setUp()
        self.worker = self.start(env={"SNAKEPIT_TEST_VALUE": "v\u00e9"})

    def test_ping(self) -> None:
        frame = self.worker.call(1, "ping", {"message": "hi"})
        self.assertEqual(frame.flags, 0)
        self.assertEqual(result(frame), {
            "message": "hi", "worker_id": "t1",
            "pid": self.worker.proc.pid})
        self.assertEqual(result(self.worker.call(2, "ping"))["message"],
                         "pong")

    def test_echo_is_exact(self) -> None:
        text = ('{"n": 9007199254740993, "s": "h\\u00e9llo \\u2713", '
                '"f": 0.1, "z": null, "big": %d, "neg": -%d, '
                '"nested": [{"x": 1.5e300}, [], {}]}' % (2 ** 200, 2 ** 70))
        frame = self.worker.call(1, "echo", json.loads(text))
        self.assertEqual(result(frame), json.loads(text))
        self.assertIn(b"9007199254740993", frame.body)
        self.assertIn("h\u00e9llo \u2713".encode("utf-8"), frame.body)

    def test_raw_echo(self) -> None:
        data = bytes(range(256)) * 1024 + b"\xff\x00"
        frame = self.worker.call(1, "echo", raw=data)
        self.assertEqual(frame.kind, _frames.RESULT)
        self.assertTrue(frame.raw)
        self.assertEqual(frame.body, data)

    def test_empty_raw_body(self) -> None:
        frame = self.worker.call(1, "echo", raw=b"")
        self.assertTrue(frame.raw)
        self.assertEqual(frame.body, b"")

    def test_fail(self) -> None:
        frame = self.worker.call(1, "fail", {"message": "boom"})
        self.assertEqual(frame.kind, _frames.ERROR)
        meta = frame.meta
        self.assertEqual(meta["category"], "worker")
        self.assertEqual(meta["reason"], "python_exception")
        self.assertEqual(meta["message"], "boom")
        self.assertEqual(meta["details"]["type"], "ValueError")
        trace = meta["details"]["traceback"]
        self.assertTrue(trace.startswith("Traceback (most recent call"))
        self.assertIn("showcase.py", trace)
        self.assertIn("ValueError: boom", trace)
        self.assertNotIn("_runtime.py", trace)

    def test_unknown_command(self) -> None:
        frame = self.worker.call(1, "x")
        self.assertEqual(frame.kind, _frames.ERROR)
        self.assertEqual(frame.meta["category"], "validation")
        self.assertEqual(frame.meta["reason"], "unknown_command")
        self.assertEqual(frame.meta["details"],
                         {"command": "x", "known": SHOWCASE_COMMANDS})
        self.assertTrue(frame.meta["message"].startswith(
            'unknown command "x"; known: args, batch_inference, '))

    def test_bad_arguments(self) -> None:
        cases = {
            "unexpected": (b'{"nope": 1}', "nope"),
            "array body": (b"[1, 2]", "JSON object"),
            "not JSON": (b"{nope", "not valid JSON"),
            "NaN": (b'{"message": NaN}', "not valid JSON"),
        }
        for number, (name, (body, word)) in enumerate(cases.items(), 1):
            with self.subTest(name):
                self.worker.send(_frames.REQUEST, number,
                                 {"command": "ping"}, body)
                frame = self.worker.recv()
                self.assertEqual(frame.id, number)
                self.assertEqual(frame.kind, _frames.ERROR)
                self.assertEqual(frame.meta["category"], "validation")
                self.assertEqual(frame.meta["reason"], "bad_arguments")
                self.assertIn(word, frame.meta["message"])
        frame = self.worker.call(9, "env")
        self.assertEqual(frame.meta["reason"], "bad_arguments")
        self.assertIn("name", frame.meta["message"])

    def test_compute_and_batch(self) -> None:
        cases: List[Tuple[Dict[str, Any], Any]] = [
            ({"input": [1, 2, 3, 4]}, 10),
            ({"input": [1, 2, 3, 4], "operation": "mean"}, 2.5),
            ({"input": [3, 1, 2], "operation": "min"}, 1),
            ({"input": [3, 1, 2], "operation": "max"}, 3),
            ({"input": [2 ** 40, 2 ** 40], "operation": "product"},
             2 ** 80),
            ({"input": 12, "operation": "square"}, 144),
        ]
        for number, (args, want) in enumerate(cases, 1):
            with self.subTest(args=args):
                got = result(self.worker.call(number, "compute", args))
                self.assertEqual(got["result"], want)
        frame = self.worker.call(20, "compute", {"operation": "cube",
                                                 "input": [1]})
        self.assertEqual(frame.meta["details"]["type"], "ValueError")
        got = result(self.worker.call(21, "process_batch",
                                      {"items": ["a", 2, None]}))
        self.assertEqual(got, {"processed": 3, "results": ["A", 4, None]})
        got = result(self.worker.call(22, "process_batch",
                                      {"input": [1.5]}))
        self.assertEqual(got, {"processed": 1, "results": [3.0]})

    def test_env_and_output(self) -> None:
        self.assertEqual(
            result(self.worker.call(1, "env",
                                    {"name": "SNAKEPIT_TEST_VALUE"})),
            "v\u00e9")
        got = result(self.worker.call(2, "write_output",
                                      {"stdout_bytes": 1000,
                                       "stderr_bytes": 10}))
        self.assertEqual(got, {"stdout_bytes": 1000, "stderr_bytes": 10})
        out = self.worker.stdout_bytes()
        self.assertEqual(len(out), 1000)
        self.assertEqual(set(out), {ord("o"), ord("\n")})

    def test_ping_pong_while_a_command_sleeps(self) -> None:
        self.worker.request(1, "sleep_release", {"seconds": 60})
        for seq in (1, 2, 2 ** 70):
            self.worker.send(_frames.PING, 0, {"seq": seq})
            frame = self.worker.recv()
            self.assertEqual((frame.kind, frame.id, frame.meta),
                             (_frames.PONG, 0, {"seq": seq}))
        self.worker.send(_frames.CANCEL, 1, {"reason": "test is done"})
        frame = self.worker.recv()
        self.assertEqual(frame.id, 1)
        self.assertEqual(frame.meta["reason"], "cancelled")
        self.assertEqual(frame.meta["details"]["cancel_reason"],
                         "test is done")

    def test_cancel_a_plain_command(self) -> None:
        self.worker.request(1, "long_running_task", {"seconds": 60})
        self.worker.request(2, "ping")  # queued behind it: one thread
        self.worker.send(_frames.CANCEL, 2)
        self.worker.send(_frames.CANCEL, 1)
        answers = {f.id: f for f in (self.worker.recv(),
                                     self.worker.recv())}
        for frame_id in (1, 2):
            self.assertEqual(answers[frame_id].kind, _frames.ERROR)
            self.assertEqual(answers[frame_id].meta["category"], "worker")
            self.assertEqual(answers[frame_id].meta["reason"], "cancelled")
        self.worker.send(_frames.CANCEL, 99)  # unknown id: ignored
        self.assertEqual(result(self.worker.call(3, "ping"))["message"],
                         "pong")

    def test_pipelined_request_runs_after_a_short_one(self) -> None:
        self.worker.request(1, "long_running_task", {"seconds": 0.005})
        self.worker.request(2, "ping", pipelined=True)
        first, second = self.worker.recv(), self.worker.recv()
        self.assertEqual((first.id, first.kind), (1, _frames.RESULT))
        self.assertEqual((second.id, second.kind), (2, _frames.RESULT))
        self.assertEqual(result(second)["message"], "pong")

    def test_pipelined_request_behind_a_long_one_comes_back(self) -> None:
        self.worker.request(1, "long_running_task", {"seconds": 60})
        self.worker.request(2, "ping", pipelined=True)
        frame = self.worker.recv()  # the standby reader hands it back
        self.assertEqual((frame.id, frame.kind), (2, _frames.ERROR))
        self.assertEqual((frame.meta["category"], frame.meta["reason"]),
                         ("pool", "requeue"))
        # Not pipelined, the same request waits its turn instead.
        self.worker.request(3, "ping")
        self.worker.send(_frames.CANCEL, 1)
        answers = {f.id: f for f in (self.worker.recv(),
                                     self.worker.recv())}
        self.assertEqual(answers[1].meta["reason"], "cancelled")
        self.assertEqual(result(answers[3])["message"], "pong")

    def test_request_past_its_deadline_is_not_started(self) -> None:
        self.worker.request(1, "long_running_task", {"seconds": 0.2})
        deadline_ms = int(time.time() * 1000) + 50
        self.worker.request(2, "ping", deadline_ms=deadline_ms)
        first, second = self.worker.recv(), self.worker.recv()
        self.assertEqual((first.id, first.kind), (1, _frames.RESULT))
        self.assertEqual((second.id, second.kind), (2, _frames.ERROR))
        self.assertEqual(
            (second.meta["category"], second.meta["reason"]),
            ("timeout", "deadline_exceeded"))

    def test_long_running_task_finishes(self) -> None:
        got = result(self.worker.call(1, "long_running_task",
                                      {"seconds": 0.1, "data": [1]}))
        self.assertEqual(got, {"slept": 0.1, "data": [1],
                               "worker_id": "t1"})

    def test_context_fields(self) -> None:
        worker = self.start(adapter=f"{FIXTURES}:AsyncAdapter")
        frame = worker.call(1, "context-info", session_id="s",
                            deadline_ms=4102444800123,
                            traceparent="00-ab-cd-01")
        self.assertEqual(result(frame), {
            "worker_id": "t1", "request_id": "r1", "session_id": "s",
            "deadline": 4102444800.123, "traceparent": "00-ab-cd-01",
            "command": "context-info", "has_session": True})
        frame = worker.call(2, "context-info")
        self.assertEqual(result(frame)["session_id"], None)
        self.assertEqual(result(frame)["has_session"], False)


class ThreadsTest(LeakCheckedCase):
    def test_two_threads_run_two_requests_at_once(self) -> None:
        worker = self.start(threads=2)
        worker.request(1, "sleep_release", {"seconds": 60})
        frame = worker.call(2, "ping")
        self.assertEqual(result(frame)["message"], "pong")
        worker.send(_frames.CANCEL, 1)
        self.assertEqual(worker.recv().meta["reason"], "cancelled")


class ValueTest(LeakCheckedCase):
    """Coroutines and results that need care, on the fixture adapter."""

    def setUp(self) -> None:
        super().setUp()
        self.log = self.temp_path("hook.log")
        self.worker = self.start(adapter=f"{FIXTURES}:AsyncAdapter",
                                 env={"FIXTURE_HOOK_LOG": self.log})

    def test_coroutine(self) -> None:
        self.assertEqual(result(self.worker.call(1, "add", {"a": 2 ** 65,
                                                             "b": 1})),
                         2 ** 65 + 1)

    def test_cancel_cancels_the_task(self) -> None:
        self.worker.request(1, "wait_forever")
        poll_until(lambda: read_text(self.log), "the task to start")
        self.worker.send(_frames.CANCEL, 1)
        frame = self.worker.recv()
        self.assertEqual(frame.meta["reason"], "cancelled")
        self.assertEqual(read_text(self.log),
                         "task started\ntask cancelled\n")

    def test_unencodable_results(self) -> None:
        for number, name in enumerate(("unencodable", "nan"), 1):
            with self.subTest(name):
                frame = self.worker.call(number, name)
                self.assertEqual(frame.kind, _frames.ERROR)
                self.assertEqual(frame.meta["reason"], "python_exception")
                self.assertEqual(frame.meta["details"]["type"],
                                 "TypeError")

    def test_result_too_large(self) -> None:
        frame = self.worker.call(1, "huge")
        self.assertEqual(frame.kind, _frames.ERROR)
        self.assertEqual(frame.meta["reason"], "payload_too_large")

    def test_generator_without_stream_collects_bytes(self) -> None:
        frame = self.worker.call(1, "pieces")
        self.assertTrue(frame.raw)
        self.assertEqual(frame.body, b"abcd")

    def test_async_generator_without_stream(self) -> None:
        frame = self.worker.call(1, "countdown", {"n": 3})
        self.assertEqual(result(frame),
                         [{"left": 3}, {"left": 2}, {"left": 1}])

    def test_qualified_error_type(self) -> None:
        frame = self.worker.call(1, "custom_error")
        self.assertEqual(frame.meta["details"]["type"],
                         "fixture_adapters.FixtureError")

    def test_type_error_inside_a_command_is_its_failure(self) -> None:
        frame = self.worker.call(1, "own_type_error", {"n": 2})
        self.assertEqual(frame.meta["category"], "worker")
        self.assertEqual(frame.meta["reason"], "python_exception")
        self.assertEqual(frame.meta["details"]["type"], "TypeError")
        frame = self.worker.call(2, "own_type_error", {"m": 2})
        self.assertEqual(frame.meta["reason"], "bad_arguments")
        self.assertIn("m", frame.meta["message"])

    def test_raw_upload(self) -> None:
        frame = self.worker.call(1, "upload", raw=b"\x00" * 70000)
        self.assertEqual(result(frame), {"length": 70000, "type": "bytes"})
        frame = self.worker.call(2, "upload", {"data": "text"})
        self.assertEqual(result(frame), {"length": 4, "type": "str"})

    def test_failing_session_hook_is_logged(self) -> None:
        self.worker.call(1, "add", {"a": 1, "b": 1}, session_id="s9")
        self.worker.send(_frames.SESSION_END, 0,
                         {"session_id": "s9", "reason": "expired"})
        self.worker.send(_frames.SHUTDOWN)
        self.assertEqual(self.worker.recv_eof(), [])
        self.assertEqual(self.worker.wait(), 0)
        with open(self.log, encoding="utf-8") as src:
            self.assertEqual(src.read(), "hook s9 expired\n")
        self.assertIn("hook failure is only logged",
                      self.worker.stderr_text())


if __name__ == "__main__":
    unittest.main()
