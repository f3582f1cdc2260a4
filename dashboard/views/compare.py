"""Compare exports: two datasets of the library side by side, under the current analysis (the
same as `cdasi-outcomes compare ID_A ID_B`): quality indicators with the change and whether it
is beyond the control limits, what the later export added, outcomes per arm, and the values
changed retroactively (analysts: the last table lists patients)."""

import streamlit as st

from dashboard import state, ui

st.title("Compare exports")
st.markdown("This quarter against the last: two exports of the library analysed with the current rule, arms and "
            "models, side by side. `cdasi-outcomes compare ID_A ID_B --spec analysis.toml --out DIR` writes the same "
            "as compare.csv and compare.html.")
lib = ui.open_library()
stored = lib.datasets()
if len(stored) < 2:
    st.info("The library holds fewer than two datasets: keep exports on the Data page, or run "
            "`cdasi-outcomes import`.", icon=":material/database:")
    st.stop()
labels = {d.id: f"{d.id}: {d.label} ({d.patients} patients, imported {d.imported_at[:10]})" for d in stored}
ids = [d.id for d in stored]
c1, c2 = st.columns(2)
a = c1.selectbox("Earlier export (A)", ids, index=len(ids) - 2, format_func=labels.get, key="compare.a")
b = c2.selectbox("Later export (B)", ids, index=len(ids) - 1, format_func=labels.get, key="compare.b")
if a == b:
    st.warning("Choose two different exports.")
    st.stop()
ui.patient_level(f"the comparison of datasets {a} and {b}")
c = state.comparison(a, b)
state.audit("compare", f"dataset {a} against {b} in the dashboard", b, once=True)
st.subheader("Quality indicators")
beyond = c.quality[c.quality["beyond_limits"] == True]  # noqa: E712 (None: no limits)
st.caption(f"{len(beyond)} indicator(s) of B beyond A's control limits (more than common-cause variation).")
ui.table(c.quality, "compare_quality", "compare.quality", scope="data")
st.subheader("Patients, visits and lines")
ui.table(c.counts, "compare_counts", "compare.counts", scope="data")
st.subheader("Outcomes per arm")
ui.table(c.outcomes, "compare_outcomes", "compare.outcomes", scope="data")
st.subheader("Values changed retroactively")
st.caption(f"{len(c.changes)} visit(s) of A whose score differs in B at the same date, whose date moved, or that "
           "are gone: a data-quality finding for the meeting.")
ui.table(c.changes, "compare_changes", "compare.changes", height=320, scope="data")
