"""Benchmark: the default mixed model (cdasi_activity ~ weeks * arm, random intercept and slope
by line, REML) on cohorts of 1,000 and 10,000 patients: the fast exact path, statsmodels
MixedLM, and, where Rscript with lme4 is present, lme4 on the same trajectories, side by side.
Prints medians and the ratio to lme4; asserts nothing.

    .venv/bin/python benchmarks/bench_mixed.py [--patients 1000 10000] [--repeats 3] [--statsmodels-max 2000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analytics import DeriveOptions, derive, load  # noqa: E402
from analytics.stats.mixed import MixedSpec, fit_mixed  # noqa: E402
from analytics.sample import write_sample  # noqa: E402

R_SCRIPT = r"""
suppressMessages(library(lme4))
d <- read.csv(commandArgs(TRUE)[1]); d$arm <- factor(d$arm, levels = c("MMF", "IVIG", "JAKi"))
f <- function() lmer(cdasi_activity ~ weeks * arm + (weeks | line_id), data = d, REML = TRUE)
times <- replicate(as.integer(commandArgs(TRUE)[2]), system.time(suppressMessages(f()))[["elapsed"]])
m <- suppressMessages(f())
cat(median(times), "\n"); cat(fixef(m), "\n")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--statsmodels-max", type=int, default=2000, help="skip statsmodels above this many patients")
    args = ap.parse_args()
    rscript = shutil.which("Rscript")
    print(f"{'patients':>9s} {'visits':>8s} {'lines':>7s} {'fast s':>8s} {'statsmodels s':>14s} {'lme4 s':>8s} "
          f"{'fast/lme4':>10s} {'max |fast-lme4| fixed effect':>30s}")
    for n in args.patients:
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_sample(tmp, n_patients=n, seed=7)
            prepared, _ = load(paths["visits"], paths["therapies"])
            d = derive(prepared, DeriveOptions())
            tr = d.trajectories[(d.trajectories["arm"] != "") & (d.trajectories["weeks"] <= 24)]
            fast_times, res = [], None
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                res = fit_mixed(tr, ["MMF", "IVIG", "JAKi"], MixedSpec())
                fast_times.append(time.perf_counter() - t0)
            assert res.engine.startswith("fast"), res.engine
            sm = "skipped"
            if n <= args.statsmodels_max:
                import statsmodels.formula.api as smf

                dd = tr.assign(arm=pd.Categorical(tr["arm"], categories=["MMF", "IVIG", "JAKi"]))
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    smf.mixedlm("cdasi_activity ~ weeks * arm", dd, groups="line_id", re_formula="~weeks").fit(
                        reml=True, method=["lbfgs"])
                sm = f"{time.perf_counter() - t0:.2f}"
            r_time, ratio, diff = "n/a", "n/a", "n/a"
            if rscript:
                csv = Path(tmp) / "traj.csv"
                tr[["line_id", "arm", "weeks", "cdasi_activity"]].to_csv(csv, index=False)
                rfile = Path(tmp) / "bench.R"
                rfile.write_text(R_SCRIPT)
                out = subprocess.run([rscript, str(rfile), str(csv), str(args.repeats)], capture_output=True,
                                     text=True, check=True).stdout.split("\n")
                r_med = float(out[0])
                r_fe = np.array([float(x) for x in out[1].split()])  # (Intercept) weeks armIVIG armJAKi w:IVIG w:JAKi
                ours = res.fixed_effects["estimate"].to_numpy()[[0, 3, 1, 2, 4, 5]]
                r_time, ratio = f"{r_med:.2f}", f"{statistics.median(fast_times) / r_med:.2f}"
                diff = f"{np.max(np.abs(ours - r_fe) / np.maximum(np.abs(r_fe), 1e-8)):.1e} rel"
            print(f"{n:9d} {len(tr):8d} {tr['line_id'].nunique():7d} {statistics.median(fast_times):8.2f} "
                  f"{sm:>14s} {r_time:>8s} {ratio:>10s} {diff:>30s}")


if __name__ == "__main__":
    main()
