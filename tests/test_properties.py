"""Property-based tests: arbitrary bytes and tables give a report or a clear error, never an
unhandled exception; on any valid cohort the derived lines obey the contract's invariants."""

from __future__ import annotations

import os
import string

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analytics import DeriveOptions, InputError, ResponseRule, derive, prepare, read_bytes
from analytics.ingest.io import mapping_from_dict
from analytics.ingest.schema import THERAPY_COLUMNS, VISIT_COLUMNS

SETTINGS = settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = [c.name for c in VISIT_COLUMNS] + ["Patient ID", "notes", "MRN", "DOB", "age", ""]
CELLS = st.one_of(
    st.sampled_from(["", "NA", "0", "4", "20", "100", "101", "-1", "1e9", "nan", "inf", "90+", "2021-02-30",
                     "2020-01-01", "MMF", "IVIG + tofacitinib", "prednisone; HCQ", "=1+1", "@x", "yes", "no", "F",
                     "mda5;tif1g", "x@y.org", "555-123-4567", "12,5", "  7 "]),
    st.text(alphabet=string.printable, max_size=12),
)


def _ok_or_clear_error(data: bytes, name: str, kind: str = "visits"):
    try:
        raw = read_bytes(data, name, kind)
    except InputError as exc:
        assert str(exc)
        return None
    p = prepare(raw) if kind == "visits" else prepare(read_bytes(b"patient_id,visit_day,cdasi_activity\nP1,0,1\n"),
                                                      raw)
    assert isinstance(p.report.ok, bool)
    p.report.to_text()
    p.report.to_frame()
    if p.report.ok:
        derive(p, DeriveOptions())
    return p


@SETTINGS
@given(st.binary(max_size=400), st.sampled_from(["v.csv", "v.xlsx", "v.parquet", "upload", "v.txt"]))
def test_arbitrary_bytes(data, name):
    _ok_or_clear_error(data, name)


@SETTINGS
@given(st.text(max_size=400))
def test_arbitrary_text(text):
    _ok_or_clear_error(text.encode("utf-8"), "v.csv")


@SETTINGS
@given(st.lists(st.sampled_from(NAMES), min_size=1, max_size=7),
       st.lists(st.lists(CELLS, min_size=7, max_size=7), max_size=12),
       st.sampled_from([",", ";", "\t"]))
def test_arbitrary_tables(headers, rows, sep):
    clean = [c.replace(sep, " ").replace('"', "").replace("\n", " ").replace("\r", " ") for c in headers]
    lines = [sep.join(clean)] + [sep.join(c.replace(sep, " ").replace('"', "").replace("\n", " ")
                                          .replace("\r", " ") for c in r[:len(clean)]) for r in rows]
    _ok_or_clear_error("\n".join(lines).encode(), "v.csv")


@SETTINGS
@given(st.lists(st.lists(CELLS, min_size=5, max_size=5), max_size=10))
def test_arbitrary_therapies(rows):
    head = [c.name for c in THERAPY_COLUMNS if c.name not in ("start_date", "stop_date")]
    text = ",".join(head) + "\n" + "\n".join(",".join(c.replace(",", " ").replace('"', "").replace("\n", " ")
                                                        .replace("\r", " ") for c in r) for r in rows)
    _ok_or_clear_error(text.encode(), "t.csv", "therapies")


@SETTINGS
@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4))
def test_arbitrary_drug_mappings(drugs):
    m = mapping_from_dict({"drugs": drugs})
    p = prepare(read_bytes(b"patient_id,visit_day,cdasi_activity,systemic_therapy\nP1,0,20,MMF\n", mapping=m), None, m)
    assert isinstance(p.report.ok, bool)


# ---------------------------------------------------------------- invariants on valid random cohorts
AGENT_NAMES = ["HCQ", "MTX", "MMF", "IVIG", "Xeljanz", "prednisone", ""]


@st.composite
def cohorts(draw):
    rows = []
    for p in range(draw(st.integers(1, 6))):
        days = sorted(set(draw(st.lists(st.integers(-100, 700), min_size=1, max_size=10))))
        for d in days:
            act = draw(st.one_of(st.none(), st.integers(0, 60)))
            agents = draw(st.lists(st.sampled_from(AGENT_NAMES), max_size=3))
            rows.append(f"P{p},{d},{'' if act is None else act},{';'.join(a for a in agents if a)}")
    return "patient_id,visit_day,cdasi_activity,systemic_therapy\n" + "\n".join(rows) + "\n"


RULES = st.sampled_from(["points:4", "points:1", "percent:40", "atmost:10", "clear"])


@SETTINGS
@given(cohorts(), RULES, st.booleans())
def test_derived_lines_obey_the_contract(text, rule, confirm):
    p = prepare(read_bytes(text.encode()))
    assert p.report.ok, p.report.to_text()
    d = derive(p, DeriveOptions(ResponseRule.parse(rule), confirm))
    ln, tr = d.lines, d.trajectories
    assert ln["line_id"].is_unique
    for pid, g in ln.groupby("patient_id"):
        assert g["line_number"].tolist() == list(range(1, len(g) + 1))
        assert g["start_day"].is_monotonic_increasing
    inc = ln[ln["included"] == 1]
    exc = ln[ln["included"] == 0]
    assert set(exc["exclusion_reason"]) <= {"no baseline", "no follow-up"}
    assert (inc["exclusion_reason"] == "").all()
    assert ((inc["baseline_day"] >= inc["start_day"] - 60) & (inc["baseline_day"] <= inc["start_day"] + 7)).all()
    assert (inc["end_day"] >= inc["start_day"]).all()
    assert (inc["time_weeks"] > 0).all()
    t_day = inc["start_day"] + inc["time_weeks"] * 7
    assert (np.round(t_day) <= inc["end_day"]).all()
    assert set(inc.loc[inc["event"] == 0, "censor_reason"]) <= {"stopped", "switched", "added", "last visit"}
    assert (inc.loc[inc["event"] == 1, "censor_reason"] == "").all()
    # Trajectories: exactly the included lines, baseline first, weeks consistent with days.
    assert set(tr["line_id"]) == set(inc["line_id"])
    merged = tr.merge(ln[["line_id", "start_day"]], on="line_id")
    assert np.allclose(merged["weeks"], (merged["visit_day"] - merged["start_day"]) / 7)
    first = tr.groupby("line_id").head(1).set_index("line_id")
    assert (first["visit_day"] == inc.set_index("line_id").loc[first.index, "baseline_day"]).all()
    # An event is a trajectory visit that meets the rule.
    ev = inc[inc["event"] == 1]
    for _, r in ev.iterrows():
        day = r["start_day"] + round(r["time_weeks"] * 7)
        row = tr[(tr["line_id"] == r["line_id"]) & (tr["visit_day"] == day)]
        assert len(row) == 1
    # The input is untouched and the output is deterministic.
    again = derive(p, DeriveOptions(ResponseRule.parse(rule), confirm))
    pd.testing.assert_frame_equal(d.lines, again.lines)


ARM_DRUGS = ["MMF", "IVIG", "Xeljanz", "HCQ", ""]


@st.composite
def arm_cohorts(draw):
    rows = []
    for p in range(draw(st.integers(1, 12))):
        days = sorted(set(draw(st.lists(st.integers(0, 400), min_size=1, max_size=6))))
        drug = draw(st.sampled_from(ARM_DRUGS))
        ab = draw(st.sampled_from(["mda5", "tif1g", "", "unknown"]))
        ild = draw(st.sampled_from(["yes", "no", ""]))
        for d in days:
            act = draw(st.one_of(st.none(), st.integers(0, 40)))
            rows.append(f"P{p},{d},{'' if act is None else act},{drug},{ab},{ild}")
    return "patient_id,visit_day,cdasi_activity,systemic_therapy,antibody,ild\n" + "\n".join(rows) + "\n"


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "150")) // 5 or 1, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(arm_cohorts(), RULES)
@example(  # found by hypothesis in CI: six visits in the mixed model for its six fixed effects
    text="patient_id,visit_day,cdasi_activity,systemic_therapy,antibody,ild\n"
         "P0,29,,IVIG,tif1g,yes\nP0,316,,IVIG,tif1g,yes\nP0,392,,IVIG,tif1g,yes\nP0,393,9,IVIG,tif1g,yes\n"
         "P1,83,,,,\nP1,240,,,,\nP1,258,,,,\nP1,261,11,,,\nP1,263,,,,\n"
         "P2,79,3,,unknown,yes\nP2,95,,,unknown,yes\nP2,203,,,unknown,yes\nP2,252,27,,unknown,yes\n"
         "P2,317,17,,unknown,yes\nP2,342,,,unknown,yes\n"
         "P3,1,38,Xeljanz,tif1g,\nP3,2,20,Xeljanz,tif1g,\nP3,96,5,Xeljanz,tif1g,\nP3,263,1,Xeljanz,tif1g,\n"
         "P3,267,,Xeljanz,tif1g,\nP3,316,,Xeljanz,tif1g,\n"
         "P4,2,,IVIG,,yes\nP4,5,32,IVIG,,yes\nP4,256,32,IVIG,,yes\nP4,258,25,IVIG,,yes\nP4,261,19,IVIG,,yes\n"
         "P5,60,23,IVIG,mda5,\nP5,233,,IVIG,mda5,\nP5,277,40,IVIG,mda5,\nP5,298,16,IVIG,mda5,\n"
         "P5,370,33,IVIG,mda5,\nP5,400,,IVIG,mda5,\n"
         "P6,0,0,MMF,mda5,no\nP6,54,5,MMF,mda5,no\nP6,172,,MMF,mda5,no\nP6,256,2,MMF,mda5,no\n"
         "P6,257,0,MMF,mda5,no\nP6,260,,MMF,mda5,no\n"
         "P7,257,,MMF,tif1g,no\nP7,271,,MMF,tif1g,no\nP8,1,,IVIG,tif1g,yes\nP9,257,20,,unknown,no\n",
    rule="points:4")
def test_models_never_raise_and_results_are_json(text, rule):
    import json

    from analytics import analyze
    from analytics.display.export import json_safe

    p = prepare(read_bytes(text.encode()))
    assert p.report.ok, p.report.to_text()
    a = analyze(p, DeriveOptions(ResponseRule.parse(rule)), models=True)
    json.dumps(json_safe(a.results()), allow_nan=False)
