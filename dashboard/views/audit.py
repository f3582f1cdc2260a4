"""Audit log: the library's append-only record of who logged in, imported, opened, viewed
patient-level data, downloaded, analysed, packed, compared or deleted which dataset, and when
(admins only)."""

import pandas as pd
import streamlit as st

from dashboard import state, ui

st.title("Audit log")
if not state.can("audit"):
    st.warning("The audit log is for admins.", icon=":material/lock:")
    st.stop()
st.markdown("Every login, import, refused import, opening, view of patient-level data, download, analysis, pack, "
            "comparison and deletion, newest first. The log is append-only: the database refuses to change or delete a row, and a deleted "
            "dataset's records stay. `cdasi-outcomes audit --json` prints the same log.")
lib = ui.open_library()
log = lib.audit_log()
st.caption(f"Library: `{lib.engine.url.render_as_string(hide_password=True)}`")
frame = pd.DataFrame([r.to_dict() for r in log], columns=["time", "user", "action", "dataset_id", "detail"])
cols = st.columns(3)
actions = cols[0].multiselect("Actions", sorted(set(frame["action"])), key="audit.actions", placeholder="all")
users = cols[1].multiselect("Users", sorted(set(frame["user"])), key="audit.users", placeholder="all")
datasets = cols[2].multiselect("Datasets", sorted({int(d) for d in frame["dataset_id"].dropna()}), key="audit.datasets",
                               placeholder="all")
mask = pd.Series(True, index=frame.index)
for column, chosen in (("action", actions), ("user", users), ("dataset_id", datasets)):
    if chosen:
        mask &= frame[column].isin(chosen)
shown = frame[mask]
st.caption(f"{len(shown)} of {len(frame)} records.")
ui.table(shown.iloc[::-1].reset_index(drop=True), "audit_log", "audit.table", scope="data")
