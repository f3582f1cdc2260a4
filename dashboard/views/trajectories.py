"""Trajectories: CDASI activity per line aligned at line start, arm means, swimmer plot, sequences."""

from functools import partial

import streamlit as st

from analytics.display.plots import (MEASURES, binned_means, selected_patient, sankey_figure, spaghetti_figure,
                                     swimmer_figure, trajectory_values)
from dashboard import state, ui

st.title("Trajectories")
ui.provenance()


def open_patient(event, fig) -> None:
    patient = selected_patient(event, fig)
    if patient:
        state.set_timeline_patient(patient)
        st.switch_page("views/timeline.py")


ui.patient_level("individual trajectories and therapy lines per patient")
if ui.require_lines():
    c = state.cohort()
    d = c.derivation
    arms = list(d.options.arms)
    col1, col2 = st.columns([2, 1])
    measure = col1.radio("Show", list(MEASURES), horizontal=True, key="traj.measure",
                         format_func={"absolute": "CDASI activity", "change": "change from baseline",
                                      "percent": "percent change"}.get)
    weeks = col2.slider("Weeks after line start", 12, 104, 52, step=4, key="traj.weeks")
    traj = d.trajectories[d.trajectories["arm"] != ""]
    alpha = state.model_options().alpha
    fig = spaghetti_figure(traj, arms, measure, weeks, alpha=alpha)
    event = ui.figure(fig, f"trajectories_{measure}", "traj.spaghetti", select=True)
    st.caption("Select a point of a single line to open that patient's timeline.")
    open_patient(event, fig)
    ui.table(binned_means(trajectory_values(traj, measure), max_weeks=weeks), f"arm_means_{measure}",
             "traj.means")
    ui.reproduce(f"from analytics.display.plots import spaghetti_figure\n"
                 "traj = derivation.trajectories[derivation.trajectories['arm'] != '']\n"
                 f"spaghetti_figure(traj, {arms!r}, {measure!r}, {weeks}, alpha={alpha!r}).show()")

    st.subheader("Therapy lines per patient")
    n = st.slider("Patients shown (those with the most lines)", 10, 150, 40, step=10, key="traj.swimmers")
    fig = swimmer_figure(d, n)
    event = ui.figure(fig, "swimmer", "traj.swimmer", select=True)
    open_patient(event, fig)

    st.subheader("Therapy sequences")
    depth = st.slider("Lines shown", 2, 6, 4, key="traj.depth")
    ui.figure(partial(sankey_figure, d, depth), "sequences", "traj.sankey")
    ui.reproduce(f"from analytics.display.plots import sankey_figure, swimmer_figure\nswimmer_figure(derivation, {n}).show()\n"
                 f"sankey_figure(derivation, {depth}).show()")
