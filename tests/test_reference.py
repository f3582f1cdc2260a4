"""Our numbers against R (survival 3.5, lme4 1.1), from tests/reference/reference.R.

Tolerances (absolute): Kaplan-Meier medians, their CIs and the log-rank statistics 1e-6; Cox
coefficients and robust standard errors 1e-4; Aalen-Johansen cumulative incidences 1e-6;
mixed-model fixed effects 1e-3 (and their standard errors 1e-3, variance components 1%)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics.stats.competing import fit_competing
from analytics.stats.cox import fit_cox
from analytics.stats.mixed import MixedSpec, fit_mixed
from analytics.stats.survival import fit_km

REF = Path(__file__).resolve().parent / "reference"
ARMS = ["MMF", "IVIG", "JAKi"]


def survival_input() -> pd.DataFrame:
    """The analysis table R was given (survival_input.csv), as fit_km and fit_cox expect it."""
    t = pd.read_csv(REF / "survival_input.csv")
    t["arm"] = pd.Categorical(t["arm"], categories=ARMS)
    stop = t["code"] == 2
    t["censor_reason"] = np.where(stop, "stopped", np.where(t["event"] == 1, "", "last visit"))
    t["stop_reason"] = np.where(stop, "inefficacy", "")
    return t


@pytest.fixture(scope="module")
def table():
    return survival_input()


@pytest.fixture(scope="module")
def km(table):
    return fit_km(table, ARMS)


def test_km_medians_and_cis_match_r(km):
    exp = pd.read_csv(REF / "expected_km.csv").set_index("arm")
    for arm in ARMS:
        got = km.summary.loc[arm]
        assert got["lines"] == exp.loc[arm, "n"] and got["events"] == exp.loc[arm, "events"]
        assert got["median"] == pytest.approx(exp.loc[arm, "median"], abs=1e-6)
        assert got["median_lower"] == pytest.approx(exp.loc[arm, "lower"], abs=1e-6)
        assert got["median_upper"] == pytest.approx(exp.loc[arm, "upper"], abs=1e-6)


def test_km_survival_and_loglog_band_match_r(km):
    exp = pd.read_csv(REF / "expected_km_times.csv")
    for _, r in exp.iterrows():
        kmf = km.fitters[r["arm"]]
        sf = kmf.survival_function_.iloc[:, 0]
        i = sf.index.searchsorted(r["time"], side="right") - 1
        assert sf.iloc[i] == pytest.approx(r["surv"], abs=1e-6)
        band = kmf.confidence_interval_survival_function_.iloc[i]
        if np.isfinite(r["lower"]) and r["surv"] < 1:
            assert band.iloc[0] == pytest.approx(r["lower"], abs=1e-6)
            assert band.iloc[1] == pytest.approx(r["upper"], abs=1e-6)


def test_logrank_matches_r(km):
    exp = pd.read_csv(REF / "expected_logrank.csv").set_index("test")
    assert km.logrank["statistic"] == pytest.approx(exp.loc["all", "chisq"], abs=1e-6)
    assert km.logrank["df"] == exp.loc["all", "df"]
    for _, r in km.pairwise.iterrows():
        assert r["statistic"] == pytest.approx(exp.loc[f"{r['arm_a']}-{r['arm_b']}", "chisq"], abs=1e-6)


@pytest.mark.parametrize("model,covs", [("unadjusted", ()), ("adjusted", ("baseline_cdasi", "line_number", "mda5",
                                                                         "ild")), ("weighted", ())])
def test_cox_coefficients_and_robust_se_match_r(table, model, covs):
    exp = pd.read_csv(REF / "expected_cox.csv")
    exp = exp[exp["model"] == model].set_index("term")
    t = table.assign(w=1 + (table["line_number"] % 3) / 2)
    res = fit_cox(t, ARMS, covs, weights="w" if model == "weighted" else None)
    names = {"armIVIG": "arm[T.IVIG]", "armJAKi": "arm[T.JAKi]"}
    for term, r in exp.iterrows():
        got = res.summary.loc[names.get(term, term)]
        assert got["coef"] == pytest.approx(r["coef"], abs=1e-4), term
        assert got["se"] == pytest.approx(r["robust_se"], abs=1e-4), term
        assert got["hr"] == pytest.approx(np.exp(r["coef"]), abs=1e-4), term


def test_aalen_johansen_matches_r(table):
    exp = pd.read_csv(REF / "expected_cif.csv")
    res = fit_competing(table, ARMS)
    for _, r in exp.iterrows():
        for kind, col in (("response", "response"), ("stopped", "stopped")):
            cur = res.curves[r["arm"]][kind]
            i = cur["time"].searchsorted(r["time"], side="right") - 1
            got = cur["cif"].iloc[i] if i >= 0 else 0.0
            assert got == pytest.approx(r[col], abs=1e-6), (r["arm"], r["time"], kind)


def assert_matches_lme4(res, fe: dict, vc_rel: float) -> None:
    """Hold a MixedResult to lme4's fixed effects, SEs and variance components (reference.R);
    ``fe`` holds the pytest.approx tolerances of the estimates and SEs."""
    exp = pd.read_csv(REF / "expected_lmer.csv").set_index("term")
    names = {"(Intercept)": "Intercept", "armIVIG": "arm[T.IVIG]", "armJAKi": "arm[T.JAKi]",
             "weeks:armIVIG": "weeks:arm[T.IVIG]", "weeks:armJAKi": "weeks:arm[T.JAKi]"}
    for term, r in exp.iterrows():
        got = res.fixed_effects.loc[names.get(term, term)]
        assert got["estimate"] == pytest.approx(r["estimate"], **fe), term
        assert got["se"] == pytest.approx(r["se"], **fe), term
    vc = pd.read_csv(REF / "expected_lmer_vc.csv").set_index("component")["value"]
    for k, v in vc.items():
        got = res.variance_components["residual_var" if k == "residual_var" else "line"]
        assert (got if k == "residual_var" else got[k]) == pytest.approx(v, rel=vc_rel), k


def test_mixed_model_matches_lme4():
    tr = pd.read_csv(REF / "trajectories_input.csv")
    res = fit_mixed(tr, ARMS, MixedSpec(horizon_weeks=24, levels="line"))
    assert res.converged and res.fallback is None, res.warnings
    assert_matches_lme4(res, {"abs": 1e-3}, vc_rel=1e-2)


# The nested model (issue 16) against lme4 + lmerTest (reference_nested.R): estimates to 1e-4, SEs
# to 1e-3 and Satterthwaite df to 1e-2, relative, as the issue asks (the fits agree far closer).
R_TERMS = {"(Intercept)": "Intercept", "armIVIG": "arm[T.IVIG]", "armJAKi": "arm[T.JAKi]",
           "weeks:armIVIG": "weeks:arm[T.IVIG]", "weeks:armJAKi": "weeks:arm[T.JAKi]"}
R_LEVELS = {"patient_id:line_id": "line", "line_id": "line", "patient_id": "patient"}
NESTED_CASES = {
    "nested_slopes": ("nested_input.csv", MixedSpec(), {"patient": "~weeks", "line": "~weeks"}, None),
    "nested_intercepts": ("nested_input.csv", MixedSpec(random="intercept"), {"patient": "1", "line": "1"}, None),
    "nested_line_only": ("nested_input.csv", MixedSpec(levels="line"), {"line": "~weeks"}, None),
    # the sample cohort: the full model is singular in lme4 too, and the tool falls back to this one
    "sample_patient_intercept": ("trajectories_input.csv", MixedSpec(), {"patient": "1", "line": "~weeks"},
                                 "the patient-level random slope was dropped"),
}


def _nested_input(name: str) -> pd.DataFrame:
    d = pd.read_csv(REF / name)
    if "patient_id" not in d.columns:  # the sample's line ids are patient:line
        d["patient_id"] = d["line_id"].str.split(":").str[0]
    return d


@pytest.mark.parametrize("model", list(NESTED_CASES))
def test_nested_mixed_model_matches_lme4_and_lmertest(model):
    file, spec, random_effects, fallback = NESTED_CASES[model]
    res = fit_mixed(_nested_input(file), ARMS, spec)
    assert res.converged and res.random_effects == random_effects, (res.random_effects, res.warnings)
    assert (res.fallback or "").startswith(fallback or ""), res.fallback
    assert res.df_method.startswith("Satterthwaite")
    fe = pd.read_csv(REF / "expected_nested_fixed.csv").query("model == @model").set_index("term")
    assert len(fe) == 6
    for term, r in fe.iterrows():
        got = res.fixed_effects.loc[R_TERMS.get(term, term)]
        assert got["estimate"] == pytest.approx(r["estimate"], rel=1e-4), term
        assert got["se"] == pytest.approx(r["se"], rel=1e-3), term
        assert got["df"] == pytest.approx(r["df"], rel=1e-2), term
    sl = pd.read_csv(REF / "expected_nested_slopes.csv").query("model == @model").set_index("arm")
    for arm, r in sl.iterrows():
        got = res.slopes.loc[arm]
        assert got["per_week"] == pytest.approx(r["estimate"], rel=1e-4), arm
        assert got["se"] == pytest.approx(r["se"], rel=1e-3), arm
        assert got["df"] == pytest.approx(r["df"], rel=1e-2), arm
    vc = pd.read_csv(REF / "expected_nested_vc.csv", keep_default_na=False).query("model == @model")
    names = {("(Intercept)", ""): "intercept_var", ("weeks", ""): "slope_var",
             ("(Intercept)", "weeks"): "intercept_slope_cov"}
    for r in vc.itertuples():
        got = (res.variance_components["residual_var"] if r.grp == "Residual" else
               res.variance_components[R_LEVELS[r.grp]][names[(r.var1, r.var2)]])
        assert got == pytest.approx(r.vcov, rel=1e-3, abs=1e-6), (r.grp, r.var1, r.var2)


def test_lme4_finds_the_sample_cohorts_full_nested_model_singular_as_the_tool_does():
    info = pd.read_csv(REF / "expected_nested_info.csv").set_index("model")["singular"]
    assert bool(info["sample_slopes"]) and not bool(info["nested_slopes"])
    from analytics.stats.fastlmm import fit_lmm
    from patsy import dmatrix

    d = _nested_input("trajectories_input.csv")
    d["arm"] = pd.Categorical(d["arm"], categories=ARMS)
    X = dmatrix("weeks * arm", d, return_type="dataframe").to_numpy()
    fit = fit_lmm(X, d["cdasi_activity"].to_numpy(), pd.factorize(d["line_id"])[0], pd.factorize(d["patient_id"])[0],
                  d["weeks"].to_numpy())
    assert fit.singular_levels() == ["patient"]
    fe = pd.read_csv(REF / "expected_nested_fixed.csv").query("model == 'sample_slopes'")
    np.testing.assert_allclose(fit.beta, fe["estimate"].to_numpy()[[0, 2, 3, 1, 4, 5]], rtol=1e-4)


def test_the_nested_reference_input_is_the_simulation_it_says():
    """nested_input.csv is tests/nested_sim.py's simulate_nested(150, seed 2016), written with 10
    significant digits (reference_nested.R reads it)."""
    from .nested_sim import simulate_nested

    got, committed = simulate_nested(150, 2016), pd.read_csv(REF / "nested_input.csv")
    assert (got[["patient_id", "line_id", "arm"]].to_numpy() == committed[["patient_id", "line_id", "arm"]].to_numpy()).all()
    np.testing.assert_allclose(got[["weeks", "cdasi_activity"]].to_numpy(),
                               committed[["weeks", "cdasi_activity"]].to_numpy(), rtol=1e-9, atol=1e-8)
