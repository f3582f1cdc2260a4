"""Shared summary: the current analysis as a shared meeting pack shows it, aggregates only, with
small cells suppressed and no patient-level table or figure, a tab per section of the pack. The page a viewer works from; an
analyst sees here exactly what a viewer (or a shared pack) sees."""

import streamlit as st

from dashboard import state, ui

st.title("Shared summary")
st.markdown("Every analysis of the current dataset, definitions and cohort filters, as a shared meeting pack shows "
            "it: counts below the threshold are suppressed (with the cells they could be recovered from), arms "
            "too small to draw are left out, and nothing lists patients or lines.")
ui.provenance()
floor = state.min_cell_floor() or 5
levels = sorted({floor, 11, max(floor, state.pack_choices().min_cell or floor)})
min_cell = st.radio("Small cells", levels, horizontal=True, key="summary.min_cell",
                    format_func=lambda n: f"counts below {n} suppressed")
if ui.require_lines():
    st.caption(f"Counts below {min_cell} are shown as <{min_cell}. The Report page builds all of it as a "
               "meeting pack.")
    # One tab per section of the pack; only the open tab's analyses are fitted (and cached).
    headings = state.summary_headings()
    tabs = st.tabs(headings, key="summary.tab", on_change="rerun")
    for heading, tab in zip(headings, tabs):
        with tab:
            if not tab.open:
                continue
            shown = state.contents(min_cell, heading)
            sections = [sec for sec in shown.sections if sec.figures or sec.tables]
            if not sections:
                st.info(f"{heading}: nothing in this section can be shared at this threshold (patient-level "
                        "only, or every group too small).")
            for sec in sections:
                for name in sec.figures:
                    fig, caption = shown.figures[name]
                    st.markdown(f"**{caption}**")
                    ui.figure(fig, name, f"summary.{name}", scope=shown.scopes.get(name, "cohort"))
                for name in sec.tables:
                    if name in shown.drill_down:
                        continue
                    st.markdown(f"**{shown.titles.get(name, name)}**")
                    ui.table(shown.tables[name], name, f"summary.{name}", scope=shown.scopes.get(name, "cohort"))
                for note in sec.notes:
                    st.caption(note)
