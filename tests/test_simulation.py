"""Simulations with a known truth: the estimators recover it within their confidence intervals.

Each test runs five seeds. A 95% CI misses the truth 5% of the time, so the tests ask for
coverage in at least 80% of (seed, parameter) pairs and estimates close to the truth on
average; with fixed seeds the outcome is deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.stats.competing import aalen_johansen
from analytics.stats.cox import fit_cox
from analytics.stats.mixed import MixedSpec, fit_mixed
from analytics.stats.survival import fit_km

ARMS = ["MMF", "IVIG", "JAKi"]
SEEDS = [1, 2, 3, 4, 5]


def _survival_data(seed: int, n_patients: int = 300, hr=(1.0, 2.0, 0.5), base_rate: float = 1 / 12):
    rng = np.random.default_rng(seed)
    pid = np.repeat([f"P{i}" for i in range(n_patients)], 2)
    arm_idx = rng.integers(0, 3, size=len(pid))
    frailty = np.repeat(rng.gamma(4.0, 1 / 4.0, n_patients), 2)  # shared within patient: clustering
    rate = base_rate * np.asarray(hr)[arm_idx] * frailty
    t_event = rng.exponential(1 / rate)
    t_cens = rng.uniform(4, 60, size=len(pid))
    time = np.minimum(t_event, t_cens)
    return pd.DataFrame({"patient_id": pid, "line_id": [f"L{i}" for i in range(len(pid))],
                         "arm": pd.Categorical(np.asarray(ARMS)[arm_idx], categories=ARMS), "time": time,
                         "event": (t_event <= t_cens).astype(int), "censor_reason": "", "stop_reason": ""})


def test_cox_recovers_known_hazard_ratios():
    truth = {"IVIG": np.log(2.0), "JAKi": np.log(0.5)}
    covered, errors = 0, []
    for seed in SEEDS:
        res = fit_cox(_survival_data(seed), ARMS)
        for arm, b in truth.items():
            r = res.summary.loc[f"arm[T.{arm}]"]
            covered += np.log(r["lower"]) <= b <= np.log(r["upper"])
            errors.append(r["coef"] - b)
    assert covered >= 0.8 * len(SEEDS) * len(truth)
    assert abs(np.mean(errors)) < 0.1


def test_km_median_recovers_exponential_median():
    # One arm, exponential with median 12 weeks, light censoring: the KM median's CI covers 12.
    covered = 0
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        t = rng.exponential(12 / np.log(2), 400)
        c = rng.uniform(20, 80, 400)
        df = pd.DataFrame({"arm": pd.Categorical(["MMF"] * 400, categories=ARMS), "time": np.minimum(t, c),
                           "event": (t <= c).astype(int)})
        s = fit_km(df, ARMS).summary.loc["MMF"]
        covered += s["median_lower"] <= 12 <= s["median_upper"]
    assert covered >= 4


def test_aalen_johansen_recovers_known_cumulative_incidence():
    # Two competing exponential causes with rates a and b: CIF_1(t) = a/(a+b) (1 - exp(-(a+b) t)).
    a, b, t0 = 1 / 10, 1 / 30, 12.0
    truth = a / (a + b) * (1 - np.exp(-(a + b) * t0))
    covered = 0
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        t1, t2, c = rng.exponential(1 / a, 500), rng.exponential(1 / b, 500), rng.uniform(5, 60, 500)
        time = np.minimum.reduce([t1, t2, c])
        code = np.where(time == t1, 1, np.where(time == t2, 2, 0))
        cur = aalen_johansen(time, code, 1)
        i = cur["time"].searchsorted(t0, side="right") - 1
        covered += cur["lower"].iloc[i] <= truth <= cur["upper"].iloc[i]
    assert covered >= 4


def _trajectories(seed: int, n_lines: int = 300):
    rng = np.random.default_rng(seed)
    slope = {"MMF": -0.3, "IVIG": -0.5, "JAKi": -0.8}
    offset = {"MMF": 0.0, "IVIG": -1.0, "JAKi": 1.0}
    rows = []
    for i in range(n_lines):
        arm = ARMS[i % 3]
        b0, b1 = rng.normal(0, 6), rng.normal(0, 0.2)
        for w in (0, 4, 8, 12, 16, 20):
            if w and rng.random() < 0.15:
                continue  # a missed visit: unbalanced groups
            y = 15 + offset[arm] + b0 + (slope[arm] + b1) * w + rng.normal(0, 3)
            rows.append((f"L{i}", arm, float(w), y))
    return pd.DataFrame(rows, columns=["line_id", "arm", "weeks", "cdasi_activity"]), slope


def test_mixed_model_recovers_known_slopes_and_variances():
    covered, n = 0, 0
    vc = []
    for seed in SEEDS:
        tr, slope = _trajectories(seed)
        res = fit_mixed(tr, ARMS, MixedSpec(horizon_weeks=24, levels="line"))
        assert res.converged and res.fallback is None
        for arm, s in slope.items():
            r = res.slopes.loc[arm]
            covered += r["lower"] <= s <= r["upper"]
            n += 1
        line = res.variance_components["line"]
        vc.append((line["intercept_var"], line["slope_var"], res.variance_components["residual_var"]))
    assert covered >= 0.8 * n
    mean_vc = np.mean(vc, axis=0)
    assert mean_vc == pytest.approx([36.0, 0.04, 9.0], rel=0.25)


def test_mixed_model_falls_back_when_the_fit_is_singular():
    # Every line falls by exactly 0.3 points a week (no slope variance). On this draw lme4 reports a
    # singular fit too (isSingular TRUE: intercept-slope correlation 1), so the model falls back to a
    # random intercept and says so.
    rng = np.random.default_rng(1)
    rows = []
    for i in range(90):
        b0 = rng.normal(0, 5)
        rows += [(f"L{i}", ARMS[i % 3], float(w), 12 + b0 - 0.3 * w + rng.normal(0, 1)) for w in (0, 4, 8, 12)]
    tr = pd.DataFrame(rows, columns=["line_id", "arm", "weeks", "cdasi_activity"])
    res = fit_mixed(tr, ARMS, MixedSpec(levels="line"))
    assert res.converged and res.re_formula == "1"
    assert res.fallback.startswith("random intercept only")
    assert any(w.startswith("fallback:") for w in res.warnings)
    assert res.to_dict()["re_formula"] == "1"
    assert res.slopes.loc["MMF", "per_week"] == pytest.approx(-0.3, abs=0.05)


def test_nested_mixed_model_recovers_both_variance_levels_and_the_slopes():
    """Lines nested in patients with a known truth at both levels (tests/nested_sim.py): over 8
    cohorts of 300 patients, the mean REML estimates of the patient- and line-level intercept and
    slope variances and the residual variance are within three Monte Carlo standard errors and 30%
    of the truth (the intercept and residual variances within 15%), and the 95% t intervals
    (Satterthwaite df) of the per-arm slopes and slope differences cover the truth about 95% of the
    time (at least 20 of 24 each)."""
    from .nested_sim import TRUTH, simulate_nested

    est, covered, covered_diff = [], 0, 0
    for seed in range(8):
        tr = simulate_nested(300, 100 + seed)
        res = fit_mixed(tr, ARMS)
        assert res.converged and res.fallback is None and res.nested, res.warnings
        vc = res.variance_components
        est.append([vc["patient"]["intercept_var"], vc["patient"]["slope_var"], vc["line"]["intercept_var"],
                    vc["line"]["slope_var"], vc["residual_var"]])
        for arm in ARMS:
            r = res.slopes.loc[arm]
            covered += r["lower"] <= TRUTH["slope"][arm] <= r["upper"]
            if arm != "MMF":
                covered_diff += r["diff_lower"] <= TRUTH["slope"][arm] - TRUTH["slope"]["MMF"] <= r["diff_upper"]
                assert 100 < r["diff_df"] < 5000
    truth = [TRUTH["patient"][0] ** 2, TRUTH["patient"][1] ** 2, TRUTH["line"][0] ** 2, TRUTH["line"][1] ** 2,
             TRUTH["residual_sd"] ** 2]
    est = np.array(est)
    mean, mc_se = est.mean(axis=0), est.std(axis=0, ddof=1) / np.sqrt(len(est))
    assert np.all(np.abs(mean - truth) <= 3 * mc_se), (mean, mc_se, truth)
    assert mean == pytest.approx(truth, rel=0.3)
    assert mean[[0, 2, 4]] == pytest.approx(np.array(truth)[[0, 2, 4]], rel=0.15)
    assert covered >= 20 and covered_diff >= 13  # of 24 and 16


def test_the_nested_model_weighs_a_patients_lines_as_the_design_says():
    """A patient's lines share the patient's effects. When every line of a patient is in the same
    arm, the arms are compared between patients, and the line-only model, which counts each line
    as independent, understates the standard error of the arms' baseline difference; when a
    patient's lines are in different arms, the nested model compares them within patients and its
    standard error is the smaller. Both on the same truth (tests/nested_sim.py), 300 patients."""
    from .nested_sim import simulate_nested

    ratio = {}
    for one_arm in (True, False):
        tr = simulate_nested(300, 42, one_arm_per_patient=one_arm)
        nested = fit_mixed(tr, ARMS)
        line = fit_mixed(tr, ARMS, MixedSpec(levels="line"))
        assert nested.nested and not line.nested and nested.fallback is None
        ratio[one_arm] = [nested.fixed_effects.loc[t, "se"] / line.fixed_effects.loc[t, "se"]
                          for t in ("arm[T.IVIG]", "arm[T.JAKi]")]
    assert min(ratio[True]) > 1.15, ratio  # between patients: the line-only SE is too small
    assert max(ratio[False]) < 0.9, ratio  # within patients: the nested model gains


def test_one_line_per_patient_is_modelled_by_line_with_a_warning():
    """With every patient contributing a single line, a patient's and a line's effects are the same
    thing: the nested model is not identified, so the model is by line, and says why."""
    from .nested_sim import simulate_nested

    tr = simulate_nested(60, 3, max_lines=1)
    res = fit_mixed(tr, ARMS)
    assert res.converged and not res.nested and res.random_effects == {"line": "~weeks"}
    assert any("cannot be told apart" in w for w in res.warnings)
    assert res.to_dict()["groups"] == "line_id" and res.to_dict()["levels"] == "patient/line"
