"""Quality: indicators for the departmental meeting, as run charts by period, with drill-down."""

from functools import partial

import pandas as pd
import streamlit as st

from analytics.stats.quality import INDICATORS
from dashboard import state, ui

st.title("Quality")
st.markdown("Indicators of whether care follows the stepwise scheme and whether patients are assessed, escalated "
            "and screened in time, computed from the whole export (the cohort filters do not apply). No validated "
            "indicator set exists for dermatomyositis; the definitions follow guidelines and practice.")
ui.provenance()
period = st.radio("Period", ("year", "quarter"), horizontal=True, key="quality.period")
q = state.quality()
history = st.toggle("Run charts from every stored export", key="quality.history",
                    help="Each period from the latest export of the library in which it is complete, so the charts "
                         "reach back past the current export (the Data page lists the library's exports).")
hq = None
if history:
    from analytics import CdasiError

    try:
        hq = state.quality_history()
    except CdasiError as exc:
        st.error(f"The library cannot be opened: {exc}", icon=":material/database:")
    else:
        if hq is None:
            st.info("The library holds no dataset yet: keep an export on the Data page, or run "
                    "`cdasi-outcomes import`.", icon=":material/database:")
for note in q.notes:
    st.info(note, icon=":material/info:")

defs = {i.key: i for i in INDICATORS}
summary = q.summary.assign(definition=lambda d: d["key"].map(lambda k: f"{defs[k].numerator} / {defs[k].denominator}"))
st.subheader("All indicators")
ui.table(summary, "quality_indicators", "quality.summary", scope="export")

with st.expander("Adherence to the stepwise scheme: where each measure is defined", icon=":material/stairs:"):
    from analytics.stats.scheme import ADHERENCE

    scheme = state.model_options().scheme
    st.markdown(f"The scheme's own indicators (judged at {scheme.assess_weeks:g} weeks, escalation within "
                f"{scheme.escalate_weeks:g} weeks, as the scheme defines them; the cohort filters apply) are on the "
                "Stepwise scheme page; the 12-week MCID indicators above do not depend on the scheme.")
    for key_, text in ADHERENCE.items():
        st.markdown(f"- **{key_}**: {text}.")
    st.page_link("views/scheme.py", label="Open the Stepwise scheme page", icon=":material/stairs:")

available = list(q.summary["key"])
key = st.selectbox("Indicator", available, format_func=lambda k: defs[k].name, key="quality.indicator")
ind = defs[key]
row = q.summary.set_index("key").loc[key]
cols = st.columns(3)
cols[0].metric(ind.name, f"{row['value']:.1f} {'days' if ind.unit == 'days' else '%'}")
cols[1].metric("Numerator", "–" if pd.isna(row["numerator"]) else f"{int(row['numerator']):,}")
cols[2].metric("Denominator", f"{int(row['denominator']):,}")
st.markdown(f"**Numerator:** {ind.numerator}.  \n**Denominator:** {ind.denominator}."
            + (f"  \n**Needs:** {ind.needs}." if ind.needs else ""))
unit = "days" if ind.unit == "days" else "%"
mopts = state.model_options()
targets, better = dict(mopts.targets), dict(mopts.better)
tcols = st.columns(2)
target = tcols[0].number_input(f"Target ({unit})", min_value=0.0, max_value=100.0 if unit == "%" else 3650.0,
                               value=targets.get(key), step=1.0, placeholder="none", key=f"quality.target.{key}",
                               help="The department's target for this indicator, drawn on the chart and kept in the "
                                    "analysis spec ([quality.targets], saved from the sidebar).")
direction = tcols[1].radio("Better", ("higher", "lower"), horizontal=True, key=f"quality.better.{key}",
                           index=0 if q.higher_is_better(key) else 1,
                           help="Whether a higher or a lower value is better ([quality.better] in the spec).")
default_better = "higher" if ind.higher_is_better else "lower"
new_targets = {k: v for k, v in targets.items() if k != key} | ({key: float(target)} if target is not None else {})
new_better = {k: v for k, v in better.items() if k != key} | ({key: direction} if direction != default_better else {})
if new_targets != targets or new_better != better:
    import dataclasses

    state.set_model_options(dataclasses.replace(mopts, targets=new_targets, better=new_better))
    st.rerun()
charted = hq if hq is not None and key in set(hq.by_period["key"]) else q
if charted is hq:
    sources = sorted(set(hq.by_period.loc[hq.by_period["key"] == key, "dataset_id"]))
    st.caption(f"Periods from the stored exports {', '.join(f'dataset {i}' for i in sources)} (the column dataset_id "
               "says which); the definitions, rule and targets are the current analysis'.")
ui.figure(partial(charted.figure, key), f"quality_{key}", "quality.chart", scope="export")
ui.table(charted.by_period[charted.by_period["key"] == key].drop(columns=["key", "name"]), f"quality_{key}_by_period",
         "quality.periods", scope="export")

st.subheader("Drill-down: what fails this indicator")
ui.patient_level(f"the drill-down of indicator {key}")
fail = q.failing.get(key, pd.DataFrame())
st.caption(f"{len(fail)} de-identified {ind.unit if ind.unit != 'days' else 'visit gaps over 6 months'} "
           "(open a patient on the Patient timeline page).")
ui.table(fail, f"quality_{key}_failing", "quality.failing", height=320, scope="export")
if len(fail) and "patient_id" in fail.columns:
    pid = st.selectbox("Open a patient's timeline", sorted(fail["patient_id"].astype(str).unique()),
                       key="quality.patient")
    if st.button("Open timeline", key="quality.open", icon=":material/person:"):
        state.set_timeline_patient(pid)
        st.switch_page("views/timeline.py")
ui.reproduce(q, "analyze")
