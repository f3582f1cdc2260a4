"""Hand-worked fixtures for every derivation rule of contract.md section 2.

Each fixture is small enough to check by hand; the comment above each assertion says why."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analytics import DeriveOptions, ResponseRule, derive
from analytics.lines.derive import meets_rule

from .conftest import line, lines_of, prep

H = "patient_id,visit_day,cdasi_activity,systemic_therapy\n"
T = "patient_id,drug,start_day,stop_day,stop_reason\n"


# ------------------------------------------------------------------ baseline window
@pytest.mark.parametrize("bday,expected", [(40, 40), (39, None), (100, 100), (107, 107), (108, None)])
def test_baseline_window_edges(bday, expected):
    # MMF starts on day 100 (therapies file). The baseline window is [100 - 60, 100 + 7] = [40, 107].
    # A scored visit on day `bday` is the only candidate; a follow-up visit on day 130 scores 10.
    d = lines_of(H + f"P1,{bday},20,\nP1,130,10,\n", T + "P1,MMF,100,,\n")
    ln = line(d, 1)
    if expected is None:
        assert ln["included"] == 0 and ln["exclusion_reason"] == "no baseline"
        assert pd.isna(ln["baseline_day"])
    else:
        assert ln["baseline_day"] == expected and ln["baseline_cdasi"] == 20 and ln["included"] == 1


def test_baseline_is_latest_scored_visit_in_window_and_skips_blank_scores():
    # Scored visits on 50 (25) and 90 (22); day 99 has no score, so the baseline is day 90 with 22.
    d = lines_of(H + "P1,50,25,\nP1,90,22,\nP1,99,,\nP1,120,17,MMF\n", T + "P1,MMF,100,,\n")
    ln = line(d, 1)
    assert (ln["baseline_day"], ln["baseline_cdasi"]) == (90, 22)
    # 22 - 17 = 5 >= 4: a response on day 120, (120 - 100) / 7 weeks.
    assert ln["event"] == 1 and ln["time_weeks"] == pytest.approx(20 / 7)


def test_baseline_after_start_moves_the_followup_window():
    # Baseline on day 105 (start 100 + 5); a visit on day 103 is before the baseline, so not follow-up.
    d = lines_of(H + "P1,103,30,\nP1,105,20,\nP1,140,16,\n", T + "P1,MMF,100,,\n")
    traj = d.trajectories
    assert traj["visit_day"].tolist() == [105, 140]
    assert traj["weeks"].tolist() == pytest.approx([5 / 7, 40 / 7])
    assert line(d, 1)["event"] == 1


# ------------------------------------------------------------------ follow-up window and end day
def test_visit_on_the_end_day_is_in_the_window():
    # MMF 0-150 stops for inefficacy; the visit on day 150 (score 15 = 20 - 5) is in the window.
    d = lines_of(H + "P1,0,20,\nP1,150,15,\nP1,200,5,\n", T + "P1,MMF,0,150,inefficacy\n")
    ln = line(d, 1)
    assert ln["end_day"] == 150 and ln["event"] == 1 and ln["time_weeks"] == pytest.approx(150 / 7)


def test_visit_after_the_end_day_is_not_in_the_window():
    # Same, but the improvement only shows on day 151, after the stop: censored at day 100, "stopped".
    d = lines_of(H + "P1,0,20,\nP1,100,19,\nP1,151,5,\n", T + "P1,MMF,0,150,inefficacy\n")
    ln = line(d, 1)
    assert ln["event"] == 0 and ln["censor_reason"] == "stopped" and ln["stop_reason"] == "inefficacy"
    assert ln["time_weeks"] == pytest.approx(100 / 7)
    assert d.trajectories["visit_day"].tolist() == [0, 100]


def test_end_day_is_the_earliest_of_stop_new_agent_and_last_visit():
    # MMF ongoing from 0; IVIG starts on 56; last visit 200. End of the MMF line = 56.
    d = lines_of(H + "P1,0,20,\nP1,28,18,\nP1,56,17,\nP1,84,10,\nP1,200,8,\n",
                 T + "P1,MMF,0,,\nP1,IVIG,56,,\n")
    mmf, ivig = line(d, 1), line(d, 2)
    assert mmf["end_day"] == 56 and ivig["end_day"] == 200
    # MMF: 20 -> 18 -> 17, never 4 points: censored at day 56, MMF still taken at the next visit: "added".
    assert mmf["event"] == 0 and mmf["censor_reason"] == "added" and mmf["time_weeks"] == pytest.approx(8)
    # IVIG: baseline = day 56 (17); 17 - 10 = 7 on day 84: event at (84 - 56) / 7 = 4 weeks.
    assert ivig["baseline_day"] == 56 and ivig["event"] == 1 and ivig["time_weeks"] == pytest.approx(4)


# ------------------------------------------------------------------ censoring reasons and ties
def test_tie_stop_and_new_agent_same_day_is_stopped():
    # MMF stops on day 56, the day IVIG starts: both set the end day; on a tie "stopped" wins.
    d = lines_of(H + "P1,0,20,\nP1,56,19,\nP1,90,5,\n", T + "P1,MMF,0,56,adverse_event\nP1,IVIG,56,,\n")
    mmf = line(d, 1)
    assert mmf["censor_reason"] == "stopped" and mmf["stop_reason"] == "adverse_event"


def test_tie_stop_and_last_visit_is_stopped():
    d = lines_of(H + "P1,0,20,\nP1,56,19,\n", T + "P1,MMF,0,56,patient_choice\n")
    assert line(d, 1)["censor_reason"] == "stopped"


def test_tie_new_agent_and_last_visit_is_switched_or_added():
    # IVIG starts on the last visit day (90); MMF is ongoing: another agent started, MMF continues.
    d = lines_of(H + "P1,0,20,\nP1,56,19,\nP1,90,18,\n", T + "P1,MMF,0,,\nP1,IVIG,90,,\n")
    assert line(d, 1)["censor_reason"] == "added"


def test_switched_when_the_agent_is_gone_by_the_next_visit():
    # IVIG starts on 56, MMF tapered off on day 60, before the next visit (84): a switch.
    d = lines_of(H + "P1,0,20,\nP1,56,19,\nP1,84,18,\n", T + "P1,MMF,0,60,inefficacy\nP1,IVIG,56,,\n")
    assert line(d, 1)["censor_reason"] == "switched"


def test_added_when_the_agent_is_still_taken_at_the_next_visit():
    # IVIG starts on 56; MMF continues until day 120, past the next visit (84): an add-on.
    d = lines_of(H + "P1,0,20,\nP1,56,19,\nP1,84,18,\nP1,140,18,\n", T + "P1,MMF,0,120,inefficacy\nP1,IVIG,56,,\n")
    assert line(d, 1)["censor_reason"] == "added"


def test_last_visit_reason():
    d = lines_of(H + "P1,0,20,MMF\nP1,56,19,MMF\nP1,90,18,MMF\n")
    ln = line(d, 1)
    assert ln["censor_reason"] == "last visit" and ln["time_weeks"] == pytest.approx(90 / 7)


def test_blank_last_visit_still_ends_the_window():
    # The last visit (day 300) has no score but is the patient's last visit: the window ends on 300,
    # and the line is censored at the last *scored* follow-up visit (day 90).
    d = lines_of(H + "P1,0,20,MMF\nP1,90,18,MMF\nP1,300,,MMF\n")
    ln = line(d, 1)
    assert ln["end_day"] == 300 and ln["time_weeks"] == pytest.approx(90 / 7)
    assert ln["censor_reason"] == "last visit"


def test_a_window_ending_after_the_last_scored_visit_takes_no_visit_of_another_patient():
    # P1's window ends on day 40, an unscored visit after every scored visit of the export; its only
    # scored visit is the baseline (day 0). P2's scored visit on day 0 is not P1's follow-up. (Found by the
    # property test when follow-up visits became a range join over visits sorted by patient.)
    d = lines_of(H + "P1,0,4,MMF\nP1,40,,MMF\nP2,0,0,MMF\nP3,0,9,MMF\nP3,30,3,MMF\n")
    for patient in ("P1", "P2"):
        ln = line(d, 1, patient)
        assert ln["included"] == 0 and ln["exclusion_reason"] == "no follow-up" and ln["n_followup_visits"] == 0
    assert line(d, 1, "P1")["end_day"] == 40
    assert line(d, 1, "P3")["event"] == 1  # the next patient's own follow-up is still found
    assert d.trajectories["patient_id"].tolist() == ["P3", "P3"]


# ------------------------------------------------------------------ response rules and confirmation
def _rule_fixture(scores, rule, confirm=False):
    rows = "".join(f"P1,{28 * i},{s},MMF\n" for i, s in enumerate(scores))
    return line(lines_of(H + rows, rule=rule, confirm=confirm), 1)


@pytest.mark.parametrize("scores,rule,week", [
    ([20, 17, 16, 15], "points:4", 8),   # 20 - 16 = 4 at the 2nd follow-up (day 56)
    ([20, 17, 16, 15], "points:5", 12),  # 20 - 15 = 5 at day 84
    ([20, 13, 12, 11], "percent:40", 8),  # 40% of 20 = 8: 12 is the first <= 12
    ([15, 13, 12, 11], "atmost:12", 8),
    ([10, 2, 0, 0], "clear", 8),
    ([20, 19, 18, 17], "points:4", None),
])
def test_rules(scores, rule, week):
    ln = _rule_fixture(scores, rule)
    if week is None:
        assert ln["event"] == 0
    else:
        assert ln["event"] == 1 and ln["time_weeks"] == pytest.approx(week)


def test_percent_exact_threshold_has_no_rounding_error():
    # 10 -> 6 is exactly 40%; a naive (b - a) / b * 100 gives 39.99999... on some inputs.
    assert meets_rule([10, 3], [6, 1.2], ResponseRule("percent", 40)).tolist() == [True, True]
    assert meets_rule([10], [6.01], ResponseRule("percent", 40)).tolist() == [False]


def test_percent_never_holds_at_baseline_zero_but_clear_and_atmost_do():
    assert _rule_fixture([0, 0, 0], "percent:1")["event"] == 0
    assert _rule_fixture([0, 0, 0], "clear")["event"] == 1
    assert _rule_fixture([0, 0, 0], "atmost:0")["event"] == 1


def test_confirmation_needs_the_next_visit_and_times_the_first():
    # 20 -> 15 (meets) -> 19 (not) -> 14 (meets) -> 13 (meets): the confirmed event is at day 84,
    # the first of the pair (84, 112): 12 weeks. Unconfirmed, it is day 28: 4 weeks.
    assert _rule_fixture([20, 15, 19, 14, 13], "points:4", confirm=True)["time_weeks"] == pytest.approx(12)
    assert _rule_fixture([20, 15, 19, 14, 13], "points:4", confirm=False)["time_weeks"] == pytest.approx(4)


def test_confirmation_fails_without_a_next_visit_in_the_window():
    ln = _rule_fixture([20, 19, 10], "points:4", confirm=True)
    assert ln["event"] == 0 and ln["time_weeks"] == pytest.approx(8)


def test_confirmation_skips_blank_scores():
    # Day 56 has no score, so the visit after day 28 "in the window" (with a score) is day 84.
    d = lines_of(H + "P1,0,20,MMF\nP1,28,15,MMF\nP1,56,,MMF\nP1,84,14,MMF\n", confirm=True)
    assert line(d, 1)["time_weeks"] == pytest.approx(4)


# ------------------------------------------------------------------ exclusions
def test_no_followup_is_excluded():
    d = lines_of(H + "P1,0,20,HCQ\nP1,28,18,HCQ+MMF\n")
    mmf = line(d, 2)
    assert mmf["included"] == 0 and mmf["exclusion_reason"] == "no follow-up" and pd.isna(mmf["event"])
    assert mmf["time_weeks"] != mmf["time_weeks"]  # NaN


def test_excluded_lines_are_counted_in_results():
    d = lines_of(H + "P1,0,20,HCQ\nP1,28,18,HCQ+MMF\nP2,0,,MMF\nP2,50,10,MMF\n")
    res = d.to_dict()
    assert res["excluded"] == {"no baseline": 1, "no follow-up": 1}
    assert res["derived"] == 3 and res["included"] == 1
    att = d.attrition.set_index("step")["n"]
    assert att["  excluded: no baseline"] == 1 and att["  excluded: no follow-up"] == 1


# ------------------------------------------------------------------ episodes and lines from visits
def test_episodes_from_visits_runs_and_ongoing():
    # HCQ at visits 1-3, not at 4, again at 5 (the last visit): two episodes, the second ongoing.
    d = lines_of(H + "P1,0,20,HCQ\nP1,30,20,HCQ\nP1,60,20,HCQ;MMF\nP1,90,15,MMF\nP1,120,14,HCQ;MMF\n")
    ep = d.episodes.sort_values(["agent", "start_day"])
    hcq = ep[ep["agent"] == "hydroxychloroquine"]
    assert hcq["start_day"].tolist() == [0, 120]
    assert hcq["stop_day"].tolist()[0] == 60 and math.isnan(hcq["stop_day"].tolist()[1])
    assert hcq["ongoing"].tolist() == [False, True]
    assert hcq["stop_reason"].tolist() == ["unknown", ""]
    # Lines: HCQ (1, day 0), MMF (2, day 60), HCQ again (3, day 120): a restart is a new line.
    assert d.lines["agent"].tolist() == ["hydroxychloroquine", "mycophenolate", "hydroxychloroquine"]
    assert d.lines["line_id"].tolist() == ["P1:1", "P1:2", "P1:3"]


def test_restart_of_the_same_agent_is_a_new_line():
    d = lines_of(H + "P1,0,20,MMF\nP1,30,12,MMF\nP1,60,14,\nP1,90,25,MMF\nP1,120,15,MMF\n")
    first, second = line(d, 1), line(d, 2)
    assert first["agent"] == second["agent"] == "mycophenolate"
    assert (first["start_day"], first["end_day"]) == (0, 30) and first["event"] == 1
    # The restart's baseline is day 90 (25); 25 - 15 = 10 on day 120.
    assert (second["baseline_day"], second["event"], second["time_weeks"]) == (90, 1, pytest.approx(30 / 7))


def test_add_on_keeps_the_first_agent_and_ends_its_window():
    # MTX from day 0; MMF added on day 60 (both listed): MTX's window ends at 60, reason "added".
    d = lines_of(H + "P1,0,20,MTX\nP1,30,19,MTX\nP1,60,19,MTX+MMF\nP1,90,12,MTX+MMF\n")
    mtx, mmf = line(d, 1), line(d, 2)
    assert mtx["end_day"] == 60 and mtx["censor_reason"] == "added"
    assert mmf["arm"] == "MMF" and mmf["event"] == 1


def test_switch_from_visits_is_stopped_with_unknown_reason():
    # MTX listed until day 30, MMF from day 60: MTX stops on 30 (its last visit), before MMF starts.
    d = lines_of(H + "P1,0,20,MTX\nP1,30,19,MTX\nP1,60,19,MMF\nP1,90,12,MMF\n")
    mtx = line(d, 1)
    assert mtx["end_day"] == 30 and mtx["censor_reason"] == "stopped" and mtx["stop_reason"] == "unknown"


def test_glucocorticoids_and_topicals_are_never_lines_and_line_numbers_count_every_systemic_agent():
    d = lines_of(H + "P1,0,20,prednisone;HCQ\nP1,30,19,prednisone;HCQ;clobetasol\nP1,60,19,HCQ+CellCept\n"
                 "P1,90,12,HCQ + CellCept\n")
    assert d.lines["agent"].tolist() == ["hydroxychloroquine", "mycophenolate"]
    assert d.lines["line_number"].tolist() == [1, 2]
    assert d.lines["arm"].tolist() == ["", "MMF"]


def test_two_agents_started_together_are_ordered_by_name_and_do_not_end_each_other():
    d = lines_of(H + "P1,0,20,\nP1,30,19,MMF;IVIG\nP1,60,10,MMF;IVIG\n")
    assert d.lines["agent"].tolist() == ["ivig", "mycophenolate"]
    assert d.lines["end_day"].tolist() == [60, 60] and d.lines["event"].tolist() == [1, 1]


def test_arms_option_can_make_other_agents_arms():
    d = lines_of(H + "P1,0,20,MTX\nP1,30,10,MTX\n", arms=("MMF", "MTX"))
    assert line(d, 1)["arm"] == "MTX"


def test_jak_inhibitors_share_an_arm():
    d = lines_of(H + "P1,0,20,Xeljanz\nP1,30,10,Xeljanz\nP2,0,20,Olumiant\nP2,30,18,Olumiant\n")
    assert d.lines["arm"].tolist() == ["JAKi", "JAKi"]
    assert d.lines["agent"].tolist() == ["tofacitinib", "baricitinib"]


# ------------------------------------------------------------------ trajectories and purity
def test_trajectory_rows_have_baseline_and_negative_weeks():
    d = lines_of(H + "P1,-14,20,\nP1,28,15,\n", T + "P1,MMF,0,,\n")
    t = d.trajectories
    assert t.columns.tolist() == ["patient_id", "line_id", "arm", "line_number", "visit_day", "weeks",
                                  "cdasi_activity", "baseline_cdasi"]
    assert t["weeks"].tolist() == pytest.approx([-2, 4])
    assert t["baseline_cdasi"].tolist() == [20, 20]


def test_derive_does_not_modify_its_input():
    p = prep(H + "P1,0,20,MMF\nP1,30,10,MMF\n")
    before = p.visits.copy(deep=True)
    derive(p, DeriveOptions())
    pd.testing.assert_frame_equal(p.visits, before)


def test_lines_columns_follow_the_contract():
    d = lines_of(H + "P1,0,20,MMF\nP1,30,10,MMF\n")
    assert d.lines.columns.tolist()[:15] == [
        "patient_id", "line_id", "line_number", "agent", "arm", "start_day", "end_day", "baseline_day",
        "baseline_cdasi", "included", "exclusion_reason", "event", "time_weeks", "censor_reason", "stop_reason"]


def test_dates_are_days_from_the_patients_first_visit():
    d = lines_of("patient_id,visit_date,cdasi_activity\nP1,2020-01-01,20\nP1,2020-01-29,15\n",
                 "patient_id,drug,start_date,stop_date,stop_reason\nP1,CellCept,2020-01-08,,\n")
    ln = line(d, 1)
    assert (ln["start_day"], ln["baseline_day"], ln["event"], ln["time_weeks"]) == (7, 0, 1, pytest.approx(3))


def test_fit_filter_drops_and_narrows_what_the_data_cannot_apply():
    from analytics.lines.cohort import CohortFilter, fit_filter

    opts = {"arms": ["MMF", "IVIG"], "line_numbers": (1, 4), "antibodies": ["mda5", "negative"], "ild": True,
            "malignancy": False, "age": (20, 70)}
    f = CohortFilter(arms=("MMF", "JAKi"), line_numbers=(2, 9), antibodies=("mda5", "tif1g"), ild="yes",
                     malignancy="no", sex=("female",), age=(80, 90), period=(2018, 2020))
    fitted, notes = fit_filter(f, opts)
    assert fitted == CohortFilter(arms=("MMF",), line_numbers=(2, 4), antibodies=("mda5",), ild="yes")
    text = " ".join(notes)
    for part in ("arms JAKi dropped", "antibody tif1g dropped", "sex filter (female) was dropped",
                 "malignancy filter was dropped", "line number filter 2-9 was narrowed to 2-4",
                 "age at onset filter 80-90 was dropped: this export's range is 20-70",
                 "calendar years filter was dropped: the export gives days, not dates"):
        assert part in text, part
    assert fit_filter(CohortFilter(), opts) == (CohortFilter(), [])
    same = CohortFilter(arms=("MMF",), line_numbers=(1, 3))
    assert fit_filter(same, opts) == (same, [])


@pytest.mark.parametrize("seed", range(6))
def test_followup_range_join_equals_joining_every_line_to_every_visit(seed):
    """The range join finds exactly the rows of the join it replaced (every line with every scored
    visit of its patient, kept when after the baseline and the start and up to the end day), in
    line order and by day within a line, on random designs: negative days, end days after the
    last scored visit, patients with no scored visit, lines of patients absent from the visits."""
    import numpy as np

    from analytics.lines.derive import followup_visits, patient_codes

    rng = np.random.default_rng(seed)
    pids = [f"P{i}" for i in range(40)]
    scored = pd.DataFrame({"patient_id": rng.choice(pids[:35], 300), "day": rng.integers(-50, 400, 300)})
    scored = scored.drop_duplicates(["patient_id", "day"]).reset_index(drop=True)
    scored["cdasi_activity"] = rng.integers(0, 60, len(scored)).astype(float)
    n = 120
    start = rng.integers(-80, 450, n)
    cand = pd.DataFrame({"line_id": [f"L{i}" for i in range(n)], "patient_id": rng.choice(pids, n),
                         "start_day": start, "baseline_day": (start + rng.integers(-60, 8, n)).astype(float),
                         "baseline_cdasi": 30.0, "end_day": (start + rng.integers(0, 500, n)).astype(float)})
    line_pc, visit_pc = patient_codes(cand["patient_id"], scored["patient_id"])
    got = followup_visits(cand, scored, line_pc, visit_pc)
    naive = cand.reset_index().merge(scored, on="patient_id")
    naive = naive[(naive["day"] > naive["baseline_day"]) & (naive["day"] > naive["start_day"])
                  & (naive["day"] <= naive["end_day"])].sort_values(["index", "day"]).drop(columns="index")
    assert len(got) > 50
    pd.testing.assert_frame_equal(got.reset_index(drop=True), naive.reset_index(drop=True), check_dtype=False)
