"""Version numbers, kept apart so every module can import them."""

__all__ = ["__version__", "PROTOCOL_VERSION"]

#: Version of this runtime, sent in HELLO as "runtime".
__version__ = "0.1.0"

#: Frame protocol version (schemas/FRAMES.md), sent in HELLO.
PROTOCOL_VERSION = 1
