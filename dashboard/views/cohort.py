"""Cohort: the filters every page shares, and Table 1 by arm."""

import streamlit as st

from analytics.lines.cohort import SEVERITY, CohortFilter
from dashboard import state, ui

st.title("Cohort")
opts = state.filter_options()
cur = state.cohort_filter()

with st.form("cohort.form"):
    c1, c2, c3 = st.columns(3)
    arms = c1.multiselect("Arms", opts["arms"], default=list(cur.arms), placeholder="all arms")
    lo, hi = opts["line_numbers"]
    lines = c1.slider("Line number", lo, max(hi, lo + 1), cur.line_numbers or (lo, max(hi, lo + 1)))
    severity = c1.radio("Baseline severity", SEVERITY, index=SEVERITY.index(cur.severity), horizontal=True,
                        help="mild: CDASI activity <= 14; moderate-severe: > 14 (Anyanwu 2015)")
    antibodies = c2.multiselect("Antibody", opts.get("antibodies", []), default=list(cur.antibodies),
                                placeholder="any antibody", disabled="antibodies" not in opts)
    ild = c2.radio("ILD", ("any", "yes", "no"), index=("any", "yes", "no").index(cur.ild), horizontal=True,
                   disabled=not opts["ild"])
    malignancy = c2.radio("Malignancy", ("any", "yes", "no"), index=("any", "yes", "no").index(cur.malignancy),
                          horizontal=True, disabled=not opts["malignancy"])
    sex = c3.multiselect("Sex", opts.get("sex", []), default=list(cur.sex), placeholder="any sex",
                         disabled="sex" not in opts)
    if "age" in opts:
        a_lo, a_hi = opts["age"]
        age = c3.slider("Age at onset (years)", a_lo, max(a_hi, a_lo + 1), cur.age or (a_lo, max(a_hi, a_lo + 1)))
    else:
        age = None
    if "period" in opts:
        p_lo, p_hi = opts["period"]
        period = c3.slider("Calendar year of line start", p_lo, max(p_hi, p_lo + 1),
                           cur.period or (p_lo, max(p_hi, p_lo + 1)))
    else:
        period = None
        c3.caption("Calendar period: the export gives days, not dates.")
    applied = st.form_submit_button("Apply filters", icon=":material/filter_alt:")

if applied:
    full = lambda v, bounds: None if v is None or tuple(v) == tuple(bounds) else tuple(v)  # noqa: E731
    state.set_cohort_filter(CohortFilter(
        arms=tuple(arms), line_numbers=full(lines, (lo, max(hi, lo + 1))), antibodies=tuple(antibodies), ild=ild,
        malignancy=malignancy, sex=tuple(sex), age=full(age, opts.get("age", (0, 0)) if age else (0, 0)),
        severity=severity, period=full(period, opts.get("period", (0, 0)) if period else (0, 0))))
    st.rerun()

c = state.cohort()
active = c.filter.describe()
st.markdown("**Active filters:** " + ("; ".join(active) if active else "none"))
st.caption(f"{c.lines_after} of {c.lines_before} therapy lines pass the filters; "
           f"{len(c.derivation.included())} are included in an arm.")
if ui.require_lines():
    st.subheader("Table 1: characteristics by arm")
    t1 = state.result("table1")
    ui.table(t1.table, "table1", "cohort.table1")
    st.caption("SMD: the largest absolute pairwise standardised mean difference between arms; > 0.1 marks "
               "imbalance. Later-line agents go to more refractory patients: compare with care.")
    ui.warnings(t1.warnings, "Table 1")
    ui.reproduce(t1)
