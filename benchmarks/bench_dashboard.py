"""Benchmark: dashboard page switches and filter changes on the sample cohort, once cached.
Prints medians; asserts nothing. Uses Streamlit's AppTest (the script run, without the browser).

    .venv/bin/python benchmarks/bench_dashboard.py [--repeats 5]

Target of issue 4: a page switch or a filter change returns in under 1 s once cached.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
logging.getLogger("streamlit").setLevel(logging.ERROR)

from streamlit.testing.v1 import AppTest  # noqa: E402

from analytics.lines.cohort import CohortFilter  # noqa: E402

PAGES = ["views/data.py", "views/cohort.py", "views/trajectories.py", "views/time_to_response.py",
         "views/mixed_model.py", "views/timeline.py"]
FILTERS = [CohortFilter(), CohortFilter(antibodies=("mda5",)), CohortFilter(severity="moderate-severe", ild="no")]


def timed(at: AppTest) -> float:
    t0 = time.perf_counter()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    t0 = time.perf_counter()
    at.run()
    first = {"data (first load)": time.perf_counter() - t0}
    for page in PAGES[1:]:  # cold: fills the caches
        at.switch_page(page)
        first[page.split("/")[1][:-3] + " (first visit)"] = timed(at)
    for f in FILTERS[1:]:  # cold: every filter once, on the heaviest page
        at.session_state["cohort.filter"] = f
        at.switch_page("views/time_to_response.py")
        first[f"filter {f.describe()} (first)"] = timed(at)
    warm: dict[str, list[float]] = {}
    for i in range(args.repeats + 1):  # the first pass fills the remaining (page, filter) caches, untimed
        for page in PAGES:
            at.switch_page(page)
            t = timed(at)
            if i:
                warm.setdefault(f"switch to {page.split('/')[1][:-3]}", []).append(t)
        for f in FILTERS:
            at.session_state["cohort.filter"] = f
            at.switch_page("views/time_to_response.py")
            t = timed(at)
            if i:
                warm.setdefault(f"filter change, time to response: {'; '.join(f.describe()) or 'none'}", []).append(t)
    print("Cold (first time, computes and caches):")
    for k, v in first.items():
        print(f"  {k:70s} {v:6.2f} s")
    print(f"Cached (median of {args.repeats}):")
    for k, v in warm.items():
        print(f"  {k:70s} {statistics.median(v):6.3f} s (max {max(v):.3f})")
    allw = [x for v in warm.values() for x in v]
    print(f"All cached page runs: median {statistics.median(allw):.3f} s, max {max(allw):.3f} s")


if __name__ == "__main__":
    main()
