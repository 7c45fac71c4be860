"""Command line of a worker process, as the agent starts it.

    python3 -m snakepit_worker --adapter MODULE:CLASS --worker-id ID
        [--in-fd 3] [--out-fd 4] [--threads N] [-- ADAPTER_ARGS...]
    python3 -m snakepit_worker --template --control-fd FD

The second form is a pool's template, which forks workers that run the
first form's arguments (see _template).

Exit status: 0 after SHUTDOWN or when the agent closed the pipes, 1 when
the runtime failed, 2 for a bad command line, 3 when the adapter could
not be imported or constructed (traceback on stderr, no HELLO), 4 when
the agent sent a frame that breaks the layout.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import sys
import traceback
from typing import List, NoReturn, Optional, Sequence, Tuple

from . import _runtime
from ._adapter import load_adapter
from ._runtime import EXIT_ADAPTER, EXIT_INTERNAL, EXIT_USAGE, Worker

_PR_SET_PDEATHSIG = 1
_SIGKILL = 9

log = logging.getLogger("snakepit_worker")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m snakepit_worker",
        description="Serve a snakepit adapter over a pair of frame pipes.",
        epilog="Words after -- are passed to the adapter as args=[...].",
    )
    parser.add_argument("--adapter", required=True, metavar="MODULE:CLASS",
                        type=_adapter_spec,
                        help="adapter class to import and construct")
    parser.add_argument("--worker-id", required=True, metavar="ID",
                        help="worker id, sent in HELLO and in Context")
    parser.add_argument("--in-fd", type=_fd, default=3, metavar="FD",
                        help="descriptor frames are read from (default 3)")
    parser.add_argument("--out-fd", type=_fd, default=4, metavar="FD",
                        help="descriptor frames are written to (default 4)")
    parser.add_argument("--threads", type=_positive, default=1,
                        metavar="N",
                        help="requests run at once (default 1)")
    return parser


def _adapter_spec(text: str) -> str:
    module, sep, name = text.partition(":")
    if not sep or not module or not name:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not MODULE:CLASS")
    return text


def _fd(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a descriptor")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return value


def _split(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Runtime options before the first --, adapter args after it."""
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def _setup_stdio() -> None:
    # Adapters print; the agent drains stdout line by line.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(line_buffering=True)
        except (ValueError, OSError):  # pragma: no cover - odd stdout
            pass
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("snakepit_worker: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        pass


def _check_fds(*fds: int) -> Optional[str]:
    for fd in fds:
        try:
            os.fstat(fd)
        except OSError as exc:
            return f"descriptor {fd} is not open: {exc.strerror}"
        # Children of the adapter must not hold the frame pipes open, and
        # the runtime reads and writes whole frames with blocking calls.
        os.set_inheritable(fd, False)
        os.set_blocking(fd, True)
    if len(set(fds)) != len(fds):
        return "--in-fd and --out-fd must differ"
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run a worker; return its exit status."""
    parent = os.getppid()
    runtime_argv, adapter_args = _split(
        sys.argv[1:] if argv is None else argv)
    try:
        opts = _parser().parse_args(runtime_argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    _setup_stdio()
    problem = _check_fds(opts.in_fd, opts.out_fd)
    if problem is not None:
        log.error("%s", problem)
        return EXIT_USAGE

    _die_with_parent()
    if os.getppid() != parent:
        log.error("parent process exited during start; exiting")
        return EXIT_INTERNAL

    try:
        adapter = load_adapter(opts.adapter, adapter_args)
        worker = Worker(adapter, opts.adapter, opts.worker_id,
                        opts.in_fd, opts.out_fd, opts.threads)
    except BaseException:
        traceback.print_exc()
        print(f"snakepit_worker: cannot load adapter {opts.adapter}",
              file=sys.stderr)
        return EXIT_ADAPTER
    if opts.threads > 1 and not getattr(type(adapter), "thread_safe",
                                        False):
        log.warning("running %d threads for adapter %s, which is not "
                    "marked thread_safe", opts.threads, opts.adapter)
    return worker.run()


def _exit(status: int) -> NoReturn:
    # os._exit: executor threads may still be inside a command, and
    # nobody is waiting for their answers.
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def _template_main(argv: Sequence[str]) -> int:
    from . import _template

    if len(argv) != 3 or argv[1] != "--control-fd":
        print("usage: python3 -m snakepit_worker --template --control-fd FD",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        fd = _fd(argv[2])
    except (ValueError, argparse.ArgumentTypeError) as exc:
        print(f"snakepit_worker: --control-fd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _die_with_parent()
    return _template.serve(fd, main)


if __name__ == "__main__":
    try:
        if sys.argv[1:2] == ["--template"]:
            code = _template_main(sys.argv[1:])
        else:
            code = main()
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        traceback.print_exc()
        code = _runtime.EXIT_INTERNAL
    _exit(code)
