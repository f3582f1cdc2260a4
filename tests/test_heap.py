"""analytics.heap.trim: the freed pages of a stage go back to the system before the next stage
(the command line's peak memory at 100,000 patients); small_pages: the command line's numpy
arrays in ordinary pages (the kernel's time at 100,000 patients)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from analytics import heap

CHILD = r"""
import sys
sys.path.insert(0, {root!r})
from analytics.heap import trim

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6

blocks = [bytearray(64 * 1024) for _ in range(3000)]  # 192 MB in blocks below the mmap threshold: heap
pin = bytearray(64 * 1024)  # above them, so that freeing them cannot shrink the heap from its top
del blocks
before = rss()
trim()
print(before, rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or heap._malloc_trim() is None, reason="glibc only")
def test_trim_hands_freed_heap_pages_back(tmp_path):
    from .conftest import ROOT

    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT))], capture_output=True, text=True,
                         check=True).stdout.split()
    before, after = map(float, out)
    assert before - after > 150, (before, after)  # of the 192 MB freed, nearly all returned


def test_trim_is_a_no_op_without_glibc(monkeypatch):
    monkeypatch.setattr(heap, "_LIBC", [None])
    assert heap.trim() is None


SMALL_PAGES_CHILD = r"""
import os, sys
sys.path.insert(0, {root!r})
from analytics.cli import main
print("pyarrow" in sys.modules)  # mimalloc reads its options when pyarrow is first imported
main(["validate", {visits!r}])
print(os.environ.get("MIMALLOC_ARENA_EAGER_COMMIT"))
import numpy as np
core = getattr(np, "_core", None) or np.core
print(core.multiarray._set_madvise_hugepage(True))  # returns the setting in force until now
"""


@pytest.mark.parametrize("user_value, expected, arrow_expected",
                         [(None, "False", "0"), ("1", "True", "1")])
def test_the_command_line_keeps_numpy_and_arrow_off_huge_pages_unless_told(tmp_path, user_value, expected,
                                                                          arrow_expected):
    """A command (here ``validate``) runs with numpy's transparent huge pages off and Arrow's
    mimalloc arenas committed as used (the kernel's compaction stalls at 100,000 patients;
    analytics.heap.small_pages), unless the user set NUMPY_MADVISE_HUGEPAGE or
    MIMALLOC_ARENA_EAGER_COMMIT: then the libraries keep what they chose. pyarrow is not imported
    before the setting is made, so that mimalloc reads it."""
    from .conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("NUMPY_MADVISE_HUGEPAGE", "MIMALLOC_ARENA_EAGER_COMMIT")}
    if user_value is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = user_value
        env["MIMALLOC_ARENA_EAGER_COMMIT"] = user_value
    code = SMALL_PAGES_CHILD.format(root=str(ROOT), visits=str(ROOT / "sample_data" / "visits.csv"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=tmp_path).stdout.split()
    assert out[0] == "False"
    assert out[-2:] == [arrow_expected, expected]


def test_small_pages_tells_an_imported_numpy(monkeypatch):
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "unset")  # recorded, so that the test's value is undone
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE")
    monkeypatch.setenv("MIMALLOC_ARENA_EAGER_COMMIT", "unset")
    monkeypatch.delenv("MIMALLOC_ARENA_EAGER_COMMIT")
    before = core.multiarray._set_madvise_hugepage(True)
    try:
        heap.small_pages()
        assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == "0"
        assert os.environ["MIMALLOC_ARENA_EAGER_COMMIT"] == "0"
        assert core.multiarray._set_madvise_hugepage(True) is False
    finally:
        core.multiarray._set_madvise_hugepage(before)
