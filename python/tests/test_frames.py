"""The frame codec against the test vectors of schemas/FRAMES.md."""

from __future__ import annotations

import os
import struct
import unittest
from typing import Callable, Dict

from harness import LeakCheckedCase
from snakepit_worker import _frames
from snakepit_worker._frames import Frame, FrameError, FrameReader

PING_HEX = "00000015 05 00 0000 00000000 00000009 7b22736571223a317d"
REQUEST_HEX = (
    "0000003f 02 00 0000 00000007 00000023"
    "7b22636f6d6d616e64223a2270696e67222c22726571756573745f6964223a2272227d"
    "7b226d657373616765223a226869227d"
)
RESULT_HEX = "00000010 03 01 0000 00000007 00000000 00ff6162"

VECTORS = [
    ("ping", PING_HEX,
     Frame(_frames.PING, 0, {"seq": 1}, b"", 0)),
    ("request", REQUEST_HEX,
     Frame(_frames.REQUEST, 7, {"command": "ping", "request_id": "r"},
           b'{"message":"hi"}', 0)),
    ("raw result", RESULT_HEX,
     Frame(_frames.RESULT, 7, {}, b"\x00\xff\x61\x62", _frames.RAW)),
]


def header(length: int, kind: int, flags: int = 0, frame_id: int = 0,
           meta_len: int = 0) -> bytes:
    return struct.pack(">IBBHII", length, kind, flags, 0, frame_id,
                       meta_len)


def with_meta(meta: bytes, kind: int = _frames.PING) -> bytes:
    return header(12 + len(meta), kind, meta_len=len(meta)) + meta


class VectorTest(LeakCheckedCase):
    def test_encode(self) -> None:
        for name, hex_text, frame in VECTORS:
            with self.subTest(name):
                got = _frames.encode(frame.kind, frame.id, frame.meta or None,
                                     frame.body, frame.flags)
                self.assertEqual(got.hex(), hex_text.replace(" ", ""))

    def test_decode(self) -> None:
        for name, hex_text, frame in VECTORS:
            with self.subTest(name):
                got = _frames.decode(bytes.fromhex(hex_text))
                self.assertEqual(got, frame)

    def test_raw_flag(self) -> None:
        self.assertTrue(_frames.decode(bytes.fromhex(RESULT_HEX)).raw)
        self.assertFalse(_frames.decode(bytes.fromhex(PING_HEX)).raw)

    def test_empty_meta_is_omitted(self) -> None:
        self.assertEqual(_frames.encode(_frames.SHUTDOWN, 0, {}),
                         header(12, _frames.SHUTDOWN))

    def test_round_trip_unicode_and_big_ints(self) -> None:
        meta = {"s": "h\u00e9llo \u2713", "n": 2 ** 100}
        data = _frames.encode(_frames.CHUNK, 2 ** 32 - 1, meta, b"x")
        self.assertEqual(_frames.decode(data),
                         Frame(_frames.CHUNK, 2 ** 32 - 1, meta, b"x", 0))


class BadFrameTest(LeakCheckedCase):
    def test_decode_rejects(self) -> None:
        cases = {
            "oversize length": header(_frames.MAX_LENGTH + 1, 5),
            "length shorter than a header": header(11, 5),
            "unknown kind 0": header(12, 0),
            "unknown kind 13": header(12, 13),
            "unknown kind 255": header(12, 255),
            "meta is an array": with_meta(b"[1]"),
            "meta is a string": with_meta(b'"seq"'),
            "meta is not JSON": with_meta(b"{seq:1}"),
            "meta is not UTF-8": with_meta(b'{"s":"\xff"}'),
            "meta past the frame": header(12, 5, meta_len=1),
            "truncated header": b"\x00\x00\x00",
            "length disagrees": header(12, 5) + b"extra",
        }
        for name, data in cases.items():
            with self.subTest(name):
                with self.assertRaises(FrameError):
                    _frames.decode(data)

    def test_encode_rejects(self) -> None:
        body = bytes(_frames.MAX_LENGTH - 12 + 1)
        cases: Dict[str, Callable[[], bytes]] = {
            "unknown kind": lambda: _frames.encode(99),
            "negative id": lambda: _frames.encode(5, -1),
            "id beyond 32 bits": lambda: _frames.encode(5, 2 ** 32),
            "oversize body": lambda: _frames.encode(3, 1, None, body),
            "meta not a dict": lambda: _frames.encode(
                5, 0, [1]),  # type: ignore[arg-type]
        }
        for name, call in cases.items():
            with self.subTest(name):
                with self.assertRaises(FrameError):
                    call()

    def test_largest_frame_is_accepted(self) -> None:
        body = bytes(_frames.MAX_LENGTH - 12)
        data = _frames.encode(_frames.RESULT, 1, None, body, _frames.RAW)
        self.assertEqual(int.from_bytes(data[:4], "big"), _frames.MAX_LENGTH)
        self.assertEqual(len(_frames.decode(data).body), len(body))


class ReaderTest(LeakCheckedCase):
    """FrameReader on a real pipe, fed from the test's thread."""

    def setUp(self) -> None:
        super().setUp()
        self.read_fd, self.write_fd = os.pipe()

    def tearDown(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        super().tearDown()

    def feed(self, data: bytes) -> FrameReader:
        # Small enough for the pipe buffer, so no writer thread is needed.
        _frames.write_all(self.write_fd, data)
        os.close(self.write_fd)
        return FrameReader(self.read_fd)

    def test_reads_vectors_then_eof(self) -> None:
        data = b"".join(bytes.fromhex(v[1]) for v in VECTORS)
        reader = self.feed(data)
        for name, _hex, frame in VECTORS:
            with self.subTest(name):
                self.assertEqual(reader.read(), frame)
        self.assertIsNone(reader.read())

    def test_eof_inside_a_frame(self) -> None:
        reader = self.feed(bytes.fromhex(REQUEST_HEX)[:-3])
        with self.assertRaises(FrameError):
            reader.read()

    def test_oversize_length_is_refused_before_reading_it(self) -> None:
        reader = self.feed(header(_frames.MAX_LENGTH + 1, 3))
        with self.assertRaisesRegex(FrameError, "exceeds"):
            reader.read()

    def test_unknown_kind(self) -> None:
        reader = self.feed(header(12, 42))
        with self.assertRaisesRegex(FrameError, "unknown frame kind 42"):
            reader.read()


if __name__ == "__main__":
    unittest.main()
