"""The frame codec of protocol version 1 (schemas/FRAMES.md).

    offset  size  field
         0     4  length    bytes after this field: 12 + meta + body
         4     1  kind      HELLO .. SESSION_END
         5     1  flags     bit 0: RAW body
         6     2  reserved  written as 0, ignored when read
         8     4  id        request id, 0 for the worker itself
        12     4  meta_len  0 means no meta
        16     *  meta      a UTF-8 JSON object
         *     *  body      JSON, raw bytes (RAW) or empty

All integers are unsigned big-endian. A frame longer than 64 MiB, of an
unknown kind, or whose meta is not a JSON object raises FrameError: the
stream can no longer be trusted and the caller closes the pipe.
"""

from __future__ import annotations

import io
import os
import struct
from typing import Any, Dict, NamedTuple, NoReturn, Optional, Tuple, Union

from . import _json

__all__ = [
    "HELLO", "REQUEST", "RESULT", "ERROR", "PING", "PONG", "CHUNK", "END",
    "CANCEL", "SHUTDOWN", "ACK", "SESSION_END", "KIND_NAMES", "RAW",
    "HEADER_SIZE", "MAX_LENGTH", "Frame", "FrameError", "encode",
    "decode", "FrameReader", "write_all",
]

HELLO = 1
REQUEST = 2
RESULT = 3
ERROR = 4
PING = 5
PONG = 6
CHUNK = 7
END = 8
CANCEL = 9
SHUTDOWN = 10
ACK = 11
SESSION_END = 12

KIND_NAMES: Dict[int, str] = {
    HELLO: "HELLO", REQUEST: "REQUEST", RESULT: "RESULT", ERROR: "ERROR",
    PING: "PING", PONG: "PONG", CHUNK: "CHUNK", END: "END",
    CANCEL: "CANCEL", SHUTDOWN: "SHUTDOWN", ACK: "ACK",
    SESSION_END: "SESSION_END",
}

#: Flag bit 0: the body is raw bytes rather than JSON.
RAW = 0x01

#: Size of the fixed header, the length field included.
HEADER_SIZE = 16

#: Largest value of the length field (64 MiB).
MAX_LENGTH = 64 * 1024 * 1024

# The length field counts the 12 header bytes that follow it.
_AFTER_LENGTH = HEADER_SIZE - 4
_HEADER = struct.Struct(">IBBHII")
_U32_MAX = 0xFFFFFFFF

Bytes = Union[bytes, bytearray, memoryview]


class FrameError(ValueError):
    """A frame that breaks the layout; the pipe must be closed."""


class Frame(NamedTuple):
    """One decoded frame. meta is {} when the frame had none."""

    kind: int
    id: int
    meta: Dict[str, Any]
    body: bytes
    flags: int = 0

    @property
    def raw(self) -> bool:
        """Whether the body is raw bytes (flag RAW)."""
        return bool(self.flags & RAW)

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, str(self.kind))


def pack(kind: int, frame_id: int, meta: bytes, body: Bytes,
         flags: int) -> bytes:
    """The whole frame of parts the runtime made itself (kind, id and flags
    known good, meta already JSON); FrameError past MAX_LENGTH."""
    length = _AFTER_LENGTH + len(meta) + len(body)
    if length > MAX_LENGTH:
        raise FrameError(
            f"encode frame: length {length} exceeds {MAX_LENGTH}")
    return b"".join((
        _HEADER.pack(length, kind, flags, 0, frame_id, len(meta)), meta,
        body))


def encode(
    kind: int,
    frame_id: int = 0,
    meta: Optional[Dict[str, Any]] = None,
    body: Bytes = b"",
    flags: int = 0,
) -> bytes:
    """Return the whole frame as bytes; empty or None meta is omitted."""
    if kind not in KIND_NAMES:
        raise FrameError(f"encode frame: unknown kind {kind}")
    if not 0 <= frame_id <= _U32_MAX:
        raise FrameError(f"encode frame: id {frame_id} is not a uint32")
    if not 0 <= flags <= 0xFF:
        raise FrameError(f"encode frame: flags {flags} is not a byte")
    return pack(kind, frame_id, _encode_meta(meta), body, flags)


def _encode_meta(meta: Optional[Dict[str, Any]]) -> bytes:
    if meta is None or meta == {}:
        return b""
    if not isinstance(meta, dict):
        raise FrameError("encode frame: meta must be a dict")
    return _json.dumps(meta)


def _parse_header(header: Bytes) -> Tuple[int, int, int, int, int]:
    """Check a 16-byte header; return length, kind, flags, id, meta_len."""
    length, kind, flags, _reserved, frame_id, meta_len = _HEADER.unpack(
        header)
    if length > MAX_LENGTH:
        raise FrameError(
            f"frame length {length} exceeds the limit of {MAX_LENGTH}")
    if length < _AFTER_LENGTH:
        raise FrameError(f"frame length {length} is shorter than a header")
    if kind not in KIND_NAMES:
        raise FrameError(f"unknown frame kind {kind}")
    if meta_len > length - _AFTER_LENGTH:
        raise FrameError(
            f"meta length {meta_len} exceeds frame length {length}")
    return length, kind, flags, frame_id, meta_len


def _decode_meta(data: Bytes) -> Dict[str, Any]:
    if len(data) == 0:
        return {}
    try:
        meta = _json.loads(data)
    except ValueError as exc:
        raise FrameError(f"frame meta is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise FrameError(
            f"frame meta is a {type(meta).__name__}, not a JSON object")
    return meta


def _build(header: Tuple[int, int, int, int, int],
           payload: Bytes) -> Frame:
    """The frame of a parsed header and its payload."""
    _length, kind, flags, frame_id, meta_len = header
    if meta_len == 0:
        return Frame(kind, frame_id, {}, bytes(payload), flags)
    return Frame(kind, frame_id, _decode_meta(payload[:meta_len]),
                 bytes(payload[meta_len:]), flags)


def decode(data: Bytes) -> Frame:
    """Decode exactly one whole frame held in data."""
    view = memoryview(data)
    if len(view) < HEADER_SIZE:
        raise FrameError(f"frame of {len(view)} bytes is truncated")
    header = _parse_header(view[:HEADER_SIZE])
    if len(view) != 4 + header[0]:
        raise FrameError(
            f"frame length field says {4 + header[0]} bytes, "
            f"got {len(view)}")
    return _build(header, view[HEADER_SIZE:])


class FrameReader:
    """Reads frames from a file descriptor, blocking.

    read() returns None at a clean end of file (between frames) and raises
    FrameError for a bad frame or one cut short by the end of file.
    """

    def __init__(self, fd: int) -> None:
        self._file = io.open(fd, "rb", buffering=1 << 16, closefd=False)

    def read(self) -> Optional[Frame]:
        read = self._file.read
        data = read(HEADER_SIZE)
        if data is None or len(data) != HEADER_SIZE:
            if not data and data is not None:
                return None
            _short(data, HEADER_SIZE)
        header = _parse_header(data)
        size = header[0] - _AFTER_LENGTH
        payload = read(size) if size else b""
        if payload is None or len(payload) != size:
            _short(payload, size)
        return _build(header, payload)


def _short(data: Optional[bytes], size: int) -> NoReturn:
    """Raise the FrameError of a read that came back short."""
    if data is None:  # pragma: no cover - only for non-blocking fds
        raise FrameError("frame reader needs a blocking descriptor")
    raise FrameError(
        f"end of file inside a frame ({len(data)} of {size} bytes)")


def write_all(fd: int, data: Bytes) -> None:
    """Write every byte of data to fd, looping over partial writes."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
