"""Benchmark: export every figure of the meeting pack in three formats (PNG, SVG, PDF) plus HTML,
on the sample cohort, through one Chromium session. Prints medians; asserts nothing.

    .venv/bin/python benchmarks/bench_export.py [--repeats 3]

Target of issue 5: under 15 s. Also reports the whole `build_pack` (analysis, tables, report).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analytics.outputs.pack import PackOptions, build_pack, chromium  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if chromium() is None:
        sys.exit("no chromium: apt-get install chromium (PNG, SVG and PDF export need it)")
    runs: dict[str, list[float]] = {}
    n_figs = 0
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = build_pack(ROOT / "sample_data" / "visits.csv", tmp, ROOT / "sample_data" / "therapies.csv",
                             options=PackOptions())
            runs.setdefault("whole pack", []).append(time.perf_counter() - t0)
            for k, v in res.timings_s.items():
                runs.setdefault(k, []).append(v)
            n_figs = len(list(Path(tmp, "figures").glob("*.png")))
    print(f"Meeting pack on the sample cohort: {n_figs} figures x (PNG, SVG, PDF, HTML); median of {args.repeats}")
    for k, v in runs.items():
        print(f"  {k:12s} {statistics.median(v):7.2f} s (min {min(v):.2f}, max {max(v):.2f})")


if __name__ == "__main__":
    main()
