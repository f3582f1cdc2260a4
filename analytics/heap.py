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

:func:`small_pages` concerns the other side of a page's life, its first use, for the command
line's processes: numpy asks the kernel for transparent huge pages (2 MB) for every array of
4 MB or more, and where the kernel compacts memory to find them on demand (``defrag`` set to
``madvise``, as on Debian) each new array can stall for that. At 100,000 patients ``analyze``
spent 7-13 s of its 28-34 s in the kernel that way; with 4 KB pages, 2-6 s (the same user time,
and the same results).

Arrow's memory pool (mimalloc) does the same for its own arenas: it commits each 1 GB arena at
once and marks it for huge pages (``madvise(MADV_HUGEPAGE)``), so reading a 160 MB export at
100,000 patients took 1.6-4.3 s (1-3 s of it compaction in the kernel) instead of 0.6 s.
:func:`small_pages` therefore also sets ``MIMALLOC_ARENA_EAGER_COMMIT=0``, which mimalloc reads when
pyarrow is first imported: arenas are committed as used, in ordinary pages.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["trim", "small_pages"]

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


def small_pages() -> None:
    """Have numpy and Arrow allocate in ordinary pages, not transparent huge pages (see the
    module's docstring): sets ``NUMPY_MADVISE_HUGEPAGE=0`` for numpy imported later in this
    process and in the processes it starts (the dashboard's server), and tells an imported numpy
    too; sets ``MIMALLOC_ARENA_EAGER_COMMIT=0`` for Arrow's pool (it takes effect only where
    pyarrow is not imported yet). A value the user set is kept. Called by the command line, not by
    the library: in a notebook the process is the user's to tune."""
    os.environ.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return
    os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"
    np = sys.modules.get("numpy")
    if np is not None:
        core = getattr(np, "_core", None) or getattr(np, "core", None)
        setter = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
        if setter is not None:
            setter(False)
