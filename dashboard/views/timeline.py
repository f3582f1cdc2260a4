"""Patient timeline: one de-identified patient's visits, scores and therapy lines."""

from functools import partial

import streamlit as st

from analytics.display.plots import timeline_figure
from dashboard import state, ui

st.title("Patient timeline")
ui.patient_level("the patient timeline", record=False)  # recorded per patient, below
prepared = state.current()
d = state.derivation()
patients = sorted(prepared.visits["patient_id"].unique().tolist())
if not patients:
    st.info("This dataset has no visits.")
else:
    chosen = state.timeline_patient()
    index = patients.index(chosen) if chosen in patients else 0
    pid = st.selectbox("Patient", patients, index=index, key="timeline.select",
                       help="Or select a point in the Trajectories page's charts")
    state.set_timeline_patient(pid)
    ui.patient_level(f"the timeline of patient {pid}")
    ui.figure(partial(timeline_figure, prepared, d, pid), f"timeline_{pid}", "timeline.fig", scope="export")
    st.subheader("Therapy lines")
    cols = ["line_id", "agent", "arm", "start_day", "end_day", "baseline_cdasi", "included", "exclusion_reason",
            "event", "time_weeks", "censor_reason", "stop_reason"]
    ui.table(d.lines.loc[d.lines["patient_id"] == pid, cols], f"lines_{pid}", "timeline.lines", scope="export")
    st.subheader("Visits")
    v = prepared.visits[prepared.visits["patient_id"] == pid].drop(columns=["row", "agents"], errors="ignore")
    ui.table(v, f"visits_{pid}", "timeline.visits", scope="data")
    ui.reproduce(f"from analytics.display.plots import timeline_figure\ntimeline_figure(prepared, full, {pid!r}).show()")
