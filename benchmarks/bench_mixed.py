"""Benchmark: the default mixed model (cdasi_activity ~ weeks * arm + (1 + weeks | patient_id) +
(1 + weeks | patient_id:line_id), REML; or, with --levels line, random effects by line only) on
cohorts of 2,000, 10,000 and 100,000 patients: the fast exact path (the fit alone, and
fit_mixed with Satterthwaite df and everything the result holds) and, where Rscript with lme4 is
present, lme4 on the same trajectories and the same structures, side by side. Prints medians and
the ratio to lme4; asserts nothing.

    .venv/bin/python benchmarks/bench_mixed.py [--patients 2000 10000 100000] [--repeats 3]
        [--levels patient/line|line]

On the synthetic cohorts the full nested model is singular at the patient level (in lme4 too), and
fit_mixed falls back to a random patient intercept: both structures are timed, in both, and
fit_mixed's total is set against lme4's time for the two.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
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
f <- function() suppressWarnings(suppressMessages(lmer(form, data = d, REML = TRUE)))
times <- replicate(as.integer(a[2]), system.time(f())[["elapsed"]])
m <- f()
cat(median(times), "\n"); cat(fixef(m), "\n"); cat(isSingular(m), format(REMLcrit(m), digits = 15), "\n")
"""


def main() -> None:
    from patsy import dmatrix

    from analytics.stats.fastlmm import fit_lmm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, nargs="+", default=[2000, 10000, 100000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--levels", default="patient/line", choices=["patient/line", "line"])
    args = ap.parse_args()
    rscript = shutil.which("Rscript")
    print(f"{'patients':>9s} {'visits':>8s} {'lines':>7s} {'model':>8s} {'fit s':>7s} {'lme4 s':>8s} {'fit/lme4':>9s} "
          f"{'max rel |fast-lme4| fixed effect':>9s}")
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
            # The fit alone (no Satterthwaite df, no result tables) of each structure fit_mixed tried:
            # the default, and the one it settled on when the default was singular.
            dd = tr.assign(arm=pd.Categorical(tr["arm"], categories=["MMF", "IVIG", "JAKi"]))
            X = dmatrix("weeks * arm", dd, return_type="dataframe").to_numpy()
            settled = {lev: 2 if f == "~weeks" else 1 for lev, f in res.random_effects.items()}
            default = {"patient": 2, "line": 2} if args.levels == "patient/line" else {"line": 2}
            rows = [("default", default)] + ([("settled", settled)] if settled != default else [])
            csv = Path(tmp) / "traj.csv"
            tr[["patient_id", "line_id", "arm", "weeks", "cdasi_activity"]].to_csv(csv, index=False)
            rfile = Path(tmp) / "bench.R"
            rfile.write_text(R_SCRIPT)
            r_total = 0.0
            for label, qs in rows:
                fit_times, fit = [], None
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    fit = fit_lmm(X, dd["cdasi_activity"].to_numpy(float), pd.factorize(dd["line_id"])[0],
                                  pd.factorize(dd["patient_id"])[0] if "patient" in qs else None,
                                  dd["weeks"].to_numpy(float), q_line=qs["line"], q_patient=qs.get("patient", 0),
                                  satterthwaite=False, cells=pd.factorize(dd["arm"])[0])  # as fit_mixed does
                    fit_times.append(time.perf_counter() - t0)
                line_group = "patient_id:line_id" if "patient" in qs else "line_id"
                formula = "cdasi_activity ~ weeks * arm" + "".join(
                    f" + ({'1 + weeks' if qs[lev] == 2 else '1'} | {'patient_id' if lev == 'patient' else line_group})"
                    for lev in ("patient", "line") if lev in qs)
                r_time, ratio, diff, r_dev = "n/a", "n/a", "n/a", "n/a"
                if rscript:
                    out = subprocess.run([rscript, str(rfile), str(csv), str(args.repeats), formula],
                                         capture_output=True, text=True, check=True).stdout.split("\n")
                    r_med = float(out[0])
                    r_total += r_med
                    r_fe = np.array([float(x) for x in out[1].split()])  # (Intercept) weeks armIVIG armJAKi w:IVIG w:JAKi
                    ours = fit.beta[[0, 3, 1, 2, 4, 5]]
                    r_time, ratio = f"{r_med:.2f}", f"{statistics.median(fit_times) / r_med:.2f}"
                    diff = f"{np.max(np.abs(ours - r_fe) / np.maximum(np.abs(r_fe), 1e-8)):.1e}"
                    sing, dev = out[2].split()
                    r_dev = f"REML criterion lme4 {float(dev):.4f} (singular {sing}), ours {fit.deviance:.4f}"
                print(f"{n:9d} {len(tr):8d} {tr['line_id'].nunique():7d} {label:>8s} "
                      f"{statistics.median(fit_times):7.2f} {r_time:>8s} {ratio:>9s} {diff:>9s}  {formula}; {r_dev}; "
                      f"ours singular: {fit.singular_levels() or 'no'}", flush=True)
            total = statistics.median(full_times)
            print(f"{n:9d} fit_mixed (every structure tried, Satterthwaite df, result tables): {total:.2f} s; "
                  f"lme4 on the same structures: {r_total:.2f} s"
                  + (f"; ratio {total / r_total:.2f}" if r_total else "") + f"; fallback: {res.fallback}", flush=True)


if __name__ == "__main__":
    main()
