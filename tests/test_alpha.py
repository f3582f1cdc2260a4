"""Every interval of every analysis is a ``1 - alpha`` interval, with alpha from the analysis
spec (``[models] alpha``): checked against R at alpha 0.1 for Cox and Kaplan-Meier
(tests/reference/reference_alpha.R), and by construction for every registered analysis on the
sample cohort (the half-width on the scale the interval is built on scales with the normal
quantile, z(0.95) / z(0.975) = 0.8392 from alpha 0.05 to alpha 0.1), in every figure's labels too.

Tolerances: against R 1e-4 relative for hazard-ratio limits (as for the 95% intervals), 1e-6
absolute for Kaplan-Meier; by construction 1e-6 relative."""

from __future__ import annotations

import json
import numpy as np
import pandas as pd
import pytest

from analytics import ModelOptions, analyze, load
from analytics.protocol import z_value
from analytics.registry import entries, figures_of
from analytics.stats.cox import fit_cox
from analytics.stats.survival import fit_km

from .test_reference import ARMS, REF, survival_input

RATIO = z_value(0.1) / z_value(0.05)


@pytest.fixture(scope="module")
def ref_table():
    return survival_input()


@pytest.fixture(scope="module")
def expected():
    return pd.read_csv(REF / "expected_alpha.csv")


def test_z_value():
    assert z_value(0.05) == pytest.approx(1.959963984540054, abs=1e-12)
    assert z_value(0.1) == pytest.approx(1.6448536269514722, abs=1e-12)
    with pytest.raises(ValueError):
        z_value(0)


@pytest.mark.parametrize("model,covs", [("cox_unadjusted", ()),
                                        ("cox_adjusted", ("baseline_cdasi", "line_number", "mda5", "ild"))])
def test_cox_90pct_intervals_match_r(ref_table, expected, model, covs):
    res = fit_cox(ref_table, ARMS, covs, alpha=0.1)
    assert res.alpha == 0.1 and res.call.kwargs["alpha"] == 0.1
    exp = expected[expected["model"] == model]
    for _, r in exp.iterrows():
        term = {"armIVIG": "arm[T.IVIG]", "armJAKi": "arm[T.JAKi]"}.get(r["term"], r["term"])
        got = res.summary.loc[term]
        assert got["hr"] == pytest.approx(r["estimate"], rel=1e-4), term
        assert got["lower"] == pytest.approx(r["lower"], rel=1e-4), term
        assert got["upper"] == pytest.approx(r["upper"], rel=1e-4), term


def test_km_90pct_intervals_match_r(ref_table, expected):
    km = fit_km(ref_table, ARMS, alpha=0.1)
    med = expected[expected["model"] == "km_median"].set_index("term")
    for arm in ARMS:
        got = km.summary.loc[arm]
        assert got["median"] == pytest.approx(med.loc[arm, "estimate"], abs=1e-6)
        assert got["median_lower"] == pytest.approx(med.loc[arm, "lower"], abs=1e-6)
        assert got["median_upper"] == pytest.approx(med.loc[arm, "upper"], abs=1e-6)
    for _, r in expected[expected["model"] == "km_survival"].iterrows():
        arm, t = r["term"].split("@")
        kmf = km.fitters[arm]
        sf = kmf.survival_function_.iloc[:, 0]
        i = sf.index.searchsorted(float(t), side="right") - 1
        band = kmf.confidence_interval_survival_function_.iloc[i]
        assert sf.iloc[i] == pytest.approx(r["estimate"], abs=1e-6)
        assert band.iloc[0] == pytest.approx(r["lower"], abs=1e-6)
        assert band.iloc[1] == pytest.approx(r["upper"], abs=1e-6)


def test_the_reference_covers_what_it_says():
    exp = pd.read_csv(REF / "expected_alpha.csv")
    assert set(exp["model"]) == {"cox_unadjusted", "cox_adjusted", "km_median", "km_survival"}


# ------------------------------------------------------------------ every analysis, by construction
@pytest.fixture(scope="module")
def fits(sample_dir):
    prepared, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    return {a: analyze(prepared, models=ModelOptions(alpha=a)).models for a in (0.05, 0.1)}


def test_every_analysis_records_alpha(fits):
    m = fits[0.1]
    assert [e.name for e in entries() if e.name not in m] == []
    for name, result in m.results.items():
        assert result.alpha == 0.1, name
        assert result.call is not None and result.call.kwargs.get("alpha") == 0.1, name


def _cloglog(p):
    return np.log(-np.log(np.asarray(p, float)))


def _ratio(narrow, wide):
    narrow, wide = np.asarray(narrow, float), np.asarray(wide, float)
    ok = np.isfinite(narrow) & np.isfinite(wide) & (np.abs(wide) > 1e-9)
    assert ok.sum() > 0
    return narrow[ok] / wide[ok]


def _wald(table: pd.DataFrame, est: str, se: str, lower: str, upper: str, log: bool = False):
    f = np.log if log else (lambda x: x)
    z = z_value(0.1)
    e, s = table[est].to_numpy(float), table[se].to_numpy(float)
    np.testing.assert_allclose(f(table[lower].to_numpy(float)), (f(np.exp(e)) if log else e) - z * s, rtol=1e-6)
    np.testing.assert_allclose(f(table[upper].to_numpy(float)), (f(np.exp(e)) if log else e) + z * s, rtol=1e-6)


@pytest.mark.parametrize("name", ["cox", "cox_adjusted"])
def test_cox_intervals_are_wald_at_alpha(fits, name):
    _wald(fits[0.1][name].summary, "coef", "se", "lower", "upper", log=True)


def test_weighted_comparison_intervals_follow_alpha(fits):
    adj = fits[0.1].adjusted
    assert adj.cox.alpha == 0.1 and adj.km.alpha == 0.1
    _wald(adj.cox.summary, "coef", "se", "lower", "upper", log=True)


def _t_interval(est, se, df, lower, upper, alpha):
    from scipy import stats

    q = stats.t.ppf(1 - alpha / 2, np.asarray(df, float))
    np.testing.assert_allclose(np.asarray(lower, float), np.asarray(est, float) - q * np.asarray(se, float), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(upper, float), np.asarray(est, float) + q * np.asarray(se, float), rtol=1e-6)


def test_mixed_model_intervals_are_t_with_satterthwaite_df_at_alpha(fits):
    """Issue 16: every interval of the mixed model is t-based on its Satterthwaite df, at 1 - alpha."""
    for alpha in (0.1, 0.05):
        m = fits[alpha].mixed
        fe = m.fixed_effects
        assert (fe["df"] > 1).all() and np.isfinite(fe["df"]).all()
        _t_interval(fe["estimate"], fe["se"], fe["df"], fe["lower"], fe["upper"], alpha)
        s = m.slopes
        _t_interval(s["per_week"], s["se"], s["df"], s["lower"], s["upper"], alpha)
        d = s.dropna(subset=["diff_df"])
        assert len(d) == 2
        se_diff = fe.loc[[f"weeks:arm[T.{a}]" for a in d.index], "se"].to_numpy()
        _t_interval(d["diff"], se_diff, d["diff_df"], d["diff_lower"], d["diff_upper"], alpha)
    assert (fits[0.1].mixed.slopes["upper"] < fits[0.05].mixed.slopes["upper"]).all()


def test_km_intervals_scale_with_alpha(fits):
    k90, k95 = fits[0.1].km.summary, fits[0.05].km.summary
    for arm in k90.index:
        assert fits[0.1].km.fitters[arm].alpha == 0.1
    for col in ("cum_12w", "cum_24w"):  # log-log band on the survival scale, S = 1 - cumulative response
        for side in ("lower", "upper"):
            h90 = _cloglog(1 - k90[f"{col}_{side}"]) - _cloglog(1 - k90[col])
            h95 = _cloglog(1 - k95[f"{col}_{side}"]) - _cloglog(1 - k95[col])
            np.testing.assert_allclose(_ratio(h90, h95), RATIO, rtol=1e-6)
    # a median's interval is read off the band: the 90% one lies within the 95% one
    assert (k90["median_lower"] >= k95["median_lower"] - 1e-12).all()
    assert (k90["median_upper"] <= k95["median_upper"] + 1e-12).all()


def test_competing_risks_intervals_scale_with_alpha(fits):
    c90, c95 = fits[0.1].competing.summary, fits[0.05].competing.summary
    for col in ("response_12w", "response_24w"):
        for side in ("lower", "upper"):
            h90 = _cloglog(c90[f"{col}_{side}"]) - _cloglog(c90[col])
            h95 = _cloglog(c95[f"{col}_{side}"]) - _cloglog(c95[col])
            np.testing.assert_allclose(_ratio(h90, h95), RATIO, rtol=1e-6)


def test_interval_censoring_time_ratios_scale_with_alpha(fits):
    i90, i95 = fits[0.1].interval.summary, fits[0.05].interval.summary
    for tr, lo, hi in (("interval_tr", "interval_lower", "interval_upper"), ("right_tr", "right_lower", "right_upper")):
        np.testing.assert_allclose(_ratio(np.log(i90[hi] / i90[tr]), np.log(i95[hi] / i95[tr])), RATIO, rtol=1e-6)
        np.testing.assert_allclose(_ratio(np.log(i90[tr] / i90[lo]), np.log(i95[tr] / i95[lo])), RATIO, rtol=1e-6)


def test_observed_means_in_the_mixed_figure_scale_with_alpha(fits):
    o90, o95 = fits[0.1].mixed.observed_means, fits[0.05].mixed.observed_means
    h90, h95 = o90["upper"] - o90["mean"], o95["upper"] - o95["mean"]
    np.testing.assert_allclose(_ratio(h90, h95), RATIO, rtol=1e-6)


def test_no_figure_claims_95pct_at_alpha_01(fits):
    """What a reader sees: no figure of any analysis says 95% when the intervals are 90%, and
    every figure that draws an interval says 90%. (The competing-risks figure draws no band yet,
    and the interval-censoring figure shows Turnbull intervals, not confidence intervals.)"""
    m = fits[0.1]
    said_90 = set()
    for e in entries():
        for fname, spec in figures_of(e, m[e.name]).items():
            text = json.dumps(spec.make(None, ()).to_plotly_json(), default=str)
            assert "95%" not in text and "95 %" not in text, (e.name, fname)
            if "90%" in text:
                said_90.add(fname)
    assert {"trajectories", "km", "cox_unadjusted", "cox_adjusted", "mixed_model", "km_weighted"} <= said_90, said_90
