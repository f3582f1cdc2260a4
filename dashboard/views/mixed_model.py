"""Mixed model: specification, per-arm slopes, predicted trajectories, diagnostics, warnings."""

import streamlit as st

from analytics import OptionError
from analytics.stats.mixed import MixedSpec
from analytics.lines.analysis_table import COVARIATE_LABELS
from analytics.display.tables import number_text
from dashboard import state, ui

st.title("Mixed model")
spec = state.mixed_spec()
with st.form("mixed.form"):
    c1, c2, c3 = st.columns(3)
    horizon = c1.slider("Weeks of each line modelled", 8, 104, int(spec.horizon_weeks), step=4)
    random = c2.radio("Random effects by line", ("slope", "intercept"), index=("slope", "intercept").index(spec.random),
                      format_func={"slope": "intercept and slope for weeks", "intercept": "intercept only"}.get)
    covs = c3.multiselect("Adjust for (baseline covariates)", [c for c in COVARIATE_LABELS if c != "baseline_cdasi"],
                          default=list(spec.covariates), format_func=COVARIATE_LABELS.get)
    if st.form_submit_button("Fit", icon=":material/play_arrow:"):
        try:
            state.set_mixed_spec(MixedSpec(float(horizon), tuple(covs), random))
            st.rerun()
        except OptionError as exc:
            st.error(str(exc))
ui.provenance()

if ui.require_lines():
    m = state.result("mixed")
    st.markdown(f"`{m.formula}`, random effects `{m.re_formula}` by `line_id`, REML; {m.n_obs} visits of "
                f"{m.n_groups} lines in the first {m.spec.horizon_weeks:g} weeks.")
    if m.fallback:
        st.warning(f"Fallback: {m.fallback}.", icon=":material/warning:")
    if not m.converged:
        st.error("The mixed model could not be fitted; see the warnings.")
    else:
        ui.figure(m.figure, "mixed_model_trajectories", "mixed.traj")
        st.subheader("Slopes per arm")
        ui.table(m.slopes.reset_index(), "mixed_model_slopes", "mixed.slopes")
        st.caption("Slope: change in CDASI activity per week; slope difference: against the reference arm "
                   f"({m.reference_arm}), the weeks:arm interaction.")
        st.subheader("Fixed effects")
        ui.table(m.fixed_effects.reset_index(names="term"), "mixed_model_fixed_effects", "mixed.fe")
        st.caption("Variance components: " + ", ".join(f"{k} {number_text(v, 3)}" for k, v in m.variance_components.items()))
        st.subheader("Diagnostics")
        ui.figure(m.diagnostics_figure, "mixed_model_diagnostics", "mixed.diag")
    ui.warnings(m.warnings, "the mixed model")
    ui.reproduce(m, "analyze")
