"""analytics.heap.trim: the freed pages of a stage go back to the system before the next stage
(the command line's peak memory at 100,000 patients)."""

from __future__ import annotations

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
