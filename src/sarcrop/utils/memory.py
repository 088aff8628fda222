"""Reuse of freed memory for the large tensors of training and prediction (glibc only).

glibc's ``malloc`` serves every block above its mmap threshold (32 MiB at most) with a fresh
``mmap`` and returns it to the system on ``free``. A 256² batch of the recurrent U-Net allocates
and frees several such blocks per layer (a level-0 activation of 4 patches × 8 dates is 134 MB),
so every batch faults all of them in again, 4 KiB page by 4 KiB page, and each fault also zeroes
its page. In a virtual machine a fault is a trip to the hypervisor. Serving large blocks from the
heap and not trimming it lets the next batch reuse the memory the previous one freed: measured on
the 2-core development VM (``docs/performance.md``), a training step of 4 × 256² patches took
1.6 s instead of 3.0 s, and an inference batch 0.39 s instead of 0.71 s.

The price is memory kept after use: :func:`reuse_freed_memory` (training, evaluation) keeps the
process's peak heap until it exits; :func:`reusing_freed_memory` (prediction) serves only the
allocations made inside it from the heap, so what is kept is the model's working memory, not
that of reading and writing the map, and every ``TRIM_EVERY`` uses it hands the free pages back
(``malloc_trim``): small objects allocated between batches land in the kept blocks and would
otherwise make the heap grow slowly over a map of a country. Only the allocations of the
process's main thread are affected (glibc maps other threads' large blocks regardless).
``SARCROP_REUSE_MEMORY=0`` leaves glibc's defaults alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator

# mallopt parameters and glibc's default of the second (malloc.h, malloc.c).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536
# The heap's top goes back to the system only above this many free bytes (the largest int).
_TRIM_ABOVE = 2**31 - 1
# Uses of reusing_freed_memory() between two hand-backs of its free pages.
TRIM_EVERY = 16

_lock = threading.Lock()
_libc: ctypes.CDLL | None = None
_ready = False  # _prepare() ran (once per process); _libc is set where reuse is possible
_everywhere = False  # reuse_freed_memory() was called
_inside = 0  # threads inside reusing_freed_memory()
_uses = 0  # completed uses of reusing_freed_memory()


def reuse_freed_memory() -> bool:
    """Serve every later large allocation from the heap and keep it there when freed.

    Once per process (idempotent). Returns whether it is in effect: ``False`` off glibc
    (macOS, Windows, musl) or where ``SARCROP_REUSE_MEMORY=0`` opts out.
    """
    global _everywhere
    with _lock:
        if not _prepare():
            return False
        if not _everywhere:
            _everywhere = _set_mmap_max(0)
        return _everywhere


@contextlib.contextmanager
def reusing_freed_memory() -> Iterator[bool]:
    """Serve the large allocations made inside from the heap, and keep them there for the next
    time (e.g. one batch of a model). Yields whether it is in effect (see
    :func:`reuse_freed_memory`); safe to nest and to enter from several threads."""
    global _inside, _uses
    with _lock:
        active = _prepare()
        if active:
            _inside += 1
            if _inside == 1 and not _everywhere:
                _set_mmap_max(0)
    try:
        yield active
    finally:
        if active:
            with _lock:
                _inside -= 1
                if _inside == 0 and not _everywhere:
                    _set_mmap_max(_DEFAULT_MMAP_MAX)
                    _uses += 1
                    if _uses % TRIM_EVERY == 0:
                        assert _libc is not None
                        _libc.malloc_trim(0)


def _prepare() -> bool:
    """Find ``mallopt`` and stop trimming the heap, once; whether reuse is possible."""
    global _libc, _ready
    if _ready:
        return _libc is not None
    _ready = True
    if os.environ.get("SARCROP_REUSE_MEMORY", "1").strip() == "0":
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 -- glibc only: musl's mallopt does nothing
        mallopt = libc.mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    # Setting the trim threshold also stops glibc from moving its mmap threshold on its own.
    if mallopt(_M_TRIM_THRESHOLD, _TRIM_ABOVE):
        _libc = libc
    return _libc is not None


def _set_mmap_max(value: int) -> bool:
    assert _libc is not None
    return bool(_libc.mallopt(_M_MMAP_MAX, value))
