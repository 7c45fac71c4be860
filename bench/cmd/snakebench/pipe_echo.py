"""The pipe floor of make bench: a bare frame echo on fds 3 and 4.

    fd 3 --> 16-byte header, meta, body --> meta decoded as JSON
    fd 4 <-- RESULT frame: same id, no meta, the --reply body

Protocol-1 frames (schemas/FRAMES.md), one request at a time, on the
main thread. No runtime, no adapter, no threads: what is left is the
cost of the pipe and of framing, which every worker pays. Standard
library only. Exits 0 at end of file on fd 3, 4 on a frame it cannot
read.
"""

import argparse
import io
import json
import os
import struct
import sys

_HEADER = struct.Struct(">IBBHII")
_AFTER_LENGTH = 12
_REQUEST = 2
_RESULT = 3


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def serve(in_fd, out_fd, reply):
    reader = io.open(in_fd, "rb", buffering=1 << 16, closefd=False)
    while True:
        header = reader.read(_HEADER.size)
        if not header:
            return 0
        if len(header) != _HEADER.size:
            return 4
        length, kind, _flags, _res, frame_id, meta_len = _HEADER.unpack(
            header)
        payload = reader.read(length - _AFTER_LENGTH)
        if len(payload) != length - _AFTER_LENGTH or kind != _REQUEST:
            return 4
        meta = json.loads(payload[:meta_len]) if meta_len else {}
        if not isinstance(meta, dict):
            return 4
        answer = _HEADER.pack(_AFTER_LENGTH + len(reply), _RESULT, 0, 0,
                              frame_id, 0)
        _write_all(out_fd, answer + reply)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-fd", type=int, default=3)
    parser.add_argument("--out-fd", type=int, default=4)
    parser.add_argument("--reply", default="{}",
                        help="body of every RESULT (UTF-8)")
    opts = parser.parse_args()
    return serve(opts.in_fd, opts.out_fd, opts.reply.encode("utf-8"))


if __name__ == "__main__":
    sys.exit(main())
