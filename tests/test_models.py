"""Model results: tiny hand-checkable fixtures, degenerate inputs, results.json, figure structure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analytics import DeriveOptions, ResponseRule, analyze, derive
from analytics.stats.competing import aalen_johansen, event_codes
from analytics.stats.cox import efron_score_residuals, robust_variance
from analytics.display.export import json_safe
from analytics.stats.interval import interval_bounds, npmle_median
from analytics.models import ModelOptions, fit_models
from analytics.lines.analysis_table import analysis_table
from analytics.display.style import ARM_COLORS
from analytics.stats.survival import fit_km, holm, risk_table
from analytics.stats.table1 import smd

from .conftest import prep

ARMS = ["MMF", "IVIG", "JAKi"]


# ------------------------------------------------------------------ tiny fixtures a reader can check
def test_km_by_hand():
    # Times 2, 4 (censored), 6, 8 in one arm. S(2) = 3/4; S(6) = 3/4 * 1/2 = 3/8; S(8) = 0.
    # Median: the first time S <= 0.5 is 6.
    df = pd.DataFrame({"arm": pd.Categorical(["MMF"] * 4, categories=ARMS), "time": [2, 4, 6, 8],
                       "event": [1, 0, 1, 1]})
    km = fit_km(df, ARMS, ticks=[0, 4, 8])
    sf = km.fitters["MMF"].survival_function_.iloc[:, 0]
    assert sf.loc[2] == pytest.approx(0.75) and sf.loc[6] == pytest.approx(0.375) and sf.loc[8] == 0
    assert km.summary.loc["MMF", "median"] == 6
    # Risk table: at risk = time >= tick; events and censored = time <= tick.
    assert km.risk.loc["MMF", "at_risk"].tolist() == [4, 3, 1]
    assert km.risk.loc["MMF", "events"].tolist() == [0, 1, 3]
    assert km.risk.loc["MMF", "censored"].tolist() == [0, 1, 1]


def test_holm_by_hand_and_against_statsmodels():
    from statsmodels.stats.multitest import multipletests

    # sorted 0.01, 0.02, 0.04 times 3, 2, 1 = 0.03, 0.04, 0.04; returned in the order given
    assert holm([0.04, 0.01, 0.02]).tolist() == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]  # capped at 1
    assert holm([]).tolist() == []
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 6, 15):
        p = rng.uniform(0, 0.2, n) ** 2
        p[rng.integers(0, n)] = p[0]  # a tie
        assert holm(p) == pytest.approx(multipletests(p, method="holm")[1], abs=1e-15)


def test_risk_table_counts():
    assert risk_table(np.array([1, 2, 3]), np.array([1, 0, 1]), [0, 2, 5]) == {
        "at_risk": [3, 2, 0], "events": [0, 1, 2], "censored": [0, 1, 1]}


def test_aalen_johansen_by_hand():
    # Times 1 (response), 2 (stopped), 3 (censored), 4 (response); n = 4.
    # t=1: S=3/4, CIF1 = 1/4. t=2: CIF2 = 3/4 * 1/3 = 1/4, S = 1/2. t=4: CIF1 = 1/4 + 1/2 * 1/1 = 3/4.
    cur = aalen_johansen(np.array([1, 2, 3, 4.0]), np.array([1, 2, 0, 1]), 1)
    assert cur["time"].tolist() == [1, 2, 4]
    assert cur["cif"].tolist() == pytest.approx([0.25, 0.25, 0.75])
    assert aalen_johansen(np.array([1, 2, 3, 4.0]), np.array([1, 2, 0, 1]), 2)["cif"].tolist() == pytest.approx(
        [0.0, 0.25, 0.25])


def test_aalen_johansen_ties_are_exact():
    # Two responses and one stop at t=1 among 4: CIF1(1) = 2/4, CIF2(1) = 1/4, whatever the order.
    t, c = np.array([1, 1, 1, 5.0]), np.array([1, 2, 1, 0])
    assert aalen_johansen(t, c, 1)["cif"].iloc[0] == pytest.approx(0.5)
    assert aalen_johansen(t, c, 2)["cif"].iloc[0] == pytest.approx(0.25)


def test_competing_event_codes():
    t = pd.DataFrame({"event": [1, 0, 0, 0], "censor_reason": ["", "stopped", "stopped", "added"],
                      "stop_reason": ["", "inefficacy", "remission", ""]})
    assert event_codes(t).tolist() == [1, 2, 0, 0]


def test_efron_residuals_reduce_to_the_textbook_formula_without_ties():
    # No ties, one covariate, beta = 0: U_i = delta_i (x_i - xbar(t_i)) - sum_{t_j <= t_i} (x_i - xbar(t_j)) / n_j.
    t = np.array([1.0, 2, 3, 4]); e = np.array([1, 1, 0, 1]); x = np.array([[1.0], [0], [1], [0]])
    u = efron_score_residuals(t, e, x, np.array([0.0]))
    xbar = {1: 0.5, 2: 1 / 3, 4: 0.0}
    n = {1: 4, 2: 3, 4: 1}
    expect = []
    for i in range(4):
        val = (x[i, 0] - xbar[t[i]]) if e[i] else 0.0
        val -= sum((x[i, 0] - xbar[tj]) / n[tj] for tj in xbar if tj <= t[i])
        expect.append(val)
    assert u[:, 0] == pytest.approx(expect)
    # Score residuals sum to the score U(beta) = sum_i delta_i (x_i - xbar(t_i)) = 1/2 - 1/3 + 0 = 1/6 at beta = 0.
    assert u.sum() == pytest.approx(1 / 6)


def test_robust_variance_sums_within_clusters():
    resid = np.array([[1.0], [1.0], [-2.0]])
    v = robust_variance(np.array([[1.0]]), resid, np.array(["a", "a", "b"]))
    assert v[0, 0] == pytest.approx(2.0**2 + 2.0**2)


def test_smd_by_hand():
    x = pd.Series([0, 1, 1, 1, 0, 0, 0, 1], dtype=float)
    g = pd.Series(["A"] * 4 + ["B"] * 4)
    # p_A = 0.75, p_B = 0.25: (0.5) / sqrt((0.1875 + 0.1875) / 2) = 1.1547
    assert smd(x, g, ["A", "B"], binary=True) == pytest.approx(0.5 / np.sqrt(0.1875))


def test_interval_bounds_by_hand():
    H = "patient_id,visit_day,cdasi_activity,systemic_therapy\n"
    p = prep(H + "P1,0,20,MMF\nP1,28,19,MMF\nP1,56,14,MMF\nP2,0,20,IVIG\nP2,28,19,IVIG\n")
    d = derive(p, DeriveOptions())
    b = interval_bounds(analysis_table(d, p), d).set_index("line_id")
    # P1 responds at week 8, previous assessment week 4: (4, 8]. P2 is censored at week 4: (4, inf).
    assert (b.loc["P1:1", "lower"], b.loc["P1:1", "upper"]) == (4, 8)
    assert b.loc["P2:1", "lower"] == 4 and np.isinf(b.loc["P2:1", "upper"])
    # the trajectories in any order (the bounds look each line's visits up by week)
    import dataclasses

    shuffled = dataclasses.replace(d, trajectories=d.trajectories.iloc[::-1].reset_index(drop=True))
    pd.testing.assert_frame_equal(interval_bounds(analysis_table(d, p), shuffled).set_index("line_id"), b)
    # a response at the first follow-up visit: its previous assessment is the baseline, week 0
    p = prep(H + "P3,0,20,MMF\nP3,14,10,MMF\n")
    d = derive(p, DeriveOptions())
    b = interval_bounds(analysis_table(d, p), d).set_index("line_id")
    assert (b.loc["P3:1", "lower"], b.loc["P3:1", "upper"]) == (0, 2)


def test_npmle_median_by_hand():
    # (0,4], (0,8], (4,8] and one censored after 8: the NPMLE puts 3/8, 3/8, 1/4 on (0,4], (4,8], (8,inf);
    # the median lies in (4, 8].
    assert npmle_median(np.array([0, 0, 4.0, 8]), np.array([4, 8, 8, np.inf]), np.array([1, 1, 1, 0])) == (4, 8)


# ------------------------------------------------------------------ degenerate inputs
H = "patient_id,visit_day,cdasi_activity,systemic_therapy,antibody,ild\n"


def _cohort(rows_per_patient, arms=("MMF", "IVIG", "JAKi"), scores=None, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(rows_per_patient):
        arm = arms[i % len(arms)]
        drug = {"MMF": "MMF", "IVIG": "IVIG", "JAKi": "tofacitinib"}[arm]
        ab = "mda5" if i % 4 == 0 else "tif1g"
        base = 20 if scores is None else scores
        for k, w in enumerate((0, 28, 56, 84)):
            s = base if scores is not None else max(0, int(base - k * rng.integers(0, 5) + rng.integers(-2, 3)))
            rows.append(f"P{i},{w},{s},{drug},{ab},{'yes' if i % 5 == 0 else 'no'}")
    return H + "\n".join(rows) + "\n"


def _models(text, rule="points:4"):
    p = prep(text)
    assert p.report.ok, p.report.to_text()
    a = analyze(p, DeriveOptions(ResponseRule.parse(rule)), models=True)
    doc = a.results()
    json.dumps(json_safe(doc), allow_nan=False)
    return a, doc


@pytest.mark.parametrize("case,text,rule", [
    ("arm with no lines", _cohort(30, arms=("MMF", "IVIG")), "points:4"),
    ("constant scores, no events", _cohort(30, scores=12), "points:4"),
    ("everything censored", _cohort(30), "clear"),
    ("one patient", _cohort(1), "points:4"),
    ("no lines in any arm", H + "P1,0,20,HCQ,mda5,no\nP1,30,10,HCQ,mda5,no\n", "points:4"),
    ("one arm only", _cohort(20, arms=("JAKi",)), "points:4"),
])
def test_degenerate_inputs_give_results_with_warnings(case, text, rule):
    a, doc = _models(text, rule)
    assert a.models.warnings, case
    ttr = doc["time_to_response"]
    assert list(ttr["arms"]) == ARMS  # every arm present, with zero counts when empty
    ref = ttr["cox"]["reference_arm"]
    assert set(ttr["cox"]["hazard_ratios"]) == set(ARMS) - {ref}  # every arm but the reference
    assert set(doc["mixed_model"]["slopes_per_week"]) == set(ARMS)
    m = a.models
    for fig in (m.km.figure(), m.cox.figure(), m.competing.figure(), m.mixed.figure(), m.interval.figure(),
                m.mixed.diagnostics_figure(), m.adjusted.balance_figure()):
        fig.to_plotly_json()
    for result in (m.km, m.cox, m.competing, m.interval, m.mixed, m.table1, m.adjusted):
        assert isinstance(result.summary, pd.DataFrame)


def test_arm_with_no_lines_has_zero_counts():
    _, doc = _models(_cohort(30, arms=("MMF", "IVIG")))
    jak = doc["time_to_response"]["arms"]["JAKi"]
    assert jak["lines"] == 0 and jak["events"] == 0 and jak["median"] is None and jak["median_ci"] == [None, None]
    assert doc["time_to_response"]["cox"]["hazard_ratios"]["JAKi"]["hr"] is None
    assert doc["time_to_response"]["logrank"]["df"] == 1


def test_reference_is_the_first_arm_with_lines():
    _, doc = _models(_cohort(30, arms=("IVIG", "JAKi")))
    assert doc["time_to_response"]["cox"]["reference_arm"] == "IVIG"
    assert doc["mixed_model"]["reference_arm"] == "IVIG"
    assert "weeks:arm[T.JAKi]" in doc["mixed_model"]["fixed_effects"]


def test_models_do_not_modify_their_inputs():
    p = prep(_cohort(30))
    d = derive(p, DeriveOptions())
    before = d.lines.copy(), d.trajectories.copy()
    fit_models(d, p)
    pd.testing.assert_frame_equal(d.lines, before[0])
    pd.testing.assert_frame_equal(d.trajectories, before[1])


def test_model_options_check_themselves():
    from analytics import OptionError

    with pytest.raises(OptionError):
        ModelOptions(ticks=(4, 8))
    with pytest.raises(OptionError):
        ModelOptions(trim=(0.9, 0.1))


# ------------------------------------------------------------------ results.json on the sample, figures by structure
@pytest.fixture(scope="module")
def sample_models(sample_dir):
    from analytics import load

    p, t = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    return analyze(p, DeriveOptions(), t, models=True)


def test_results_json_has_the_contract_sections(sample_models):
    doc = json_safe(sample_models.results())
    ttr = doc["time_to_response"]
    assert ttr["time_unit"] == "weeks" and list(ttr["arms"]) == ARMS
    for arm in ARMS:
        assert set(ttr["arms"][arm]) >= {"lines", "events", "median", "median_ci"}
    assert set(ttr["logrank"]) == {"statistic", "df", "p"} and ttr["logrank"]["df"] == 2
    cox = ttr["cox"]
    assert (cox["reference_arm"], cox["robust_cluster"], cox["ties"]) == ("MMF", "patient_id", "efron")
    assert set(cox["hazard_ratios"]) == {"IVIG", "JAKi"}
    assert set(cox["hazard_ratios"]["IVIG"]) >= {"hr", "ci", "p"}
    mm = doc["mixed_model"]
    assert (mm["formula"], mm["groups"], mm["re_formula"], mm["reml"]) == ("cdasi_activity ~ weeks * arm",
                                                                           "patient_id/line_id", "~weeks", True)
    assert mm["converged"] is True and mm["n_obs"] > 0 and mm["n_groups"] > mm["n_patients"] > 0
    assert mm["levels"] == "patient/line" and mm["df_method"].startswith("Satterthwaite")
    assert set(mm["group_counts"]) == {"patient_id", "line_id"} and set(mm["random_effects"]) == {"patient", "line"}
    assert set(mm["variance_components"]) == {"patient", "line", "residual_var"}
    assert mm["model"].startswith("cdasi_activity ~ weeks * arm + (") and "| patient_id:line_id)" in mm["model"]
    assert sum(mm["variance_shares"]["week_0"].values()) == pytest.approx(100)
    for term in mm["fixed_effects"].values():
        assert 1 < term["df"] < mm["n_obs"]
    assert set(mm["fixed_effects"]) == {"Intercept", "arm[T.IVIG]", "arm[T.JAKi]", "weeks", "weeks:arm[T.IVIG]",
                                        "weeks:arm[T.JAKi]"}
    assert set(mm["fixed_effects"]["Intercept"]) >= {"estimate", "se", "ci"}
    assert set(mm["slopes_per_week"]) == set(ARMS) and set(mm["slopes_per_week"]["MMF"]) >= {"estimate", "ci"}
    assert set(doc["timings_s"]) >= {"load", "validate", "derive", "survival", "mixed_model"}
    assert "Observational" in doc["comparison_note"]
    for key in ("competing_risks", "interval_censoring", "table1", "adjusted_comparison"):
        assert doc[key]
    json.dumps(doc, allow_nan=False)


def test_km_figure_structure(sample_models):
    km = sample_models.models.km
    fig = km.figure().to_plotly_json()
    texts = [t for t in fig["data"] if t.get("mode") == "text"]
    assert len(texts) == 3  # one risk-table row per arm
    for t, arm in zip(texts, ARMS):
        assert list(t["x"]) == km.ticks  # aligned with the x ticks
        r = km.risk.loc[arm]
        assert t["text"] == [f"{a} ({e}, {c})" for a, e, c in zip(r["at_risk"], r["events"], r["censored"])]
        assert t["textfont"]["color"] == ARM_COLORS[arm]
    lines = [t for t in fig["data"] if t.get("mode") == "lines"]
    assert [t["line"]["color"] for t in lines] == [ARM_COLORS[a] for a in ARMS]
    assert all("n = " in t["name"] for t in lines)
    lay = fig["layout"]
    assert list(lay["xaxis"]["tickvals"]) == km.ticks == list(lay["xaxis2"]["tickvals"])
    assert lay["xaxis"]["title"]["text"] == "Weeks since line start"
    assert "Log-rank" in lay["title"]["text"]


def test_arm_colours_are_the_same_in_every_figure(sample_models):
    m = sample_models.models
    for fig in (m.km.figure(), m.competing.figure(), m.mixed.figure(), m.cox.figure()):
        for trace in fig.to_plotly_json()["data"]:
            name = trace.get("name") or ""
            for arm, colour in ARM_COLORS.items():
                if name.startswith(arm):
                    assert colour in json.dumps(trace), (name, colour)


def test_axis_titles_have_units(sample_models):
    m = sample_models.models
    mixed = m.mixed.figure().to_plotly_json()["layout"]
    assert "points" in mixed["yaxis"]["title"]["text"] and "Weeks" in mixed["xaxis"]["title"]["text"]
    forest = m.cox_adjusted.figure().to_plotly_json()["layout"]
    assert "Hazard ratio" in forest["xaxis"]["title"]["text"] and forest["xaxis"]["type"] == "log"


def test_spaghetti_draws_each_line_separately():
    from analytics.display.plots import spaghetti_figure

    tr = pd.DataFrame({"patient_id": ["P1", "P1", "P2", "P2", "P2"], "line_id": ["P1:1", "P1:1", "P2:1", "P2:1", "P2:1"],
                       "arm": ["MMF"] * 5, "line_number": 1, "visit_day": [0, 28, 0, 28, 56],
                       "weeks": [0.0, 4, 0, 4, 8], "cdasi_activity": [20.0, 15, 30, 25, 20],
                       "baseline_cdasi": [20.0, 20, 30, 30, 30]})
    trace = spaghetti_figure(tr, ["MMF"], smooth=False).data[0]
    # two lines, one gap between them, and no invented points
    assert list(trace.x) == [0, 4, None, 0, 4, 8] and list(trace.y) == [20, 15, None, 30, 25, 20]
    assert list(trace.customdata) == ["P1", "P1", None, "P2", "P2", "P2"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_turnbull_matches_lifelines_npmle(seed):
    from lifelines.fitters.npmle import npmle

    from analytics.stats.interval import turnbull

    rng = np.random.default_rng(seed)
    n = 120
    true = rng.exponential(8, n)
    visits = np.arange(0, 40, 4.0)
    upper = np.array([visits[visits >= t][0] if (visits >= t).any() else np.inf for t in true])
    lower = np.where(np.isfinite(upper), upper - 4, 36.0) + 1e-6
    p_ours, iv = turnbull(lower, upper)
    p_ll, iv_ll = npmle(lower, upper)
    assert [tuple(x) for x in iv] == [(i.left, i.right) for i in iv_ll]
    np.testing.assert_allclose(p_ours, p_ll, atol=1e-5)


@pytest.mark.parametrize("covs,weighted", [((), False), (("baseline_cdasi", "line_number", "mda5", "ild"), False),
                                           ((), True)])
def test_vectorised_ph_test_matches_lifelines(sample_models, covs, weighted):
    from lifelines.statistics import proportional_hazard_test

    from analytics.stats.cox import _design, fit_cox, schoenfeld_ph_test
    from analytics.lines.analysis_table import analysis_table

    a = sample_models
    t = analysis_table(a.derivation, a.prepared).assign(w=lambda d: 1 + (d["line_number"] % 3) / 2)
    res = fit_cox(t, ARMS, covs, weights="w" if weighted else None)
    sub = t[t["arm"].isin(ARMS)].dropna(subset=list(covs)) if covs else t
    df, _ = _design(sub, ARMS, list(covs), "w" if weighted else None)
    fit_df = df.drop(columns=["patient_id"])
    ours = schoenfeld_ph_test(res.model, fit_df, "w" if weighted else None).set_index("term")
    theirs = proportional_hazard_test(res.model, fit_df, time_transform="rank").summary
    for term in ours.index:
        assert ours.loc[term, "statistic"] == pytest.approx(theirs.loc[term, "test_statistic"], rel=1e-8, abs=1e-10)
        assert ours.loc[term, "p"] == pytest.approx(theirs.loc[term, "p"], rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("interval", [True, False])
def test_weibull_time_ratios_from_weighted_distinct_rows_match_one_row_per_line(interval):
    """_aft fits one row per distinct (observation, arm) with a count weight; lifelines on one row
    per line must give the same time ratios and intervals (the same likelihood)."""
    from lifelines import WeibullAFTFitter

    from analytics.stats.interval import _aft

    rng = np.random.default_rng(5)
    n = 600
    arm = rng.choice(ARMS, n)
    true = rng.weibull(1.3, n) * np.select([arm == "MMF", arm == "IVIG"], [10.0, 13.0], 11.0)
    visits = np.arange(0, 49, 4.0)  # responses are seen at the next visit: many tied rows
    seen = np.array([visits[visits >= t][0] if (visits >= t).any() else np.inf for t in true])
    event = np.isfinite(seen)
    df = pd.DataFrame({"arm": arm, "time": np.where(event, seen, 48.0), "event": event.astype(int),
                       "lower": np.where(event, seen - 4, 48.0), "upper": seen})
    assert len(df.groupby(["lower", "upper", "arm"])) < n / 5
    ours = _aft(df, "MMF", ["IVIG", "JAKi"], interval, warns := [])
    assert warns == []
    x = pd.DataFrame({f"arm_{a}": (df["arm"] == a).astype(float) for a in ("IVIG", "JAKi")})
    plain = WeibullAFTFitter()
    if interval:
        plain.fit_interval_censoring(pd.concat([df[["lower", "upper"]].clip(lower=1e-3), x], axis=1), "lower", "upper")
    else:
        plain.fit(pd.concat([df[["time", "event"]], x], axis=1), "time", "event")
    s = plain.summary.loc["lambda_"]
    for a in ("IVIG", "JAKi"):
        r = s.loc[f"arm_{a}"]
        expected = [np.exp(r["coef"]), np.exp(r["coef"] - 1.959964 * r["se(coef)"]),
                    np.exp(r["coef"] + 1.959964 * r["se(coef)"])]
        np.testing.assert_allclose(ours[a], expected, rtol=1e-4)


def test_analysis_table_antibody_flags_by_hand():
    from analytics import DeriveOptions, ResponseRule

    rows = {"P1": "TIF1-gamma; NXP2", "P2": "negative", "P3": "unknown", "P4": "anti-MDA5", "P5": ""}
    text = "patient_id,visit_day,cdasi_activity,systemic_therapy,antibody\n" + "".join(
        f"{p},0,20,MMF,{ab}\n{p},30,10,MMF,{ab}\n" for p, ab in rows.items())
    p = prep(text)
    t = analysis_table(derive(p, DeriveOptions(ResponseRule.parse("points:4"))), p).set_index("patient_id")
    assert t.loc["P1", ["tif1g", "nxp2", "mda5"]].tolist() == [1.0, 1.0, 0.0]
    assert t.loc["P2", ["mda5", "negative"]].tolist() == [0.0, 1.0]
    assert t.loc["P4", ["mda5", "tif1g", "negative"]].tolist() == [1.0, 0.0, 0.0]
    for unknown in ("P3", "P5"):  # "unknown" and blank: not known, so every flag is missing
        assert t.loc[unknown, ["mda5", "tif1g", "nxp2", "sae", "mi2", "negative"]].isna().all()
