"""Data: load an export (or the sample), see the validation report, the guard and the attrition."""

import streamlit as st

from dashboard import state, ui
from dashboard.state import DatasetFiles
from analytics.ingest.deid import GUARD_RULES



def _guard(report) -> bool:
    """The de-identification guard's refusals (each with its column, rule, masked example and fix) and
    any waiver of the patient-id rule. True when something was shown."""
    refused = [f for f in report.findings if f.rule in GUARD_RULES and f.severity == "error"]
    waived = [f for f in report.findings if f.rule == "patient_id_override"]
    if refused:
        st.error("Refused by the de-identification guard: the file holds identifiers.\n\n" + "\n".join(
            f"- **{f.rule}** ({f.file}, column `{f.column}`): {f.message}. *Fix:* {f.fix}" for f in refused),
            icon=":material/shield:")
    for f in waived:
        st.info(f"Patient-id rule waived by the mapping file ({f.file}): {f.message}. The reason is recorded in "
                "results.json and manifest.json.", icon=":material/shield:")
    return bool(refused or waived)


st.title("Data")
st.markdown("Load a de-identified visit export, or explore the synthetic sample cohort. Uploads are held in "
            "memory and sent nowhere; only building a meeting pack writes them, with the pack, to a temporary "
            "folder that is removed before the ZIP is offered.")
loaded = st.session_state.pop("data.loaded", None)  # the message of an upload just switched to
if loaded:
    st.success(loaded)

SOURCES = ["Sample cohort (synthetic)", "Upload an export", "From the library"]
if not state.can("upload"):  # a viewer opens what the library holds; an upload's report names patients
    SOURCES.remove("Upload an export")
current = state.current_files()
shown_source = ("Sample cohort (synthetic)" if current.sample else "From the library"
                if current.dataset_id is not None else "Upload an export")
source = st.radio("Dataset", SOURCES, horizontal=True, key="data.source",
                  index=SOURCES.index(shown_source) if shown_source in SOURCES else 0)
if source.startswith("Sample"):
    if not current.sample and st.button("Use the sample cohort", key="data.use_sample"):
        state.set_files(state.sample_files())
        st.rerun()
elif source.startswith("From the library"):
    lib = ui.open_library()
    stored = lib.datasets()
    st.caption(f"Library: `{lib.engine.url.render_as_string(hide_password=True)}` "
               "(`cdasi-outcomes dashboard --db URL` or $CDASI_DB choose another)")
    if not stored:
        st.info("The library holds no dataset yet. Upload an export and keep it, or run "
                "`cdasi-outcomes import VISITS --label TEXT`.", icon=":material/database:")
    else:
        import pandas as pd

        ui.table(pd.DataFrame([d.to_dict() for d in stored]).drop(columns=["sha256"]), "library_datasets",
                 "data.library", scope="data")
        chosen = st.selectbox("Dataset to open", [d.id for d in stored], key="data.library_id",
                              format_func={d.id: f"{d.id}: {d.label} ({d.patients} patients, imported "
                                                 f"{d.imported_at[:10]} by {d.imported_by})" for d in stored}.get)
        if st.button("Open", key="data.library_open", icon=":material/folder_open:"):
            files = state.library_files(chosen)
            ok, message, report = state.try_files(files)
            if ok:
                state.audit("open", f"opened in the dashboard: {files.label}", chosen)
                st.session_state["data.loaded"] = message
                st.rerun()
            st.error(message)
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
                _guard(report)
                st.subheader(f"Validation report of {files.label}")
                ui.table(report.to_frame(), "validation_report_rejected", "data.rejected", scope="data")
            st.stop()
    upload = state.current_files()
    if not upload.sample and upload.dataset_id is None and state.can("import"):
        with st.form("data.keep"):
            st.markdown(f"**Keep {upload.label} in the library** (validated again, stored with its sha256, the "
                        "report, your name and the time, in one transaction)")
            label = st.text_input("Label", upload.label, key="data.keep_label")
            keep = st.form_submit_button("Keep in the library", icon=":material/database_upload:")
        if keep:
            from analytics import CdasiError, InvalidDataError

            parts = {role: (part[1], part[0]) for role, part in (("visits", upload.visits),
                                                                 ("therapies", upload.therapies),
                                                                 ("mapping", upload.mapping)) if part is not None}
            try:
                result = state.library().import_bytes(parts, label, state.user()[0])
            except InvalidDataError:
                st.error("The export is invalid and was not stored (see the validation report below).")
            except CdasiError as exc:
                st.error(f"Not stored: {exc}")
            else:
                d = result.dataset
                st.success(f"Stored as dataset {d.id}: {d.label}." if result.created else
                           f"Nothing new: this content is already dataset {d.id} ({d.label}).",
                           icon=":material/database:")

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
if not state.can("patient_level"):
    st.info("The validation report and the attrition name rows and patients: they are for analysts. The Shared "
            "summary and the Report show this dataset's aggregates, with small cells suppressed.",
            icon=":material/lock:")
    st.stop()
if rep.findings:
    ui.patient_level("the validation report")

st.subheader("Validation report")
if rep.findings:
    ui.table(rep.to_frame(), "validation_report", "data.report", scope="data")
else:
    st.success("No problems found.")

st.subheader("De-identification guard")
if not _guard(rep):
    st.success("No identifier-like headers (in English, Spanish, Catalan, Portuguese, French, Italian, German or "
               "Dutch), national identity numbers, record numbers, dates of birth, person names, emails or phone "
               "numbers, and no ages over 89 found. The README says what the guard cannot catch.")

st.subheader("Attrition: from rows to analysable lines")
if rep.ok:
    with ui.guard():
        d = state.derivation()
        ui.table(d.attrition, "attrition", "data.attrition", scope="export")
        ui.reproduce("print(full.attrition)", "analyze")
else:
    st.info("Fix the errors above to see the therapy lines.")
