"""Python side of Snakepit for Go: the worker runtime and adapter API.

A pool agent (Go) starts ``python3 -m snakepit_worker`` once per worker
and speaks the frame protocol of schemas/FRAMES.md over a private pipe
pair; stdout and stderr stay free for the adapter's own output.

    agent --REQUEST/PING/ACK/CANCEL/SESSION_END/SHUTDOWN--> fd 3
                                                              |
                                                      reader thread
                                               (answers PING itself)
                                                              |
                                                   executor (--threads)
                                                              |
                                        adapter @command method
                                    (plain, async, generator, async gen)
                                                              |
    agent <--HELLO/RESULT/CHUNK/END/ERROR/PONG-- fd 4 <-- one write lock

Write an adapter by subclassing Adapter and marking methods @command;
each receives a Context first. See README.md for the whole guide.
"""

from ._adapter import Adapter, Context, command
from ._version import PROTOCOL_VERSION, __version__

__all__ = ["Adapter", "command", "Context", "__version__",
           "PROTOCOL_VERSION"]
