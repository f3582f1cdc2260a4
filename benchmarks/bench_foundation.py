"""Benchmark: read, validate and derive a large synthetic export. Prints medians; asserts nothing.

    .venv/bin/python benchmarks/bench_foundation.py [--patients 10000] [--repeats 5]

The target of issue 2: reading, validating and deriving a 10,000-patient export (about
100,000 visits) in under 5 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics import DeriveOptions, derive, prepare, read_table  # noqa: E402
from analytics.sample import write_sample  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = write_sample(tmp, n_patients=args.patients, seed=args.seed)
        gen = time.perf_counter() - t0
        size_mb = os.path.getsize(paths["visits"]) / 1e6
        runs: dict[str, list[float]] = {"read": [], "validate": [], "derive": [], "total": []}
        for source in ("visits", "therapies"):
            runs_s = {k: [] for k in runs}
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                v = read_table(paths["visits"], "visits")
                t = read_table(paths["therapies"], "therapies") if source == "therapies" else None
                t1 = time.perf_counter()
                p = prepare(v, t)
                t2 = time.perf_counter()
                d = derive(p, DeriveOptions())
                t3 = time.perf_counter()
                for k, x in zip(runs_s, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                    runs_s[k].append(x)
            assert p.report.ok, p.report.to_text()
            print(f"\nepisodes from {source}: {args.patients} patients, {p.counts['visits']} visits "
                  f"({size_mb:.1f} MB CSV), {len(d.lines)} lines, {int(d.lines['included'].sum())} included")
            print(f"{'stage':10s} {'median s':>9s} {'min s':>7s} {'max s':>7s}   ({args.repeats} runs)")
            for k, xs in runs_s.items():
                print(f"{k:10s} {statistics.median(xs):9.3f} {min(xs):7.3f} {max(xs):7.3f}")
    print(f"\n(generating the cohort took {gen:.1f} s; python {platform.python_version()}, "
          f"{os.cpu_count()} cores, {platform.machine()})")


if __name__ == "__main__":
    main()
