"""Benchmark: the memory each stage of `analyze` needs, on one process. Prints a table; asserts nothing.

    .venv/bin/python benchmarks/bench_memory.py [--patients 100000]

Issue 13's memory target (1 GB at 100,000 patients) is the peak resident set of the whole
command, which is the largest (memory held when a stage starts) + (what the stage adds while
it runs) over the stages. This finds each term: before each stage the freed heap is returned to
the system (``malloc_trim``; glibc only), so "start" is what is held, and a thread samples the
resident set every 3 ms while the stage runs. The models run in the order ``fit_all`` uses on
one process. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_targets import cohort  # noqa: E402


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=100_000)
    args = ap.parse_args()
    import analytics.pipeline as pipeline
    from analytics import registry

    libc = ctypes.CDLL("libc.so.6")
    peak = {"mb": 0.0}
    rows = []

    def sample():
        while True:
            peak["mb"] = max(peak["mb"], _rss_mb())
            time.sleep(0.003)

    threading.Thread(target=sample, daemon=True).start()

    def staged(name, fn):
        def run(*a, **k):
            gc.collect()
            libc.malloc_trim(0)
            start = peak["mb"] = _rss_mb()
            t0 = time.perf_counter()
            out = fn(*a, **k)
            time.sleep(0.01)
            rows.append((name(a) if callable(name) else name, start, peak["mb"], time.perf_counter() - t0))
            return out
        return run

    pipeline.read_table = staged(lambda a: f"read {a[1] if len(a) > 1 else 'visits'}", pipeline.read_table)
    pipeline.prepare = staged("validate", pipeline.prepare)
    pipeline.derive = staged("derive", pipeline.derive)
    fit_entry = registry.fit_entry
    registry.fit_entry = lambda e, ctx: staged(f"fit {e.name}", fit_entry)(e, ctx)
    c = cohort(args.patients)
    prepared, timings = pipeline.load(c["visits"], c["therapies"])
    pipeline.analyze(prepared, timings=timings, models=True, workers=1, lean=True)  # as the command line
    print(f"| stage ({args.patients:,} patients) | held at start | peak | added | seconds |")
    print("|---|---|---|---|---|")
    for name, start, top, seconds in rows:
        print(f"| {name} | {start:,.0f} MB | {top:,.0f} MB | +{top - start:,.0f} MB | {seconds:.2f} |")
    worst = max(rows, key=lambda r: r[2])
    print(f"\nLargest: {worst[0]}, {worst[2]:,.0f} MB (resident set; the command's own peak also counts "
          "the heap glibc keeps between stages).")


if __name__ == "__main__":
    main()
