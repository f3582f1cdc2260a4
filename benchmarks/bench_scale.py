"""Benchmark suite at scale: cohorts of 1,000, 10,000 and 100,000 patients; per stage (read,
validate, derive, survival, mixed model, adjusted, figures, export) the median time and the peak
memory; where Rscript with lme4 is present, lme4 on the same trajectories and the ratio.
Prints a table; asserts nothing. Each size runs in a fresh process, so peak memory is its own.

    .venv/bin/python benchmarks/bench_scale.py [--patients 1000 10000 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("read", "validate", "derive", "survival", "mixed_model", "adjusted", "figures", "export")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def run_once(visits: str, therapies: str, out: str) -> dict:
    """One pass over every stage in this process; returns seconds and peak MB per stage."""
    from analytics import DeriveOptions, derive, prepare, read_table
    from analytics.stats.adjusted import fit_adjusted
    from analytics.stats.competing import fit_competing
    from analytics.stats.cox import fit_cox
    from analytics.stats.interval import fit_interval
    from analytics.stats.mixed import fit_mixed
    from analytics.pipeline import Analysis, write_outputs
    from analytics.display.plots import sankey_figure, spaghetti_figure
    from analytics.lines.analysis_table import ADJUSTMENT_SET, analysis_table
    from analytics.stats.survival import fit_km
    from analytics.stats.table1 import table1

    arms = ["MMF", "IVIG", "JAKi"]
    res, t = {}, time.perf_counter()

    def mark(stage):
        nonlocal t
        now = time.perf_counter()
        res[stage] = {"s": now - t, "peak_mb": _peak_mb()}
        t = time.perf_counter()

    v, th = read_table(visits, "visits"), read_table(therapies, "therapies")
    mark("read")
    p = prepare(v, th)
    mark("validate")
    d = derive(p, DeriveOptions())
    mark("derive")
    tab = analysis_table(d, p)
    km = fit_km(tab, arms)
    fit_cox(tab, arms)
    cox_adj, cif = fit_cox(tab, arms, ADJUSTMENT_SET), fit_competing(tab, arms)
    fit_interval(tab, d, arms)
    mark("survival")
    mixed = fit_mixed(d.trajectories, arms, None, tab)
    mark("mixed_model")
    table1(tab, arms)
    fit_adjusted(tab, arms)
    mark("adjusted")
    traj = d.trajectories[d.trajectories["arm"] != ""]
    figs = [km.figure(), cox_adj.figure(), cif.figure(), mixed.figure(), spaghetti_figure(traj, arms, "change"),
            sankey_figure(d)]
    for f in figs:
        f.to_plotly_json()
    mark("figures")
    write_outputs(Analysis(p, d, {}), out)
    mark("export")
    res["_meta"] = {"visits": len(p.visits), "lines": len(d.lines), "trajectory_rows": len(traj),
                    "mixed_engine": mixed.engine}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--repeats", type=int, default=3, help="repeats per size (100,000 patients: 1)")
    ap.add_argument("--child", nargs=3, metavar=("VISITS", "THERAPIES", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_once(*args.child)))
        return
    from analytics.sample import write_sample

    rows = []
    rscript = shutil.which("Rscript")
    for n in args.patients:
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_sample(tmp, n_patients=n, seed=7)
            runs = []
            for i in range(1 if n >= 100_000 else args.repeats):
                out = subprocess.run([sys.executable, __file__, "--child", str(paths["visits"]), str(paths["therapies"]),
                                      os.path.join(tmp, f"out{i}")], capture_output=True, text=True, check=True)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            meta = runs[0]["_meta"]
            med = {s: statistics.median(r[s]["s"] for r in runs) for s in STAGES}
            peak = max(r["export"]["peak_mb"] for r in runs)
            lme4 = None
            if rscript:
                from benchmarks.bench_mixed import R_SCRIPT
                from analytics import DeriveOptions, derive, load

                prepared, _ = load(paths["visits"], paths["therapies"])
                d = derive(prepared, DeriveOptions())
                tr = d.trajectories[(d.trajectories["arm"] != "") & (d.trajectories["weeks"] <= 24)]
                csv = Path(tmp) / "traj.csv"
                tr[["line_id", "arm", "weeks", "cdasi_activity"]].to_csv(csv, index=False)
                rfile = Path(tmp) / "bench.R"
                rfile.write_text(R_SCRIPT)
                lme4 = float(subprocess.run([rscript, str(rfile), str(csv), "1" if n >= 100_000 else "3"],
                                            capture_output=True, text=True, check=True).stdout.split()[0])
            rows.append((n, meta, med, peak, lme4, len(runs)))
    print(f"{'patients':>9s} {'visits':>9s} " + " ".join(f"{s:>11s}" for s in STAGES)
          + f" {'total':>7s} {'peak MB':>8s} {'lme4 s':>7s} {'mixed/lme4':>10s}")
    for n, meta, med, peak, lme4, k in rows:
        total = sum(med.values())
        ratio = f"{med['mixed_model'] / lme4:.2f}" if lme4 else "n/a"
        print(f"{n:9d} {meta['visits']:9d} " + " ".join(f"{med[s]:11.2f}" for s in STAGES)
              + f" {total:7.2f} {peak:8.0f} {lme4 if lme4 is not None else float('nan'):7.2f} {ratio:>10s}"
              + f"   ({k} run{'s' if k > 1 else ''})")
    print("Times in seconds (medians); mixed_model includes predictions and diagnostics; lme4 is lmer() alone.")


if __name__ == "__main__":
    main()
