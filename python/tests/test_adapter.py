"""The adapter API in process: @command, the command table, binding."""

from __future__ import annotations

import functools
import threading
import time
import unittest
from typing import Any, Dict, List, Optional, Sequence, Tuple

from harness import LeakCheckedCase
from snakepit_worker import Adapter, Context, command
from snakepit_worker import _adapter, _errors
from snakepit_worker._adapter import BindError, commands_of, load_adapter
from snakepit_worker.examples.showcase import Showcase

SHOWCASE_COMMANDS = [
    "args", "batch_inference", "compute", "crash", "echo", "env", "fail",
    "fail_after", "finalize", "generate_report", "hang", "infinite_stream",
    "initialize", "long_running_task", "ping", "process", "process_batch",
    "sleep_release", "spawn_child", "stream_blob", "stream_bytes",
    "write_output",
]


class Sample(Adapter):
    @command
    def ping(self, ctx: Context, message: str = "pong") -> str:
        return message

    @command(name="other-name")
    def other(self, ctx: Context, /, **args: Any) -> Dict[str, Any]:
        return args

    @command
    def upload(self, ctx: Context, data: bytes) -> int:
        return len(data)

    @command
    def typed(self, ctx: Context, n: int) -> int:
        self.ran = True
        return n + 1  # a TypeError of its own when n is not a number

    def not_a_command(self, ctx: Context) -> None:
        pass


class Override(Sample):
    def ping(self, ctx: Context, message: str = "pong") -> str:
        return "no longer a command"


class NoArgs:
    def __init__(self) -> None:
        self.made = True


def ctx(name: str = "x") -> Context:
    return Context(worker_id="w", command=name)


class CommandTableTest(LeakCheckedCase):
    def test_names(self) -> None:
        self.assertEqual(sorted(commands_of(Sample())),
                         ["other-name", "ping", "typed", "upload"])

    def test_override_without_mark_drops_the_command(self) -> None:
        self.assertEqual(sorted(commands_of(Override())),
                         ["other-name", "typed", "upload"])

    def test_showcase_commands(self) -> None:
        self.assertEqual(sorted(commands_of(Showcase())), SHOWCASE_COMMANDS)

    def test_bad_names(self) -> None:
        for name in ("has space", "dot.ted", "", "star*"):
            with self.subTest(name=name):
                with self.assertRaises(ValueError):
                    command(name=name)(lambda self, ctx: None)

    def test_command_needs_ctx(self) -> None:
        class Bad(Adapter):
            @command
            def nothing(self) -> None:
                pass

        with self.assertRaisesRegex(TypeError, "ctx"):
            commands_of(Bad())

    def test_duplicate_names(self) -> None:
        class Twice(Adapter):
            @command(name="same")
            def one(self, ctx: Context) -> None:
                pass

            @command(name="same")
            def two(self, ctx: Context) -> None:
                pass

        with self.assertRaisesRegex(ValueError, "same"):
            commands_of(Twice())


class BindTest(LeakCheckedCase):
    def setUp(self) -> None:
        super().setUp()
        self.table = commands_of(Sample())

    def test_json_binding(self) -> None:
        c = ctx()
        bound = self.table["ping"].bind_json(c, {"message": "hi"})
        self.assertEqual(bound.args, (c, "hi"))
        bound = self.table["other-name"].bind_json(c, {"a-b": 1, "ctx": 2})
        self.assertEqual(bound.kwargs, {"a-b": 1, "ctx": 2})

    def test_json_binding_errors(self) -> None:
        cases: Dict[str, Tuple[str, Dict[str, Any], str]] = {
            "unexpected": ("ping", {"nope": 1}, "nope"),
            "missing": ("upload", {}, "data"),
        }
        for name, (cmd, kwargs, word) in cases.items():
            with self.subTest(name):
                with self.assertRaisesRegex(BindError, word):
                    self.table[cmd].bind_json(ctx(), kwargs)

    def test_raw_binding(self) -> None:
        c = ctx()
        bound = self.table["upload"].bind_raw(c, b"\x00\x01")
        self.assertEqual(bound.args, (c, b"\x00\x01"))
        with self.assertRaises(BindError):
            self.table["other-name"].bind_raw(c, b"x")


class CallTest(LeakCheckedCase):
    def setUp(self) -> None:
        super().setUp()
        self.adapter = Sample()
        self.table = commands_of(self.adapter)

    def test_calls(self) -> None:
        self.assertEqual(self.table["ping"].call_json(ctx(), {}), "pong")
        self.assertEqual(
            self.table["ping"].call_json(ctx(), {"message": "hi"}), "hi")
        self.assertEqual(
            self.table["other-name"].call_json(ctx(), {"a-b": 1}),
            {"a-b": 1})
        self.assertEqual(self.table["upload"].call_raw(ctx(), b"abc"), 3)

    def test_arguments_that_do_not_fit_never_run_the_command(self) -> None:
        with self.assertRaisesRegex(BindError, "nope"):
            self.table["typed"].call_json(ctx(), {"n": 1, "nope": 2})
        with self.assertRaisesRegex(BindError, "n"):
            self.table["typed"].call_json(ctx(), {})
        with self.assertRaises(BindError):
            self.table["other-name"].call_raw(ctx(), b"x")
        self.assertFalse(hasattr(self.adapter, "ran"))

    def test_a_wrapper_never_runs_with_arguments_that_do_not_fit(
            self) -> None:
        calls: List[str] = []

        def logged(func: Any) -> Any:
            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                calls.append(func.__name__)
                return func(*args, **kwargs)
            return wrapper

        class Wrapped(Adapter):
            @command
            @logged
            def add(self, ctx: Context, a: int, b: int = 1) -> int:
                return a + b

        add = commands_of(Wrapped())["add"]
        with self.assertRaisesRegex(BindError, "a"):
            add.call_json(ctx(), {"b": 2})
        self.assertEqual(calls, [])
        self.assertEqual(add.call_json(ctx(), {"a": 2}), 3)
        self.assertEqual(calls, ["add"])

    def test_a_key_named_self_does_not_fit(self) -> None:
        class Keys(Adapter):
            @command
            def kw(self, ctx: Context, **kw: Any) -> Dict[str, Any]:
                return kw

        with self.assertRaisesRegex(BindError, "self"):
            commands_of(Keys())["kw"].call_json(ctx(), {"self": 1})

    def test_the_commands_own_type_error_is_not_a_bind_error(self) -> None:
        with self.assertRaises(TypeError) as caught:
            self.table["typed"].call_json(ctx(), {"n": "one"})
        self.assertNotIsInstance(caught.exception, BindError)
        self.assertTrue(self.adapter.ran)


class ContextTest(LeakCheckedCase):
    def test_cancel(self) -> None:
        c = ctx()
        self.assertFalse(c.cancelled)
        self.assertFalse(c.wait(0))
        c.cancel("caller left")
        c.cancel("second reason is ignored")
        self.assertTrue(c.cancelled)
        self.assertTrue(c.wait(10))
        self.assertEqual(c.cancel_reason, "caller left")

    def test_cancel_wakes_a_waiter(self) -> None:
        c = ctx()
        woke: List[bool] = []
        waiter = threading.Thread(target=lambda: woke.append(c.wait(30)))
        waiter.start()
        time.sleep(0.05)
        began = time.monotonic()
        c.cancel("stop")
        waiter.join(5)
        self.assertFalse(waiter.is_alive())
        self.assertEqual(woke, [True])
        self.assertLess(time.monotonic() - began, 5)


class LoadTest(LeakCheckedCase):
    def test_args_are_passed_when_accepted(self) -> None:
        adapter = load_adapter(
            "snakepit_worker.examples.showcase:Showcase", ["a", "b"])
        self.assertEqual(adapter.adapter_args, ["a", "b"])

    def test_class_without_args(self) -> None:
        adapter = load_adapter(f"{__name__}:NoArgs", ["ignored"])
        self.assertTrue(adapter.made)

    def test_nested_and_missing(self) -> None:
        with self.assertRaises(ModuleNotFoundError):
            load_adapter("no_such_module_for_tests:X", [])
        with self.assertRaises(AttributeError):
            load_adapter(f"{__name__}:Missing", [])
        with self.assertRaises(TypeError):
            load_adapter(f"{__name__}:ctx", [])

    def test_takes_args(self) -> None:
        class Keyword:
            def __init__(self, *, args: Optional[Sequence[str]]) -> None:
                pass

        class Star:
            def __init__(self, *args: Any) -> None:
                pass

        class Kwargs:
            def __init__(self, **kw: Any) -> None:
                pass

        self.assertTrue(_adapter._takes_args(Keyword))
        self.assertFalse(_adapter._takes_args(Star))
        self.assertTrue(_adapter._takes_args(Kwargs))


class ErrorBodyTest(LeakCheckedCase):
    def test_type_names(self) -> None:
        self.assertEqual(_errors.type_name(ValueError), "ValueError")
        self.assertEqual(_errors.type_name(BindError),
                         "snakepit_worker._adapter.BindError")

    def test_exception_body(self) -> None:
        try:
            raise ValueError("boom")
        except ValueError as exc:
            body = _errors.exception_body(exc)
        self.assertEqual(body["category"], "worker")
        self.assertEqual(body["reason"], "python_exception")
        self.assertEqual(body["message"], "boom")
        self.assertEqual(body["details"]["type"], "ValueError")
        self.assertIn("ValueError: boom", body["details"]["traceback"])

    def test_long_message_is_clipped(self) -> None:
        body = _errors.error_body("worker", "x", "m" * 10 ** 6)
        self.assertLess(len(body["message"]), 20000)
        self.assertIn("characters cut", body["message"])


if __name__ == "__main__":
    unittest.main()
