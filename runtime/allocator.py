"""Keep freed memory for the next step instead of handing it back to the operating system.

A generated step allocates its arrays afresh each call (NumPy has no caching allocator; torch has
one). glibc serves large blocks with mmap and trims the heap after a free, so every step's arrays
are page-faulted in again and zeroed by the kernel: on the tiny GPT at batch 256 that was 40 % of
the step (float32 101 -> 58 ms). Raising glibc's mmap threshold to its maximum (32 MiB) and its
trim threshold to 1 GiB keeps the freed blocks in the heap, where the next step reuses them.

The cost: the process keeps its peak heap (one step's arrays) instead of returning it between steps.
It is a process-wide setting, so it is explicit: `symgrad train`, the trainer and the benchmarks call
`keep_freed_memory()`; importing a generated module never does. Elsewhere than glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # glibc's mallopt parameters (malloc.h)


def keep_freed_memory(mmap_below: int = 32 << 20, trim_above: int = 1 << 30) -> bool:
    """Ask glibc to serve blocks below `mmap_below` bytes from the heap and to keep up to
    `trim_above` free bytes there. True when it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, a static build)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_below)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_above))
