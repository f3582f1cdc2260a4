"""Quality indicators, each on a fixture small enough to check by hand."""

from __future__ import annotations

import pytest

from analytics import DeriveOptions, OptionError, derive
from analytics.stats.quality import INDICATORS, compute_quality

from .conftest import ROOT, prep

H = "patient_id,visit_date,cdasi_activity,systemic_therapy,antibody"


def _q(text: str, period: str = "year"):
    p = prep(text)
    assert p.report.ok, p.report.to_text()
    return compute_quality(p, derive(p, DeriveOptions()), period)


def _ind(q, key):
    r = q.summary.set_index("key").loc[key]
    return int(r["numerator"]) if r["numerator"] == r["numerator"] else None, int(r["denominator"]), r["value"]


def test_cdasi_documented_by_year():
    # 2020: 2 of 3 visits scored; 2021: 1 of 1. Overall 3 of 4 = 75%.
    q = _q(H + "\nA,2020-01-10,20,,\nA,2020-05-10,,,\nA,2020-09-10,18,,\nA,2021-02-01,15,,\n")
    assert _ind(q, "cdasi_documented") == (3, 4, 75.0)
    per = q.by_period[q.by_period["key"] == "cdasi_documented"].set_index("period")
    assert per.loc["2020", "numerator"] == 2 and per.loc["2020", "denominator"] == 3
    assert per.loc["2021", "value"] == 100.0
    assert q.failing["cdasi_documented"]["row"].tolist() == [3]  # the spreadsheet row without a score


LINES = H + """
P1,2020-01-01,20,MMF,
P1,2020-01-29,19,MMF,
P1,2020-03-25,18,MMF,
P1,2020-04-10,18,MMF+IVIG,
P2,2020-01-01,20,MMF,
P2,2020-03-31,10,MMF,
P3,2020-01-01,20,MMF,
P3,2020-02-26,15,MMF,
P3,2020-04-30,14,MMF,
P4,2020-01-01,20,MMF,
P4,2020-02-20,19,MMF,
"""


def test_line_indicators_at_12_weeks():
    # Windows reaching day 84: P1 (ends day 100 when IVIG is added), P2 (last visit day 90), P3 (day 120);
    # P4's window ends on day 50: not in the denominators; IVIG (P1, one visit) has no follow-up.
    # Assessed by day 84: P1 (days 28, 84) and P3 (day 56); P2's only follow-up is on day 90 -> 2 of 3.
    # No MCID by day 84: P1 (20 -> 18) and P2 (nothing scored by day 84); P3 fell 5 points -> 2 of 3.
    # Escalated in days 85-112 after no MCID: P1 (IVIG on day 100); P2 not -> 1 of 2.
    q = _q(LINES)
    assert _ind(q, "assessed_by_12w")[:2] == (2, 3)
    assert _ind(q, "no_mcid_by_12w")[:2] == (2, 3)
    assert _ind(q, "escalated_after_no_mcid")[:2] == (1, 2)
    assert q.failing["assessed_by_12w"]["patient_id"].tolist() == ["P2"]
    assert sorted(q.failing["no_mcid_by_12w"]["patient_id"]) == ["P1", "P2"]
    assert q.failing["escalated_after_no_mcid"]["patient_id"].tolist() == ["P2"]


def test_median_interval_and_lost_to_follow_up():
    # A: gaps 30 and 60 days; B: gap 10 days -> median of (30, 60, 10) = 30.
    # The export ends 2022-06-01; A's last visit (2020-03-31) is more than 365 days before -> lost (1 of 2).
    q = _q(H + "\nA,2020-01-01,5,,\nA,2020-01-31,5,,\nA,2020-03-31,5,,\nB,2022-05-22,5,,\nB,2022-06-01,5,,\n")
    assert _ind(q, "median_visit_interval")[1:] == (3, 30.0)
    assert _ind(q, "lost_to_follow_up")[:2] == (1, 2)
    assert q.failing["lost_to_follow_up"]["patient_id"].tolist() == ["A"]


def test_lost_to_follow_up_by_period_is_the_state_at_each_period_end():
    # End of 2020: A (last 2020-03-31) and B (2020-12-01) seen within 365 days -> 0 of 2.
    # End of 2021: A's last visit is more than 365 days before 2021-12-31, B's (2021-06-01) is not -> 1 of 2.
    # 2022 (partial, at the export's end 2022-09-01): A and B lost, C (2022-09-01) not -> 2 of 3, as overall.
    q = _q(H + "\nA,2020-01-01,5,,\nA,2020-03-31,5,,\nB,2020-12-01,5,,\nB,2021-06-01,5,,\nC,2022-09-01,5,,\n")
    per = q.by_period[q.by_period["key"] == "lost_to_follow_up"].set_index("period")
    assert per.loc[["2020", "2021", "2022"], ["numerator", "denominator"]].values.tolist() == [[0, 2], [1, 2], [2, 3]]
    assert per.loc["2022", "complete"] == False and per.loc["2021", "complete"] == True  # noqa: E712
    assert _ind(q, "lost_to_follow_up")[:2] == (2, 3)


SCREEN = ("patient_id,visit_date,cdasi_activity,antibody,malignancy_screening_date,pft_date,hrct_date,"
          "antibody_panel_date\n"
          # H1 (anti-TIF1g): 2 full years of follow-up, screened in year 0 and year 1 -> meets the yearly rule
          "H1,2020-01-01,10,tif1g,2020-01-01,2020-01-01,2020-02-01,2019-12-01\n"
          "H1,2021-02-01,10,tif1g,2021-02-01,,,\n"
          "H1,2022-03-01,10,tif1g,,,,\n"
          # H2 (anti-NXP2): 2 years, screened only in year 0 -> fails
          "H2,2020-01-01,10,nxp2,2020-01-05,2020-06-01,,\n"
          "H2,2022-02-01,10,nxp2,,,,\n"
          # S1 (anti-MDA5, standard cancer risk): screened once in year 2 -> meets; PFT and HRCT in year 1
          "S1,2020-01-01,10,mda5,,2020-03-01,2020-03-02,2021-06-01\n"
          "S1,2022-01-15,10,mda5,2022-01-10,,,\n"
          # S2 (negative): 6 months of follow-up -> in no screening denominator
          "S2,2021-01-01,10,negative,,,,\n"
          "S2,2021-07-01,10,negative,,,,\n")


def test_screening_indicators():
    q = _q(SCREEN)
    assert _ind(q, "cancer_screening_high_risk")[:2] == (1, 2)  # H1 yes, H2 no
    assert _ind(q, "cancer_screening_standard_risk")[:2] == (1, 1)  # S1
    assert _ind(q, "ild_screening")[:2] == (2, 3)  # H1 and S1 have both within year 1; H2 has no HRCT
    assert _ind(q, "ild_screening_mda5")[:2] == (1, 1)
    # Antibody panel within [-365, +90] days of the first visit: H1 (-31 days) yes; S1 (+517) no; others none.
    assert _ind(q, "antibody_panel_at_baseline")[:2] == (1, 4)
    assert q.failing["cancer_screening_high_risk"]["patient_id"].tolist() == ["H2"]
    assert not q.notes


def test_day_exports_have_no_periods_and_say_so():
    q = _q("patient_id,visit_day,cdasi_activity,antibody\nA,0,5,unknown\nA,30,,unknown\nB,0,5,mda5\n")
    assert q.period == "all" and set(q.by_period["period"]) == {"all"}
    assert "lost_to_follow_up" not in set(q.summary["key"])
    assert any("days, not dates" in n for n in q.notes)
    assert any("proxy" in n for n in q.notes)
    assert _ind(q, "antibody_panel_at_baseline")[:2] == (1, 2)  # B's mda5 result; A's is unknown


def test_quarters_and_results_json():
    import json

    from analytics.display.export import json_safe

    q = _q(LINES, "quarter")
    assert set(q.by_period.loc[q.by_period["key"] == "cdasi_documented", "period"]) == {"2020Q1", "2020Q2"}
    doc = json_safe(q.to_dict())
    json.dumps(doc)
    assert doc["indicators"]["no_mcid_by_12w"]["numerator"] == 2
    suppressed = q.to_dict(min_cell=5)
    assert suppressed["indicators"]["no_mcid_by_12w"]["numerator"] == "<5"
    assert suppressed["indicators"]["no_mcid_by_12w"]["value"] is None


def test_readme_documents_every_indicator():
    readme = (ROOT / "README.md").read_text()
    for ind in INDICATORS:
        assert f"`{ind.key}`" in readme, ind.key
        assert ind.numerator in readme, ind.key


@pytest.mark.parametrize("period", ["month", ""])
def test_bad_period(period):
    from analytics import OptionError

    with pytest.raises(OptionError):
        _q(LINES, period)


def test_the_registry_lists_every_indicator_as_a_pack_figure():
    from analytics.registry import QUALITY_INDICATOR_KEYS, figure_names
    from analytics.stats.quality import INDICATORS

    assert QUALITY_INDICATOR_KEYS == tuple(i.key for i in INDICATORS)
    assert {f"quality_{i.key}" for i in INDICATORS} <= set(figure_names())


def test_a_target_and_a_direction_reach_the_table_the_results_and_the_run_chart(sample_dir):
    from analytics.pipeline import load

    p, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    q = compute_quality(p, derive(p, DeriveOptions()), "year", targets={"cdasi_documented": 95.0},
                        better={"escalated_after_no_mcid": "lower"})
    row = q.summary.set_index("key").loc["cdasi_documented"]
    assert row["target"] == 95.0 and row["better"] == "higher" and row["meets_target"] == (row["value"] >= 95)
    assert q.summary.set_index("key").loc["escalated_after_no_mcid", "better"] == "lower"
    assert q.summary.set_index("key")["target"].isna().sum() == len(q.summary) - 1
    d = q.to_dict()["indicators"]["cdasi_documented"]
    assert d["target"] == 95.0 and d["meets_target"] is bool(row["value"] >= 95)
    fig = q.figure("cdasi_documented")
    target = [t for t in fig.data if (t.name or "").startswith("target")]
    assert target and set(target[0].y) == {95.0} and "target 95%" in fig.layout.title.text
    assert "lower is better" in q.figure("escalated_after_no_mcid").layout.title.text
    with pytest.raises(OptionError, match="unknown quality indicators"):
        compute_quality(p, derive(p, DeriveOptions()), targets={"nope": 1})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_12_week_indicators_agree_with_a_join_of_every_line_to_every_visit(tmp_path, seed):
    """The range join behind 'assessed by 12 weeks' and 'no MCID by 12 weeks' against the plain
    join it replaced (every line to every scored visit of its patient, then filtered), on sample
    cohorts whose end days, baselines and 12-week limits fall on visit days."""
    from analytics import analyze, load
    from analytics.sample import write_sample
    from analytics.stats.quality import MCID, WEEK12

    files = write_sample(tmp_path, 150, seed)
    prepared, _ = load(files["visits"], therapies=files["therapies"])
    analysis = analyze(prepared)
    q = compute_quality(prepared, analysis.full, "year")
    v, ln = prepared.visits, analysis.full.lines
    base = ln[ln["baseline_day"].notna()].assign(end_day=lambda d: d["end_day"].astype(float))
    reach = base[base["end_day"] >= base["start_day"] + WEEK12]
    m = reach.merge(v.loc[v["cdasi_activity"].notna(), ["patient_id", "day", "cdasi_activity"]], on="patient_id")
    m = m[(m["day"] > m["start_day"]) & (m["day"] > m["baseline_day"]) & (m["day"] <= m["start_day"] + WEEK12)
          & (m["day"] <= m["end_day"])]
    not_assessed = set(reach["line_id"]) - set(m["line_id"])
    no_mcid = set(reach["line_id"]) - set(m.loc[m["baseline_cdasi"] - m["cdasi_activity"] >= MCID, "line_id"])
    assert set(q.failing["assessed_by_12w"]["line_id"]) == not_assessed
    assert set(q.failing["no_mcid_by_12w"]["line_id"]) == no_mcid
    assert _ind(q, "assessed_by_12w")[1] == len(reach) > 20 and 0 < len(no_mcid) < len(reach)


def test_visit_intervals_do_not_depend_on_the_order_of_the_visits():
    """Prepared visits come sorted by patient and day, and the visit-interval indicator then skips
    its sort; visits in another order (a hand-built Prepared) are sorted first, with the same
    result, and so do the per-patient indicators (their patient codes come from the sorted visits'
    runs, or from a sorted factorisation). The same checks of order, by hand: a patient's days out
    of order, patients out of order."""
    import dataclasses

    import pandas as pd

    from analytics.ingest.validate import sorted_by_patient_and_day

    p = prep(H + "\nA,2020-01-01,5,,\nA,2020-01-31,5,,\nA,2020-03-31,5,,\nB,2022-05-22,5,,\nB,2022-06-01,5,,\n")
    full = derive(p, DeriveOptions())
    assert sorted_by_patient_and_day(p.visits)
    shuffled = dataclasses.replace(p, visits=p.visits.iloc[[4, 2, 0, 3, 1]])
    assert not sorted_by_patient_and_day(shuffled.visits)
    a, b = compute_quality(p, full, "year"), compute_quality(shuffled, full, "year")
    assert _ind(a, "median_visit_interval")[1:] == (3, 30.0)
    assert _ind(b, "median_visit_interval") == _ind(a, "median_visit_interval")
    pd.testing.assert_frame_equal(a.by_period, b.by_period)
    pd.testing.assert_frame_equal(a.summary, b.summary)  # the per-patient indicators: codes from runs, or sorted
    for key in a.failing:
        pd.testing.assert_frame_equal(a.failing[key].sort_values(list(a.failing[key].columns)).reset_index(drop=True),
                                      b.failing[key].sort_values(list(b.failing[key].columns)).reset_index(drop=True))
    days_back = pd.DataFrame({"patient_id": ["A", "A", "B"], "day": [5, 3, 0]})
    assert not sorted_by_patient_and_day(days_back)
    assert sorted_by_patient_and_day(pd.DataFrame({"patient_id": ["A", "B", "B"], "day": [9, 0, 0]}))


def test_per_patient_first_and_last_visits_from_runs_match_a_groupby():
    """Sorted visits give each patient's earliest and latest date (and day, and any number) run by
    run; the result is a groupby's: missing dates and numbers skipped, a patient with none of them
    missing, the same dtype, index and name. By hand: P1's dates are NaT and 2020-03-01, so both
    its min and max are 2020-03-01; P2 has no date at all."""
    import numpy as np
    import pandas as pd

    from analytics.stats.quality import _ByPatient

    rng = np.random.default_rng(1)
    pid = np.repeat([f"P{i:03d}" for i in range(50)], rng.integers(1, 6, 50))
    n = len(pid)
    dates = pd.Series(pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D"))
    dates[rng.random(n) < 0.4] = pd.NaT
    v = pd.DataFrame({"patient_id": pid, "visit_date": dates, "day": rng.integers(-5, 900, n),
                      "score": np.where(rng.random(n) < 0.4, np.nan, rng.random(n))})
    v.loc[v["patient_id"] == "P003", ["visit_date", "score"]] = [pd.NaT, np.nan]
    runs, grouped = _ByPatient(v, True), _ByPatient(v, False)
    for column in ("visit_date", "day", "score"):
        for how in ("min", "max"):
            pd.testing.assert_series_equal(runs(column, how), grouped(column, how))
    assert runs("visit_date", "min").isna()["P003"]

    hand = pd.DataFrame({"patient_id": ["P1", "P1", "P2"], "day": [0, 30, 0],
                         "visit_date": pd.to_datetime([None, "2020-03-01", None])})
    by = _ByPatient(hand, True)
    assert by("visit_date", "min")["P1"] == by("visit_date", "max")["P1"] == pd.Timestamp("2020-03-01")
    assert pd.isna(by("visit_date", "min")["P2"]) and pd.isna(by("visit_date", "max")["P2"])
