"""Benchmark: the default mixed model (cdasi_activity ~ weeks * arm + (1 + weeks | patient_id) +
(1 + weeks | patient_id:line_id), REML; or, with --levels line, random effects by line only) on
cohorts of 2,000, 10,000 and 100,000 patients: the fast exact path (the fit alone, and
fit_mixed with Satterthwaite df and everything the result holds), statsmodels MixedLM (line
level only) and, where Rscript with lme4 is present, lme4 on the same trajectories, side by side.
Prints medians and the ratio to lme4; asserts nothing.

    .venv/bin/python benchmarks/bench_mixed.py [--patients 2000 10000 100000] [--repeats 3]
        [--levels patient/line|line] [--statsmodels-max 2000]

The lme4 fit is the same structure the tool fits: on the synthetic cohorts the full nested model
is singular at the patient level (as in lme4), and both fall back to a random patient intercept;
the structure is printed.
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
a <- commandArgs(TRUE)
d <- read.csv(a[1]); d$arm <- factor(d$arm, levels = c("MMF", "IVIG", "JAKi"))
form <- as.formula(a[3])
f <- function() lmer(form, data = d, REML = TRUE)
times <- replicate(as.integer(a[2]), system.time(suppressMessages(f()))[["elapsed"]])
m <- suppressMessages(f())
cat(median(times), "\n"); cat(fixef(m), "\n"); cat(isSingular(m), "\n")
"""


def main() -> None:
    from patsy import dmatrix

    from analytics.stats.fastlmm import fit_lmm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, nargs="+", default=[2000, 10000, 100000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--levels", default="patient/line", choices=["patient/line", "line"])
    ap.add_argument("--statsmodels-max", type=int, default=2000, help="skip statsmodels above this many patients")
    args = ap.parse_args()
    rscript = shutil.which("Rscript")
    print(f"{'patients':>9s} {'visits':>8s} {'lines':>7s} {'fit s':>7s} {'fit_mixed s':>12s} {'statsmodels s':>14s} "
          f"{'lme4 s':>8s} {'fit/lme4':>9s} {'fit_mixed/lme4':>15s} {'max |fast-lme4| fixed effect':>30s}  model")
    for n in args.patients:
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_sample(tmp, n_patients=n, seed=7)
            prepared, _ = load(paths["visits"], paths["therapies"])
            d = derive(prepared, DeriveOptions())
            tr = d.trajectories[(d.trajectories["arm"] != "") & (d.trajectories["weeks"] <= 24)]
            spec = MixedSpec(levels=args.levels)
            full_times, res = [], None
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                res = fit_mixed(tr, ["MMF", "IVIG", "JAKi"], spec)
                full_times.append(time.perf_counter() - t0)
            assert res.engine.startswith("fast"), res.engine
            # The fit alone, for the structure fit_mixed settled on (no Satterthwaite df, no result tables)
            dd = tr.assign(arm=pd.Categorical(tr["arm"], categories=["MMF", "IVIG", "JAKi"]))
            X = dmatrix("weeks * arm", dd, return_type="dataframe").to_numpy()
            qs = {lev: 2 if f == "~weeks" else 1 for lev, f in res.random_effects.items()}
            fit_times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fit_lmm(X, dd["cdasi_activity"].to_numpy(float), pd.factorize(dd["line_id"])[0],
                        pd.factorize(dd["patient_id"])[0] if "patient" in qs else None, dd["weeks"].to_numpy(float),
                        q_line=qs["line"], q_patient=qs.get("patient", 0), satterthwaite=False)
                fit_times.append(time.perf_counter() - t0)
            sm = "skipped"
            if n <= args.statsmodels_max:
                import statsmodels.formula.api as smf

                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    smf.mixedlm("cdasi_activity ~ weeks * arm", dd, groups="line_id", re_formula="~weeks").fit(
                        reml=True, method=["lbfgs"])
                sm = f"{time.perf_counter() - t0:.2f}"
            r_time, ratio, ratio_full, diff = "n/a", "n/a", "n/a", "n/a"
            formula = res.model_formula
            if rscript:
                csv = Path(tmp) / "traj.csv"
                tr[["patient_id", "line_id", "arm", "weeks", "cdasi_activity"]].to_csv(csv, index=False)
                rfile = Path(tmp) / "bench.R"
                rfile.write_text(R_SCRIPT)
                out = subprocess.run([rscript, str(rfile), str(csv), str(args.repeats), formula],
                                     capture_output=True, text=True, check=True).stdout.split("\n")
                r_med = float(out[0])
                r_fe = np.array([float(x) for x in out[1].split()])  # (Intercept) weeks armIVIG armJAKi w:IVIG w:JAKi
                ours = res.fixed_effects["estimate"].to_numpy()[[0, 3, 1, 2, 4, 5]]
                r_time = f"{r_med:.2f}"
                ratio = f"{statistics.median(fit_times) / r_med:.2f}"
                ratio_full = f"{statistics.median(full_times) / r_med:.2f}"
                diff = f"{np.max(np.abs(ours - r_fe) / np.maximum(np.abs(r_fe), 1e-8)):.1e} rel"
                formula += f" (lme4 singular: {out[2].strip()})"
            print(f"{n:9d} {len(tr):8d} {tr['line_id'].nunique():7d} {statistics.median(fit_times):7.2f} "
                  f"{statistics.median(full_times):12.2f} {sm:>14s} {r_time:>8s} {ratio:>9s} {ratio_full:>15s} "
                  f"{diff:>30s}  {formula}; fallback: {res.fallback}", flush=True)


if __name__ == "__main__":
    main()
