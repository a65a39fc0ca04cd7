"""Memory that stays flat in long jobs: freed buffers go back to the system.

glibc serves large allocations with their own mappings (returned to the system on free)
only above a threshold that it raises, after the first such free, up to 32 MB. From then
on the request bodies and base64 strings of an image job (hundreds of KB to MB each) are
carved from the heap, and the heap's high-water mark, not the data alive, sets the
process's resident size: it kept growing with the job's length. Fixing the threshold
(which also turns the raising off) keeps RSS near what is really held.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["return_large_buffers"]

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def return_large_buffers(threshold: int = 64 * 1024) -> bool:
    """Serve allocations of ``threshold`` bytes and more from their own mappings.

    Process-wide: the ``opensearch-mm`` command calls it; a library call never does.

    Returns:
        Whether the allocator took the setting (``False`` off glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
