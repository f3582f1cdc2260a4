"""Stepwise scheme: the department's ladder with outcomes per step, patients' paths through it,
refractory lines by agent beside published series, and adherence with drill-down."""

import dataclasses

import streamlit as st

from analytics import CdasiError
from analytics.lines.scheme import Scheme
from analytics.stats.scheme import ADHERENCE, PUBLISHED_NOTE, REFRACTORY_CAVEAT, published_series
from dashboard import state, ui

st.title("Stepwise scheme")
st.markdown("The department's ladder (hydroxychloroquine, then conventional immunosuppressants, then IVIG, then JAK "
            "inhibitors, or your own), judged by CDASI: how lines do at each step, which paths patients take, how "
            "refractory disease responds, and whether care follows the scheme.")
mopts = state.model_options()
scheme = mopts.scheme


def _set_scheme(new: Scheme) -> None:
    state.set_model_options(dataclasses.replace(state.model_options(), scheme=new))


with st.expander(f"Scheme: {scheme.name} ({len(scheme.steps)} steps; source: {scheme.source})",
                 icon=":material/stairs:"):
    st.markdown("\n".join(f"{i}. **{s.name}**: {', '.join(s.agents)}" for i, s in enumerate(scheme.steps, 1)))
    with st.form("scheme.form"):
        c1, c2, c3 = st.columns(3)
        assess = c1.number_input("Judged at (weeks)", 1.0, 104.0, scheme.assess_weeks, step=1.0,
                                 help="A step is judged at this many weeks after the line starts.")
        window = c2.number_input("Assessment window (± weeks)", 0.5, 52.0, scheme.assess_window_weeks, step=1.0,
                                 help="A scored visit within this many weeks of the assessment time counts as the "
                                      "assessment.")
        escalate = c3.number_input("Escalation due within (weeks)", 0.5, 52.0, scheme.escalate_weeks, step=1.0,
                                   help="After a failed assessment, a line of a later step should start within this "
                                        "many weeks.")
        if st.form_submit_button("Apply", icon=":material/check:"):
            try:
                _set_scheme(dataclasses.replace(scheme, assess_weeks=assess, assess_window_weeks=window,
                                                escalate_weeks=escalate, source="edited on the Scheme page"))
                st.rerun()
            except CdasiError as exc:
                st.error(str(exc), icon=":material/error:")
    up = st.file_uploader("Open your own scheme (TOML: name, assess_weeks, [[step]] name and agents)", type=["toml"],
                          key="scheme.upload")
    if up is not None and st.session_state.get("scheme.opened") != (up.name, up.size):
        try:
            new = Scheme.from_toml(up.getvalue().decode("utf-8-sig", errors="replace"), up.name)
        except CdasiError as exc:
            st.error(f"{exc}", icon=":material/error:")
        else:
            st.session_state["scheme.opened"] = (up.name, up.size)
            _set_scheme(new)
            st.rerun()
    c1, c2 = st.columns(2)
    c1.download_button("Save this scheme", scheme.to_toml(), "scheme.toml", "application/toml", key="scheme.save",
                       icon=":material/download:", on_click=state.audit_download, args=("scheme.toml",))
    if scheme != Scheme.default() and c2.button("Back to the default scheme", key="scheme.reset",
                                                icon=":material/restart_alt:"):
        st.session_state.pop("scheme.opened", None)
        _set_scheme(Scheme.default())
        st.rerun()
    st.caption("The scheme is part of the analysis spec ([scheme] in the file saved from the sidebar); "
               "`cdasi-outcomes analyze VISITS --scheme scheme.toml` uses the same file.")
ui.provenance()

if ui.require_lines():
    r = state.result("scheme")
    st.subheader("The ladder")
    ui.figure(lambda: r.figures()["ladder"].make(None, ()), "scheme_ladder", "scheme.ladder")
    ui.table(r.steps, "scheme_steps", "scheme.steps")
    if len(r.outside):
        st.info(f"{int(r.outside['lines'].sum())} included line(s) of agents outside the scheme "
                f"({', '.join(r.outside['agent'])}) have no step; they are counted here, not dropped. Add the agents "
                "to a step to include them.", icon=":material/info:")

    st.subheader("Patients' paths through the steps")
    ui.figure(lambda: r.figures()["paths"].make(None, ()), "scheme_paths", "scheme.paths")

    st.subheader("Refractory disease")
    st.warning(REFRACTORY_CAVEAT, icon=":material/warning:")
    ui.figure(lambda: r.figures()["refractory"].make(None, ()), "scheme_refractory", "scheme.refractory")
    published = "; ".join(f"**{a}**: {text} ({source})" for a, _, _, _, text, source in published_series(r.alpha))
    st.caption(f"Grey diamonds are **published series, not this cohort**: {published}. {PUBLISHED_NOTE}")
    ui.table(r.refractory, "scheme_refractory", "scheme.refractory_table")
    if r.refractory_cox is not None and len(r.refractory_cox.summary):
        ui.figure(lambda: r.figures()["refractory_cox"].make(None, ()), "scheme_refractory_cox", "scheme.cox")
        ui.table(r.refractory_cox.tables()["hazard_ratios"].frame, "scheme_refractory_cox", "scheme.cox_table")
        st.caption(f"Among refractory lines of the arms; adjusted for {', '.join(r.refractory_cox.covariates) or 'nothing'}"
                   f"; robust errors clustered by patient. {r.refractory_cox.ph_text}")

    st.subheader("Adherence to the scheme")
    for key, text in ADHERENCE.items():
        st.markdown(f"- **{key}**: {text}.")
    ui.table(r.adherence.drop(columns=["definition"]), "scheme_adherence", "scheme.adherence")

    st.subheader("Drill-down: skipped steps and late escalation")
    ui.patient_level("the scheme's drill-down")
    c1, c2 = st.columns(2)
    with c1:
        st.markdown(f"**Entered a step with an earlier step skipped** ({len(r.skipped)})")
        ui.table(r.skipped, "scheme_skipped", "scheme.skipped", height=300)
    with c2:
        st.markdown(f"**Failed assessment, not escalated within {scheme.escalate_weeks:g} weeks** "
                    f"({len(r.not_escalated)})")
        ui.table(r.not_escalated, "scheme_not_escalated", "scheme.not_escalated", height=300)
    patients = sorted(set(r.skipped["patient_id"].astype(str)) | set(r.not_escalated["patient_id"].astype(str)))
    if patients:
        pid = st.selectbox("Open a patient's timeline", patients, key="scheme.patient")
        if st.button("Open timeline", key="scheme.open", icon=":material/person:"):
            state.set_timeline_patient(pid)
            st.switch_page("views/timeline.py")
    ui.warnings(r.warnings, "the scheme")
    ui.reproduce(r, "analyze")
