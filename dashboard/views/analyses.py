"""All analyses: every registered analysis (analytics.registry), drawn the same way: its
figures, tables (with downloads), notes, warnings and the code that reproduces it. A model
added to the registry appears here without any edit to the dashboard."""

from functools import partial

import streamlit as st

from analytics.registry import entries, figures_of, tables_of
from dashboard import state, ui

st.title("All analyses")
st.markdown("Every analysis of the tool, on the current dataset, definitions and cohort filters, in one place. "
            "The dedicated pages show the same results with their controls.")
ui.provenance()
ui.patient_level("every analysis, unsuppressed")

if ui.require_lines():
    available = entries()
    names = [e.name for e in available]
    titles = {e.name: e.title for e in available}
    name = st.selectbox("Analysis", names, format_func=titles.get, key="analyses.name")
    e = next(x for x in available if x.name == name)
    result = state.result(name)
    scope = "export" if e.whole_export else "cohort"
    if e.whole_export:
        st.info("Computed on the whole export: the cohort filters do not apply.", icon=":material/info:")
    for fig_name, spec in figures_of(e, result).items():
        st.markdown(f"**{spec.caption}**")
        ui.figure(partial(spec.make, None, ()), fig_name, f"analyses.{name}.{fig_name}", scope=scope)
    for table_name, spec in tables_of(e, result).items():
        st.markdown(f"**{spec.title or table_name}**")
        ui.table(spec.frame, table_name, f"analyses.{name}.{table_name}", scope=scope)
    for note in e.notes(result) if e.notes else []:
        st.caption(note)
    ui.warnings(list(getattr(result, "warnings", []) or []), e.title)
    ui.reproduce(result, "analyze")
