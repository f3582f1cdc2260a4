"""Data: load an export (or the sample), see the validation report, the guard and the attrition."""

import streamlit as st

from dashboard import state, ui
from dashboard.state import DatasetFiles

GUARD_RULES = ("identifier_column", "identifier_value", "age_over_89")

st.title("Data")
st.markdown("Load a de-identified visit export, or explore the synthetic sample cohort. Uploads are held in "
            "memory and sent nowhere; only building a meeting pack writes them, with the pack, to a temporary "
            "folder that is removed before the ZIP is offered.")
loaded = st.session_state.pop("data.loaded", None)  # the message of an upload just switched to
if loaded:
    st.success(loaded)

source = st.radio("Dataset", ["Sample cohort (synthetic)", "Upload an export"], horizontal=True, key="data.source",
                  index=0 if state.current_files() == state.sample_files() else 1)
if source.startswith("Sample"):
    if state.current_files() != state.sample_files() and st.button("Use the sample cohort", key="data.use_sample"):
        state.set_files(state.sample_files())
        st.rerun()
else:
    with st.form("data.form"):
        visits = st.file_uploader("Visits file: CSV (comma, semicolon or tab), XLSX or Parquet",
                                  type=["csv", "tsv", "txt", "xlsx", "xlsm", "parquet"], key="data.visits")
        therapies = st.file_uploader("Therapies file (optional; wins over systemic_therapy)",
                                     type=["csv", "tsv", "txt", "xlsx", "xlsm", "parquet"], key="data.therapies")
        mapping = st.file_uploader("Mapping file (optional TOML: [columns] and [drugs])", type=["toml"],
                                   key="data.mapping")
        submitted = st.form_submit_button("Load and validate", icon=":material/fact_check:")
    if submitted:
        if visits is None:
            st.warning("Choose a visits file first.")
        else:
            files = DatasetFiles((visits.getvalue(), visits.name),
                                 (therapies.getvalue(), therapies.name) if therapies else None,
                                 (mapping.getvalue(), mapping.name) if mapping else None, visits.name)
            ok, message, report = state.try_files(files)
            if ok:  # rerun, so that the sidebar and every page name the new dataset at once
                st.session_state["data.loaded"] = message
                st.rerun()
            st.error(message)
            if report is not None:  # only the rejected file's report: the previous dataset's would contradict it
                st.subheader(f"Validation report of {files.label}")
                ui.table(report.to_frame(), "validation_report_rejected", "data.rejected", scope="data")
            st.stop()

files = state.current_files()
prepared = state.current()
rep = prepared.report
c = prepared.counts
cols = st.columns(4)
cols[0].metric("Patients", c.get("patients", 0))
cols[1].metric("Visits", c.get("visits", 0))
cols[2].metric("Errors", len(rep.errors))
cols[3].metric("Warnings", len(rep.warnings))
ui.provenance()

st.subheader("Validation report")
if rep.findings:
    ui.table(rep.to_frame(), "validation_report", "data.report", scope="data")
else:
    st.success("No problems found.")

st.subheader("De-identification guard")
guard = [f for f in rep.findings if f.rule in GUARD_RULES]
if guard:
    st.error("The file holds identifiers and was refused: " + "; ".join(f"{f.message} ({f.fix})" for f in guard))
else:
    st.success("No identifier-like columns, free-text identifiers or ages over 89 found.")

st.subheader("Attrition: from rows to analysable lines")
if rep.ok:
    with ui.guard():
        d = state.derivation()
        ui.table(d.attrition, "attrition", "data.attrition", scope="export")
        ui.reproduce("print(full.attrition)", "analyze")
else:
    st.info("Fix the errors above to see the therapy lines.")
