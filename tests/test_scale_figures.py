"""Figures stay readable and light at any cohort size: the trajectories figure at 100,000
patients draws a stated, seeded sample of single lines over means computed from every line."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytics.display.plots import MAX_DRAWN_LINES, binned_means, spaghetti_figure, trajectory_values


def _trajectories(n_patients: int, seed: int = 1) -> pd.DataFrame:
    """Synthetic trajectories: 1-3 lines per patient, 8 visits each over 48 weeks, a known fall."""
    rng = np.random.default_rng(seed)
    lines_per = rng.integers(1, 4, n_patients)
    patient = np.repeat(np.arange(n_patients), lines_per)
    line_id = np.arange(len(patient))
    arm = rng.choice(np.array(["MMF", "IVIG", "JAKi"]), len(line_id))
    base = rng.uniform(20, 40, len(line_id))  # far enough from 0 that clipping does not bias the fall
    weeks = np.tile(np.array([0, 4, 8, 12, 18, 24, 36, 48.0]), len(line_id))
    rows = np.repeat(line_id, 8)
    score = np.clip(base[rows] - 0.25 * weeks + rng.normal(0, 3, len(rows)), 0, 100)
    return pd.DataFrame({"patient_id": patient[rows].astype(str), "line_id": rows.astype(str), "arm": arm[rows],
                         "line_number": 2, "visit_day": (weeks * 7).astype(int), "weeks": weeks,
                         "cdasi_activity": score, "baseline_cdasi": base[rows]})


def test_trajectories_at_100000_patients_draw_a_stated_sample_and_stay_light():
    traj = _trajectories(100_000)
    total = traj["line_id"].nunique()
    fig = spaghetti_figure(traj, ["MMF", "IVIG", "JAKi"], "change")
    title = fig.layout.title.text
    assert f"random sample of {MAX_DRAWN_LINES:,} of {total:,} lines (seed 20210301)" in title
    singles = [t for t in fig.data if t.meta == "patient_id"]
    drawn = sum(int(t.name.split(":")[1].split(" of ")[0].replace(",", "")) for t in singles)
    assert drawn == MAX_DRAWN_LINES and all(" of " in t.name for t in singles)
    n_points = sum(len(t.x) for t in fig.data if t.x is not None)
    assert n_points < 20_000, n_points
    assert len(fig.to_json()) < 3_000_000  # light enough for a browser and an export
    # the means are computed from every line, not from the sample
    means = binned_means(trajectory_values(traj, "change"))
    mmf = [t for t in fig.data if t.name and t.name.startswith("MMF: mean")][0]
    want = means[(means["arm"] == "MMF") & (means["lines"] >= 5)]["mean"].to_numpy()
    assert np.allclose(np.asarray(mmf.y, float), want)
    assert np.allclose(want[-1], -0.25 * 48, atol=0.3)  # the known fall, seen through 100,000 patients


def test_the_sample_is_seeded_and_small_cohorts_draw_every_line():
    traj = _trajectories(2_000)
    a = spaghetti_figure(traj, ["MMF", "IVIG", "JAKi"])
    b = spaghetti_figure(traj, ["MMF", "IVIG", "JAKi"])
    assert a.to_json() == b.to_json() and "random sample of 300" in a.layout.title.text
    small = spaghetti_figure(_trajectories(50), ["MMF", "IVIG", "JAKi"])
    assert "random sample" not in small.layout.title.text
    assert all("single lines (n = " in t.name for t in small.data if t.meta == "patient_id")


def test_mean_cis_stay_on_the_scale_and_thin_bins_are_not_drawn():
    traj = _trajectories(30, seed=4)
    last = traj["weeks"] == 48  # means near 0: a normal CI would reach below 0
    traj.loc[last, "cdasi_activity"] = np.resize([0.0, 0.0, 0.0, 3.0], int(last.sum()))
    extra = traj.iloc[[0]].assign(weeks=30.0, visit_day=210)  # one line alone in the 28-32 week bin
    traj = pd.concat([traj, extra], ignore_index=True)
    fig = spaghetti_figure(traj, ["MMF", "IVIG", "JAKi"])
    for t in fig.data:
        if t.name and ": mean" in t.name:
            y, up, down = np.asarray(t.y, float), np.asarray(t.error_y.array, float), np.asarray(t.error_y.arrayminus, float)
            assert (y - down >= -1e-9).all() and (y + up <= 100 + 1e-9).all()
    means = binned_means(trajectory_values(traj, "absolute"))
    drawn = sum(len(t.x) for t in fig.data if t.name and ": mean" in t.name)
    assert drawn == int((means["lines"] >= 5).sum()) < len(means)


def test_percent_change_axis_is_not_set_by_outliers():
    traj = _trajectories(500, seed=2)
    traj.loc[traj.index[:40], "cdasi_activity"] = traj.loc[traj.index[:40], "baseline_cdasi"] * 10  # +900%
    fig = spaghetti_figure(traj, ["MMF", "IVIG", "JAKi"], "percent")
    lo, hi = fig.layout.yaxis.range
    assert lo >= -100 and hi < 300


def test_mixed_model_diagnostics_draw_a_bounded_number_of_marks_at_any_size():
    """A million residuals: each panel draws DIAGNOSTIC_POINTS marks (a seeded sample of residuals;
    evenly spaced quantiles that keep both extremes), and the trend line uses every residual."""
    from types import SimpleNamespace

    from analytics.stats.mixed import DIAGNOSTIC_POINTS, diagnostic_marks, diagnostics_figure

    rng = np.random.default_rng(5)
    n = 1_000_000
    fitted = rng.uniform(0, 40, n)
    resid = rng.normal(0, 2, n) + np.where(fitted > 30, 3.0, 0.0)  # a pattern at high fitted values
    order = np.argsort(resid)
    theo = np.empty(n)
    theo[order] = np.sort(rng.normal(0, 2, n))
    d = pd.DataFrame({"fitted": fitted, "residual": resid, "theoretical": theo, "sample": resid})
    scatter, trend, qq = diagnostic_marks(d)
    assert len(scatter) == len(qq) == DIAGNOSTIC_POINTS
    assert scatter.index.isin(d.index).all() and scatter.index.is_unique
    assert qq["theoretical"].iloc[0] == d["theoretical"].min() and qq["theoretical"].iloc[-1] == d["theoretical"].max()
    assert qq["sample"].is_monotonic_increasing
    assert len(trend) == 20  # means of 50,000 residuals each: the pattern shows in the last bins only
    assert abs(trend["residual"].iloc[0]) < 0.05 and trend["residual"].iloc[-1] > 2.5
    fig = diagnostics_figure(SimpleNamespace(diagnostics=d))
    assert sum(len(t.x) for t in fig.data) <= 2 * DIAGNOSTIC_POINTS + 20 + 2
    assert len(fig.to_json()) < 300_000
    assert f"a random sample of {DIAGNOSTIC_POINTS:,} of {n:,} residuals" in fig.layout.title.text
    small = d.iloc[:500]
    scatter, _, qq = diagnostic_marks(small)
    assert len(scatter) == len(qq) == 500  # all of them, below the bound
