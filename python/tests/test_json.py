"""JSON exactness, with orjson (when installed) and with the stdlib."""

from __future__ import annotations

import json
import unittest
from typing import Any
from unittest import mock

from harness import LeakCheckedCase
from snakepit_worker import _json

SAMPLE = '{"n": 9007199254740993, "s": "h\\u00e9llo \\u2713", ' \
         '"f": 0.1, "z": null}'
BIG = 2 ** 200


class _Cases:
    """The checks; each subclass runs them on one backend."""

    assertEqual: Any
    assertIs: Any
    assertRaises: Any
    subTest: Any

    def test_sample_round_trips(self) -> None:
        value = _json.loads(SAMPLE.encode())
        want = {"n": 9007199254740993, "s": "h\u00e9llo \u2713",
                "f": 0.1, "z": None}
        self.assertEqual(value, want)
        self.assertIs(type(value["n"]), int)
        self.assertEqual(_json.loads(_json.dumps(value)), want)

    def test_big_integers_keep_their_value(self) -> None:
        for number in (BIG, -BIG, 2 ** 64 - 1, 2 ** 64, -2 ** 63 - 1,
                       10 ** 19, 10 ** 20):
            with self.subTest(number=number):
                data = _json.dumps({"n": number})
                self.assertEqual(data, b'{"n":%d}' % number)
                self.assertEqual(_json.loads(data), {"n": number})

    def test_compact_utf8_output(self) -> None:
        data = _json.dumps({"a": [1, 2], "s": "\u00e9\u2713", "t": True})
        self.assertEqual(data, '{"a":[1,2],"s":"\u00e9\u2713","t":true}'
                         .encode("utf-8"))

    def test_null_and_strings_with_null(self) -> None:
        value = {"z": None, "s": "null", "l": [None]}
        self.assertEqual(_json.loads(_json.dumps(value)), value)

    def test_nan_and_infinity_refused_on_write(self) -> None:
        for number in (float("nan"), float("inf"), float("-inf")):
            with self.subTest(number=number):
                with self.assertRaises(TypeError):
                    _json.dumps({"x": [number]})

    def test_nan_and_infinity_refused_on_read(self) -> None:
        for text in (b"NaN", b"[Infinity]", b'{"x":-Infinity}', b"1e400"):
            with self.subTest(text=text):
                with self.assertRaises(ValueError):
                    _json.loads(text)

    def test_unencodable_is_type_error(self) -> None:
        for value in ({1, 2}, object(), b"bytes"):
            with self.subTest(value=repr(value)):
                with self.assertRaises(TypeError):
                    _json.dumps(value)

    def test_lone_surrogate_round_trips_escaped(self) -> None:
        value = _json.loads(b'{"s": "a\\ud800b", "t": "\xc3\xa9"}')
        out = _json.dumps(value)
        self.assertEqual(out, b'{"s":"a\\ud800b","t":"\\u00e9"}')
        self.assertEqual(_json.loads(out), value)

    def test_bad_text_is_value_error(self) -> None:
        for text in (b"", b"{", b"\xff", b"[1,]", b"{'a': 1}"):
            with self.subTest(text=text):
                with self.assertRaises(ValueError):
                    _json.loads(text)

    def test_same_bytes_as_stdlib(self) -> None:
        value = {"k": [1, -2.5, "x", None, False], "u": "\u2713",
                 "int_key": {1: "one"}}
        want = json.dumps(value, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")
        self.assertEqual(_json.dumps(value), want)

    def test_accepts_memoryview_and_str(self) -> None:
        self.assertEqual(_json.loads(memoryview(b'{"a":1}')), {"a": 1})
        self.assertEqual(_json.loads('{"a":1}'), {"a": 1})


class StdlibJSONTest(_Cases, LeakCheckedCase):
    def setUp(self) -> None:
        super().setUp()
        patcher = mock.patch.object(_json, "_orjson", None)
        patcher.start()
        self.addCleanup(patcher.stop)


@unittest.skipUnless(_json.HAVE_ORJSON, "orjson is not installed")
class OrjsonJSONTest(_Cases, LeakCheckedCase):
    pass


if __name__ == "__main__":
    unittest.main()
