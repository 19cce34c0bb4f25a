"""Keep large tensor buffers in the process heap instead of returning them to the OS after every use.

glibc serves allocations above ``M_MMAP_THRESHOLD`` (128 KiB to start with, raised adaptively) with fresh
``mmap`` pages and unmaps them on ``free``. A gradient step allocates and frees dozens of 0.5-3 MiB
activations, so each one would page-fault again on first touch: on this project's 2-core machine that was a
fifth of a gradient step's time (the ReLU and its backward, memory-bound, paid it most). Raising the mmap
threshold and the trim threshold keeps freed blocks for reuse. This changes no number, only where memory
comes from; it is a no-op off glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_done = False


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Set glibc's mmap and trim thresholds once per process; return whether it took effect."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    _done = ok
    return ok
