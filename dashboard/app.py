"""cdasi-outcomes dashboard: the router. Run with `cdasi-outcomes dashboard` (binds 127.0.0.1)."""

import streamlit as st

from analytics.heap import small_pages
from analytics.spec import SPEC_KEYS
from dashboard import state, ui

small_pages()  # numpy's arrays in ordinary pages, as `cdasi-outcomes dashboard` sets (analytics.heap)

st.set_page_config(page_title="cdasi-outcomes", page_icon=":material/monitoring:", layout="wide")

with ui.guard(fatal=True):
    ui.login_gate()  # behind a login ([auth] in secrets.toml): nothing below runs for a stranger

P = {"data": st.Page("views/data.py", title="Data", icon=":material/upload_file:", default=True),
     "cohort": st.Page("views/cohort.py", title="Cohort", icon=":material/groups:"),
     "trajectories": st.Page("views/trajectories.py", title="Trajectories", icon=":material/timeline:"),
     "time_to_response": st.Page("views/time_to_response.py", title="Time to response", icon=":material/avg_pace:"),
     "mixed_model": st.Page("views/mixed_model.py", title="Mixed model", icon=":material/stacked_line_chart:"),
     "timeline": st.Page("views/timeline.py", title="Patient timeline", icon=":material/person:"),
     "scheme": st.Page("views/scheme.py", title="Stepwise scheme", icon=":material/stairs:"),
     "quality": st.Page("views/quality.py", title="Quality", icon=":material/verified:"),
     "compare": st.Page("views/compare.py", title="Compare exports", icon=":material/compare_arrows:"),
     "analyses": st.Page("views/analyses.py", title="All analyses", icon=":material/list_alt:"),
     "summary": st.Page("views/summary.py", title="Shared summary", icon=":material/group_work:"),
     "report": st.Page("views/report.py", title="Report", icon=":material/inventory_2:"),
     "audit": st.Page("views/audit.py", title="Audit log", icon=":material/policy:")}
if state.can("patient_level"):  # analysts and admins: everything for analysis
    PAGES = [P[k] for k in ("data", "cohort", "trajectories", "time_to_response", "mixed_model", "timeline",
                            "scheme", "quality", "compare", "analyses", "summary", "report")]
else:  # a viewer: aggregates only, small cells suppressed
    PAGES = [P["data"], P["summary"], P["report"]]
if state.can("audit"):
    PAGES.append(P["audit"])
page = st.navigation(PAGES)


def _spec_uploaded() -> None:
    up = st.session_state.get("sidebar.open")
    if up is not None:
        st.session_state["analysis.pending_spec"] = (up.getvalue().decode("utf-8-sig", errors="replace"), up.name)


with st.sidebar, ui.guard():
    if "url.read" not in st.session_state:  # a new session: the link may carry an analysis
        st.session_state["url.read"] = True
        params = {k: st.query_params[k] for k in st.query_params}
        if any(k.partition(".")[0] in SPEC_KEYS for k in params):
            st.session_state["sidebar.spec_message"] = state.open_spec_query(params)
    pending = st.session_state.pop("analysis.pending_spec", None)  # an opened spec file (text, name)
    if pending is not None:
        ok, message = state.open_spec_text(*pending)
        st.session_state["sidebar.spec_message"] = (ok, message)
    notices = state.reconcile_filter()  # a filter the dataset cannot apply is never shown as active
    if notices:
        st.session_state["sidebar.filter_notices"] = notices
    state.sync_url()
    files = state.current_files()
    st.markdown(f"**Dataset:** {files.label or files.names['visits']}")
    st.caption(f"sha256 `{files.visits_sha256[:16]}…`")
    opts = state.derive_options()
    st.markdown(f"**Response:** `{opts.response}`" + (" (confirmed)" if opts.confirm else ""))
    levels = {0.05: "95%", 0.1: "90%", 0.01: "99%"}
    alpha = state.model_options().alpha
    st.selectbox("Intervals", list(levels) if alpha in levels else [*levels, alpha], key="sidebar.alpha",
                 index=list(levels).index(alpha) if alpha in levels else len(levels),
                 format_func=lambda a: levels.get(a, f"{100 * (1 - a):g}%"),
                 help="The confidence level of every interval of every model, table and figure (1 - alpha).",
                 on_change=lambda: state.set_alpha(st.session_state["sidebar.alpha"]))
    active = state.cohort_filter().describe()
    st.markdown("**Filters:** " + ("; ".join(active) if active else "none (all lines)"))
    for note in st.session_state.pop("sidebar.filter_notices", []):
        st.warning(f"Cohort filter changed for this dataset: {note}.", icon=":material/filter_alt:")
    if active and st.button("Clear filters", key="sidebar.clear", icon=":material/filter_alt_off:"):
        state.set_cohort_filter(state.CohortFilter())
        st.rerun()
    spec_message = st.session_state.pop("sidebar.spec_message", None)  # shown once, with the box open
    with st.expander("Analysis spec", icon=":material/description:", expanded=spec_message is not None):
        st.caption("The whole analysis (rule, arms, filters, models, pack) as one TOML file; "
                   "`cdasi-outcomes report VISITS --spec analysis.toml` makes the same pack.")
        st.download_button("Save analysis", state.spec().to_toml(), "analysis.toml", "application/toml",
                           key="sidebar.save", icon=":material/download:",
                           on_click=state.audit_download, args=("analysis.toml",))
        st.file_uploader("Open analysis", type=["toml"], key="sidebar.open", on_change=_spec_uploaded)
        if spec_message is not None:
            ok, message = spec_message
            (st.success if ok else st.error)(message)
    if state.login_configured():
        ui.logout()
        st.caption("No telemetry. Every login, view of patient-level data and download is recorded in the audit log.")
    else:
        st.caption("Local only: no telemetry; served on 127.0.0.1.")

try:
    with ui.guard():
        page.run()
finally:  # after the first page is drawn (or stopped): the modelling libraries load while the user reads it
    state.warm_up()
