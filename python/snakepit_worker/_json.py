"""JSON for frames: exact integers, compact UTF-8, no NaN.

orjson is used when it can be imported and gives the same answer as the
standard library would; everything else goes to the standard library:

    dumps(value) --orjson--> bytes          (fast path)
         |  TypeError (int beyond 64 bits, non-str key, datetime ...)
         |  or b"null" in the output (orjson writes NaN as null)
         +--stdlib json--> bytes or TypeError

    loads(data) --no run of 19+ digits--> orjson.loads
         |  a long digit run (orjson turns such integers into floats)
         |  or orjson refused the text
         +--stdlib json--> value or ValueError

Both directions refuse NaN and the infinities, so what is written is
always JSON that any reader accepts.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from typing import Any, Callable, Optional

__all__ = ["dumps", "loads", "HAVE_ORJSON"]

_orjson: Any
try:  # pragma: no cover - depends on the machine
    _orjson = importlib.import_module("orjson")
except ImportError:  # pragma: no cover - depends on the machine
    _orjson = None

#: Whether the fast path is available on this interpreter.
HAVE_ORJSON = _orjson is not None

# orjson serializes these natively where the standard library refuses or
# behaves differently; passing them through sends them to the fallback.
_ORJSON_OPTIONS = 0
if _orjson is not None:  # pragma: no branch
    _ORJSON_OPTIONS = (
        _orjson.OPT_PASSTHROUGH_DATETIME
        | _orjson.OPT_PASSTHROUGH_DATACLASS
        | _orjson.OPT_PASSTHROUGH_SUBCLASS
    )

# An integer of 19 or more digits may not fit 64 bits (-2**63 - 1 has 19);
# orjson would parse it as a float and lose its value.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")

_ASCII_ENCODER = json.JSONEncoder(
    ensure_ascii=True,
    allow_nan=False,
    separators=(",", ":"),
)
_ENCODER = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    separators=(",", ":"),
)


def dumps(value: Any) -> bytes:
    """Encode value as compact UTF-8 JSON.

    Raises TypeError for anything that has no exact JSON form: objects
    JSON does not know, NaN and infinities. A string with a lone surrogate
    is written with escapes, as JSON allows.
    """
    if _orjson is not None:
        try:
            out: bytes = _orjson.dumps(value, option=_ORJSON_OPTIONS)
        except TypeError:
            pass
        else:
            if b"null" not in out:
                return out
    return _stdlib_dumps(value)


def _stdlib_dumps(value: Any) -> bytes:
    try:
        text = _ENCODER.encode(value)
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from a "\ud800" escape in the arguments) has no
        # UTF-8 form; escaped, it goes back exactly as it came.
        return _ASCII_ENCODER.encode(value).encode("ascii")
    except TypeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise TypeError(f"value is not JSON serializable: {exc}") from exc


def loads(data: Any) -> Any:
    """Decode UTF-8 JSON text (bytes, bytearray, memoryview or str).

    Integers keep their exact value at any size. Raises ValueError for
    text that is not strict JSON (NaN and infinities included).
    """
    if isinstance(data, str):
        raw: Optional[bytes] = None
        text: Optional[str] = data
    else:
        raw = bytes(data)
        text = None
    if _orjson is not None and raw is not None:
        if not _LONG_DIGITS.search(raw):
            try:
                return _orjson.loads(raw)
            except ValueError:
                pass
    if text is None:
        assert raw is not None
        text = raw.decode("utf-8")
    return _stdlib_loads(text)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text} does not fit a double")
    return number


_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant,
    parse_float=_finite_float,
)

_decode: Callable[[str], Any] = _DECODER.decode


def _stdlib_loads(text: str) -> Any:
    try:
        return _decode(text)
    except RecursionError as exc:
        raise ValueError("JSON is nested too deeply") from exc
