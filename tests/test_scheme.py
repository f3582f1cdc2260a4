"""The stepwise scheme (contract section 6): the scheme file, step assignment, refractory lines and
adherence, each on a fixture worked by hand; a custom scheme through the command line."""

from __future__ import annotations

import json

import pytest

from analytics import DeriveOptions, OptionError, derive
from analytics.cli import main
from analytics.lines.scheme import Scheme
from analytics.spec import AnalysisSpec
from analytics.stats.scheme import fit_scheme

from .conftest import prep

# Days since each patient's first visit; response = a fall of 4 points (the default rule).
# P1: HCQ fails (20 -> 19), MMF from day 90 responds on day 150, IVIG from day 210 responds.
# P2: MMF responds (day 56), rituximab (outside the scheme) fails, tofacitinib (JAKi) responds.
# P3: HCQ without a baseline (excluded), then MMF fails.
# P4: MTX fails, then MMF (same step) fails.
# P5: tofacitinib alone (the top step) fails.
LADDER = """patient_id,visit_day,cdasi_activity,systemic_therapy
P1,0,20,HCQ
P1,28,20,HCQ
P1,84,19,HCQ
P1,90,19,MMF
P1,150,14,MMF
P1,200,14,MMF
P1,210,15,IVIG
P1,300,10,IVIG
P2,0,20,MMF
P2,56,15,MMF
P2,100,15,MMF
P2,110,15,rituximab
P2,200,15,rituximab
P2,210,15,tofacitinib
P2,300,10,tofacitinib
P3,0,,HCQ
P3,100,20,MMF
P3,190,19,MMF
P4,0,20,MTX
P4,84,20,MTX
P4,90,20,MMF
P4,180,20,MMF
P5,0,20,tofacitinib
P5,84,20,tofacitinib
"""


def _fit(text: str = LADDER, scheme: Scheme | None = None):
    p = prep(text)
    assert p.report.ok, p.report.to_text()
    d = derive(p, DeriveOptions())
    return fit_scheme(d, d, p, scheme=scheme)


@pytest.fixture(scope="module")
def ladder():
    return _fit()


def _line(r, line_id):
    return r.lines.set_index("line_id").loc[line_id]


# ------------------------------------------------------------------ the scheme file
def test_default_scheme_is_contract_section_6():
    s = Scheme.default()
    assert [(st.name, st.agents) for st in s.steps] == [
        ("Antimalarials", ("HCQ",)), ("Conventional immunosuppressants", ("MTX", "MMF")), ("IVIG", ("IVIG",)),
        ("JAK inhibitors and biologics", ("JAKi",))]
    assert (s.assess_weeks, s.assess_window_weeks, s.escalate_weeks) == (12.0, 4.0, 4.0)
    assert Scheme.from_toml(s.to_toml()) == s


@pytest.mark.parametrize("text, message", [
    ("", "no steps"),
    ('name = "x"\nstep = []', "no steps"),
    ('[[step]]\nname = "A"\nagents = ["MMFX"]', "unknown agent 'MMFX'"),
    ('[[step]]\nname = "A"\nagents = ["MMF"]\n[[step]]\nname = "B"\nagents = ["CellCept"]',
     "MMF (mycophenolate) is in step 1"),
    ('[[step]]\nname = "A"\nagents = ["JAKi"]\n[[step]]\nname = "B"\nagents = ["TOF"]', "an agent belongs to one step"),
    ('[[step]]\nname = "A"\nagents = []', "step 1 ('A') has no agents"),
    ('[[step]]\nagents = ["MMF"]', "step 1 has no name"),
    ('[[step]]\nname = "A"\nagents = ["prednisone"]', "not a systemic agent"),
    ('[[step]]\nname = "A"\nagents = ["MMF"]\n[[step]]\nname = "A"\nagents = ["IVIG"]', "both named 'A'"),
    ('assess_weeks = 0\n[[step]]\nname = "A"\nagents = ["MMF"]', "assess_weeks = 0"),
    ('assess_weeks = 4\nassess_window_weeks = 4\n[[step]]\nname = "A"\nagents = ["MMF"]', "must be below"),
    ('colour = "red"\n[[step]]\nname = "A"\nagents = ["MMF"]', "unknown key 'colour'"),
    ('[[step]]\nname = "A"\nagents = ["MMF"]\ndrugs = 1', "step 1: unknown key 'drugs'"),
    ('[[step]\nname = "A"', "is not valid TOML"),
])
def test_bad_scheme_files_say_what_to_fix(text, message):
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        Scheme.from_toml(text, "my_scheme.toml")
    assert "my_scheme.toml" in str(err.value)


def test_agents_by_code_group_or_name():
    s = Scheme.from_toml('[[step]]\nname = "A"\nagents = ["hydroxychloroquine", "cq"]\n'
                         '[[step]]\nname = "B"\nagents = ["jaki", "Rituxan"]')
    assert s.step_of("hydroxychloroquine") == 1 and s.step_of("chloroquine") == 1
    assert s.step_of("baricitinib") == 2 and s.label_of("baricitinib") == "JAKi"
    assert s.step_of("rituximab") == 2 and s.label_of("rituximab") == "RTX"
    assert s.step_of("mycophenolate") is None and s.label_of("mycophenolate") == "MMF"


# ------------------------------------------------------------------ step assignment
def test_each_line_takes_the_step_of_its_agent(ladder):
    steps = {lid: int(_line(ladder, lid)["step"]) for lid in ladder.lines["line_id"]}
    assert steps == {"P1:1": 1, "P1:2": 2, "P1:3": 3, "P2:1": 2, "P2:2": 0, "P2:3": 4, "P3:1": 1, "P3:2": 2,
                     "P4:1": 2, "P4:2": 2, "P5:1": 4}
    t = ladder.steps.set_index("step")
    # included lines and responses per step; P3's HCQ line has no baseline: excluded, counted apart
    assert t[["lines", "responses", "excluded_lines"]].to_dict("index") == {
        1: {"lines": 1, "responses": 0, "excluded_lines": 1}, 2: {"lines": 5, "responses": 2, "excluded_lines": 0},
        3: {"lines": 1, "responses": 1, "excluded_lines": 0}, 4: {"lines": 2, "responses": 1, "excluded_lines": 0}}
    assert t.loc[2, "response_pct"] == pytest.approx(40.0)
    assert t.loc[2, "patients"] == 4  # P1, P2, P3 and P4 (twice)


def test_agents_outside_the_scheme_are_counted_and_named(ladder):
    assert ladder.outside.to_dict("records") == [{"agent": "RTX", "lines": 1, "derived_lines": 1}]
    assert any("outside the scheme (RTX)" in w for w in ladder.warnings)
    doc = ladder.to_dict()
    assert doc["outside"] == {"lines": 1, "derived_lines": 1, "agents": {"RTX": {"lines": 1, "derived_lines": 1}}}
    # every included line is in a step or outside it: nothing dropped
    assert sum(s["lines"] for s in doc["steps"]) + doc["outside"]["lines"] == 10


# ------------------------------------------------------------------ refractory
def test_refractory_lines(ladder):
    ref = {lid for lid in ladder.lines["line_id"] if bool(_line(ladder, lid)["refractory"])}
    # P1:2 and P1:3 follow HCQ's failure (P1:3 although MMF responded in between); P2:3 follows
    # rituximab's failure; P4:2 follows MTX's. Not refractory: P2:2 (the earlier MMF responded),
    # P3:2 (the earlier HCQ line was excluded), first lines.
    assert ref == {"P1:2", "P1:3", "P2:3", "P4:2"}
    t = ladder.refractory.set_index("agent")
    assert list(t.index) == ["MMF", "IVIG", "JAKi"]  # in the scheme's order
    assert t[["lines", "responses"]].to_dict("index") == {"MMF": {"lines": 2, "responses": 1},
                                                          "IVIG": {"lines": 1, "responses": 1},
                                                          "JAKi": {"lines": 1, "responses": 1}}
    assert t.loc["MMF", "response_pct"] == 50.0
    lo, hi = t.loc["MMF", ["response_lower", "response_upper"]]
    assert lo == pytest.approx(9.4529, abs=1e-3) and hi == pytest.approx(90.5471, abs=1e-3)  # Wilson, 1 of 2
    doc = ladder.to_dict()["refractory"]
    assert doc["lines"] == 4 and doc["responses"] == 3
    assert doc["agents"]["MMF"] == {"step": 2, "lines": 2, "responses": 1, "response_pct": 50.0,
                                    "response_pct_ci": [pytest.approx(9.4529, abs=1e-3),
                                                        pytest.approx(90.5471, abs=1e-3)],
                                    "median_weeks": pytest.approx(60 / 7), "median_ci": [pytest.approx(60 / 7), None]}
    assert "confounded by indication" in doc["caveat"]


def test_refractory_history_is_the_whole_export_when_the_cohort_is_filtered():
    from analytics.lines.cohort import CohortFilter, apply_filter

    p = prep(LADDER)
    full = derive(p, DeriveOptions())
    only_ivig = apply_filter(full, p, CohortFilter(arms=("IVIG",))).derivation
    r = fit_scheme(only_ivig, full, p)
    assert list(r.lines["line_id"]) == ["P1:3"]
    assert bool(r.lines["refractory"].iloc[0])  # HCQ's failure is outside the filter, still history


# ------------------------------------------------------------------ adherence
def test_judged_at_the_assessment_time(ladder):
    # Every included line in a step reached week 8 (12 - 4) and has a scored visit in weeks 8-16.
    # P1:2's visits at weeks 8.6 and 15.7: the assessment is the one nearer week 12 (8.6).
    a = ladder.adherence.set_index(["measure", "step"])
    assert a.loc[("judged_at_assessment", "all"), ["numerator", "denominator"]].tolist() == [9, 9]
    assert _line(ladder, "P1:2")["assessment_weeks"] == pytest.approx(60 / 7)
    assert _line(ladder, "P2:1")["assessment_weeks"] == pytest.approx(100 / 7)  # 14.3 is nearer 12 than 8
    # judged at 16 weeks (window 12-20): P1:1 ended at week 12, P2:1 at 14.3 - both reach the window;
    # P1:1 has no visit in it (its last is week 12, in it: judged); P2:1's visits are at 8 and 14.3: judged
    r = _fit(scheme=Scheme.from_toml('assess_weeks = 16\n[[step]]\nname = "A"\nagents = ["HCQ", "MMF", "MTX"]\n'
                                     '[[step]]\nname = "B"\nagents = ["IVIG", "JAKi"]'))
    a16 = r.adherence.set_index(["measure", "step"])
    # reached week 12: P1:1 (12.0), P1:2 (15.7), P2:1 (14.3), P3:2 (12.9), P4:1 (12.0), P4:2 (12.9),
    # P1:3 (12.9), P2:3 (12.9), P5:1 (12.0) - all 9; scored visits in weeks 12-20: P1:1 (12), P1:2 (15.7),
    # P2:1 (14.3), P3:2 (12.9), P4:1 (12), P4:2 (12.9), P1:3, P2:3 (12.9), P5:1 (12) - all 9
    assert a16.loc[("judged_at_assessment", "all"), ["numerator", "denominator"]].tolist() == [9, 9]
    r20 = _fit(scheme=Scheme.from_toml('assess_weeks = 20\n[[step]]\nname = "A"\nagents = ["HCQ", "MMF", "MTX"]\n'
                                       '[[step]]\nname = "B"\nagents = ["IVIG", "JAKi"]'))
    a20 = r20.adherence.set_index(["measure", "step"])
    # window weeks 16-24: only P1:2 lasted 16 weeks or more (15.7: no) -> nobody reached it
    assert a20.loc[("judged_at_assessment", "all"), ["numerator", "denominator"]].tolist() == [0, 0]


def test_escalation_after_a_failed_assessment(ladder):
    # Failed assessments below the top step: P1:1 (HCQ, week 12) -> MMF (step 2) on day 90, within
    # 4 weeks of day 84: escalated. P3:2 (MMF): nothing after. P4:1 (MTX, day 84) -> MMF on day 90,
    # the same step: not escalated. P4:2 (MMF): nothing after. P5:1 fails at the top step: apart.
    a = ladder.adherence.set_index(["measure", "step"])
    assert a.loc[("escalated_after_failure", "all"), ["numerator", "denominator"]].tolist() == [1, 4]
    assert a.loc[("escalated_after_failure", "1"), ["numerator", "denominator"]].tolist() == [1, 1]
    assert a.loc[("escalated_after_failure", "2"), ["numerator", "denominator"]].tolist() == [0, 3]
    ne = ladder.not_escalated.set_index("line_id")
    assert list(ne.index) == ["P3:2", "P4:1", "P4:2"]
    assert ne.loc["P4:1", "started_in_window"] == "MMF"
    assert bool(_line(ladder, "P5:1")["failed_assessment"]) and bool(_line(ladder, "P5:1")["top_step"])
    # with 1 week to escalate, P1's MMF (6 days after the assessment) still counts; with a later
    # assessment it does not: assess at 8 weeks (window 4-12): P1:1's assessment is day 84 again
    r = _fit(scheme=Scheme.from_toml('escalate_weeks = 0.5\n[[step]]\nname = "A"\nagents = ["HCQ"]\n'
                                     '[[step]]\nname = "B"\nagents = ["MMF", "MTX"]\n'
                                     '[[step]]\nname = "C"\nagents = ["IVIG", "JAKi"]'))
    b = r.adherence.set_index(["measure", "step"])
    assert b.loc[("escalated_after_failure", "all"), ["numerator", "denominator"]].tolist() == [0, 4]


def test_skipped_steps(ladder):
    # First lines in steps 2+: P1:2 (step 1 tried), P1:3 (1, 2 tried), P2:1 (step 1 never: skipped),
    # P2:3 (step 4; step 3 never; step 1 already counted at P2:1), P3:2 (HCQ tried, although that
    # line was excluded), P4:1 (step 1 skipped), P5:1 (steps 1-3 skipped) -> 3 of 7 without a skip
    a = ladder.adherence.set_index(["measure", "step"])
    assert a.loc[("entered_without_skipping", "all"), ["numerator", "denominator"]].tolist() == [3, 7]
    sk = ladder.skipped.set_index("line_id")["skipped"].to_dict()
    assert sk == {"P2:1": "1. Antimalarials", "P2:3": "3. IVIG", "P4:1": "1. Antimalarials",
                  "P5:1": "1. Antimalarials, 2. Conventional immunosuppressants, 3. IVIG"}


def test_time_on_step(ladder):
    t = ladder.steps.set_index("step")
    # step 3: P1:3 runs from day 210 to the last visit (day 300): censored, so no median
    assert t.loc[3, "time_on_step"] != t.loc[3, "time_on_step"]
    # step 1: P1:1 ends on day 84 when HCQ stops: 12 weeks, an event
    assert t.loc[1, "time_on_step"] == pytest.approx(12.0)


# ------------------------------------------------------------------ the scheme everywhere
def test_spec_carries_the_scheme_and_its_link():
    spec = AnalysisSpec.from_toml('[scheme]\nassess_weeks = 16\n')
    assert spec.models.scheme.assess_weeks == 16 and spec.models.scheme.steps == Scheme.default().steps
    again = AnalysisSpec.from_toml(spec.to_toml())
    assert again == spec
    custom = AnalysisSpec.from_toml('[[scheme.step]]\nname = "Everything"\nagents = ["HCQ", "MMF", "IVIG"]\n')
    q = custom.to_query()
    assert "scheme.step" in q and AnalysisSpec.from_query(q) == custom
    with pytest.raises(OptionError, match=r"spec: \[scheme\].*unknown agent"):
        AnalysisSpec.from_toml('[[scheme.step]]\nname = "X"\nagents = ["nothing"]\n')


def test_a_custom_scheme_file_changes_the_results(tmp_path, capsys):
    visits = tmp_path / "visits.csv"
    visits.write_text(LADDER)
    assert main(["analyze", str(visits), "--out", str(tmp_path / "default")]) == 0
    custom = tmp_path / "ours.toml"
    custom.write_text('name = "Ours"\nassess_weeks = 12\n'
                      '[[step]]\nname = "First line"\nagents = ["HCQ", "MTX", "MMF"]\n'
                      '[[step]]\nname = "Refractory"\nagents = ["IVIG", "JAKi", "RTX"]\n')
    assert main(["analyze", str(visits), "--scheme", str(custom), "--out", str(tmp_path / "ours")]) == 0
    default = json.loads((tmp_path / "default" / "results.json").read_text())["scheme"]
    ours = json.loads((tmp_path / "ours" / "results.json").read_text())
    s = ours["scheme"]
    assert [x["name"] for x in default["steps"]][0] == "Antimalarials" and default["outside"]["lines"] == 1
    assert s["name"] == "Ours" and s["source"] == "ours.toml"
    assert [(x["name"], x["lines"], x["responses"]) for x in s["steps"]] == [("First line", 6, 2),
                                                                              ("Refractory", 4, 2)]
    assert s["outside"]["lines"] == 0  # rituximab is a step now
    assert ours["spec"]["scheme"]["step"][1]["agents"] == ["IVIG", "JAKi", "RTX"]
    assert "Refractory" in capsys.readouterr().out
    # a bad scheme stops before the data is read: exit 2, the file and the problem named
    bad = tmp_path / "bad.toml"
    bad.write_text('[[step]]\nname = "A"\nagents = ["aspirin"]\n')
    assert main(["analyze", str(visits), "--scheme", str(bad), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "unknown agent 'aspirin'" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()


def test_published_series_follow_the_interval_level():
    """Edge 2006: 10 of 12. Wilson at 95%: centre (10 + 1.92) / (12 + 3.84) = 0.7526, half-width
    1.96 * sqrt(10 * 2 / 12 + 0.96) / 15.84 = 0.2003, so 55.2-95.3%. IVIG is a range, not an interval."""
    from analytics.stats.scheme import published_series

    s95 = {a: (m, lo, hi, text) for a, m, lo, hi, text, _ in published_series(0.05)}
    s90 = {a: (m, lo, hi, text) for a, m, lo, hi, text, _ in published_series(0.10)}
    assert s95["MMF"][:3] == pytest.approx((83.33, 55.19, 95.30), abs=0.01)
    assert "95% CI 55-95%" in s95["MMF"][3]
    assert s90["MMF"][1] > s95["MMF"][1] and s90["MMF"][2] < s95["MMF"][2] and "90% CI" in s90["MMF"][3]
    assert s95["IVIG"][1:3] == s90["IVIG"][1:3] == (70.0, 87.0) and "CI" not in s95["IVIG"][3]
