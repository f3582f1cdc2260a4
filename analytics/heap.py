"""Giving freed memory back to the system between the stages of a large run.

A stage's temporaries (validation's typed copies, a model's work arrays) are freed when it ends,
but the allocators keep the pages: glibc's malloc raises its mmap threshold once a large block
is freed, so later blocks of up to 32 MB come from a heap it rarely shrinks, and Arrow's pool
keeps what its CSV reader and writer used. The process then stays at its largest stage's size,
and the next stage adds to that. :func:`trim` hands those pages back (``malloc_trim``; Arrow's
``release_unused``), so each stage starts from what is really held. At 100,000 patients the
command line's peak is then the largest stage's own, not the sum of every stage's leftovers.

It changes no result. Where glibc is not the C library (macOS, musl) only Arrow's pool is
trimmed.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["trim"]

_LIBC: list = []


def _malloc_trim():
    if not _LIBC:
        try:
            _LIBC.append(ctypes.CDLL("libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            _LIBC.append(None)
    return _LIBC[0]


def trim() -> None:
    """Return the freed pages of the C heap and of Arrow's memory pool to the system (a few
    milliseconds). A no-op for what the platform does not have."""
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        try:
            pa.default_memory_pool().release_unused()
        except Exception:  # an older Arrow without release_unused: nothing to hand back
            pass
    fn = _malloc_trim()
    if fn is not None:
        fn(0)
