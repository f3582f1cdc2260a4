"""Benchmark: the whole `cdasi-outcomes analyze` on the sample cohort. Prints medians; asserts nothing.

    .venv/bin/python benchmarks/bench_analyze.py [--repeats 5]

Target of issue 3: under 10 s on this 2-core machine. Reports the in-process stages (from
results.json's timings_s) and the wall-clock time of the command line, Python start-up included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--visits", default=str(ROOT / "sample_data" / "visits.csv"))
    ap.add_argument("--therapies", default=str(ROOT / "sample_data" / "therapies.csv"))
    args = ap.parse_args()
    exe = Path(sys.executable).with_name("cdasi-outcomes")
    walls, stages = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            out = Path(tmp) / str(i)
            t0 = time.perf_counter()
            subprocess.run([str(exe), "analyze", args.visits, "--therapies", args.therapies, "--out", str(out)],
                           check=True, capture_output=True, stdin=subprocess.DEVNULL)
            walls.append(time.perf_counter() - t0)
            for k, v in json.loads((out / "results.json").read_text())["timings_s"].items():
                stages.setdefault(k, []).append(v)
    print(f"cdasi-outcomes analyze {Path(args.visits).name} --therapies {Path(args.therapies).name} "
          f"({args.repeats} runs, {os.cpu_count()} cores)")
    print(f"{'stage':14s} {'median s':>9s} {'min s':>7s} {'max s':>7s}")
    for k, xs in stages.items():
        print(f"{k:14s} {statistics.median(xs):9.3f} {min(xs):7.3f} {max(xs):7.3f}")
    print(f"{'wall clock':14s} {statistics.median(walls):9.3f} {min(walls):7.3f} {max(walls):7.3f}   "
          "(command line, Python start-up and imports included)")


if __name__ == "__main__":
    main()
