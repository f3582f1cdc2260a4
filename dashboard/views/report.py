"""Report: assemble the meeting pack (figures, tables, report, manifest) and download it as a ZIP."""

import pandas as pd
import streamlit as st

from analytics import OptionError
from analytics.outputs.pack import PackOptions, chromium
from analytics.registry import figure_names, table_names
from analytics.spec import PackChoices
from dashboard import state, ui

st.title("Report")
st.markdown("The meeting pack for the current dataset, response rule and cohort filters: every figure as PNG, SVG, "
            "PDF and interactive HTML; the tables as CSV and one XLSX; a self-contained report (HTML, and PDF); a "
            "manifest with the input's hash, the definitions, the software versions and every file's hash.")
ui.provenance()
if chromium() is None:
    st.warning("No Chromium on this machine: the pack will hold HTML figures, tables and the HTML report, but no "
               "PNG, SVG or PDF. Install Debian's package (`apt-get install chromium`) to get them.")

choices = state.pack_choices()  # the analysis spec's [pack], e.g. from an opened spec
levels = [None, 5, 11] + ([choices.min_cell] if choices.min_cell not in (None, 5, 11) else [])
floor = state.min_cell_floor()  # a viewer: shared packs only, counts below 5 at least suppressed
if floor:
    levels = [n for n in levels if n is not None and n >= floor]
    st.info(f"As a viewer you build shared packs only: counts below {floor} at least are suppressed and no "
            "patient-level table is included.", icon=":material/lock:")
with st.form("report.form"):
    min_cell = st.radio("Audience", levels, index=levels.index(choices.min_cell) if choices.min_cell in levels else 0,
                        key="report.share",
                        format_func=lambda n: "Internal (no suppression; patient-level tables included)" if n is None
                        else f"Shared: counts below {n} suppressed")
    c1, c2 = st.columns(2)
    figures = c1.multiselect("Figures", figure_names(), default=list(choices.figures or figure_names()),
                             key="report.figures")
    tables = c2.multiselect("Tables", table_names(), default=list(choices.tables or table_names()),
                            key="report.tables")
    pptx = st.checkbox("Also a PowerPoint deck, one figure per slide", key="report.pptx")
    build = st.form_submit_button("Build the meeting pack", icon=":material/inventory_2:", type="primary")

if build:
    if floor and (min_cell is None or min_cell < floor):  # never trust the widget alone
        min_cell = floor
    try:
        options = PackOptions(min_cell=min_cell, pptx=pptx, figures=tuple(figures), tables=tuple(tables))
    except OptionError as exc:
        st.error(str(exc))
    else:
        state.set_pack_choices(PackChoices(min_cell, None if set(figures) == set(figure_names()) else tuple(figures),
                                           None if set(tables) == set(table_names()) else tuple(tables)))
        with st.status("Building the meeting pack...", expanded=True) as status:
            data, manifest, messages = state.build_pack_zip(options, progress=lambda m: status.write(m.capitalize()))
            status.update(label=f"Meeting pack ready: {len(manifest['files'])} files", state="complete")
        st.session_state["report.result"] = (data, manifest, messages)
        st.session_state["report.options"] = options
        st.session_state["report.spec"] = state.spec()

if "report.result" in st.session_state:
    data, manifest, messages = st.session_state["report.result"]
    built = st.session_state.get("report.spec")
    now = state.spec()
    if built is not None and (built.derive, built.cohort, built.models, built.data_sha256) != (
            now.derive, now.cohort, now.models, now.data_sha256):
        st.warning("Out of date: this pack was built for an earlier analysis (" + "; ".join(built.describe()[:3])
                   + "). Build it again for the current one.", icon=":material/history:")
    for m in messages:
        st.warning(m)
    stamp = manifest["created"][:16].replace(":", "").replace("-", "").replace("T", "-")
    st.download_button("Download the meeting pack (ZIP)", data, f"cdasi-meeting-pack-{stamp}.zip", "application/zip",
                       key="report.download", icon=":material/download:", type="primary",
                       on_click=state.audit_download, args=(f"cdasi-meeting-pack-{stamp}.zip",))
    mc = manifest["min_cell"]
    spec_doc = manifest["spec"]
    st.caption(f"Pack for response `{spec_doc['response']['rule']}`"
               + (" (confirmed)" if spec_doc["response"]["confirm"] else "")
               + f"; filters: {'; '.join(manifest['filters']['text']) or 'none'} · "
               f"Small cells: {'counts below ' + str(mc) + ' suppressed' if mc else 'not suppressed (internal only)'}"
               f" · input sha256 `{manifest['input']['sha256'][:16]}…` · created {manifest['created']}")
    ui.table(pd.DataFrame(manifest["files"]), "manifest_files", "report.files")
    ui.reproduce(state.pack_call(st.session_state["report.options"]), "report",
                 (f"--min-cell {mc} " if mc else "") + "--out pack/")
