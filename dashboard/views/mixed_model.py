"""Mixed model: specification, per-arm slopes with Satterthwaite df, the variance at each level
(patient, line within patient, visit), predicted trajectories, diagnostics, warnings."""

import streamlit as st

from analytics import OptionError
from analytics.stats.mixed import MixedSpec
from analytics.lines.analysis_table import COVARIATE_LABELS
from dashboard import state, ui

LEVELS = {"patient/line": "lines nested in patients", "line": "lines only (each line independent)"}

st.title("Mixed model")
spec = state.mixed_spec()
with st.form("mixed.form"):
    c1, c2, c3, c4 = st.columns(4)
    horizon = c1.slider("Weeks of each line modelled", 8, 104, int(spec.horizon_weeks), step=4)
    levels = c2.radio("Random effects by", tuple(LEVELS), index=tuple(LEVELS).index(spec.levels),
                      format_func=LEVELS.get, help="Nested: a patient's lines share that patient's effects. "
                      "Lines only: the model before nesting, which treats a patient's lines as unrelated.")
    random = c3.radio("Random effects at each level", ("slope", "intercept"),
                      index=("slope", "intercept").index(spec.random),
                      format_func={"slope": "intercept and slope for weeks", "intercept": "intercept only"}.get)
    covs = c4.multiselect("Adjust for (baseline covariates)", [c for c in COVARIATE_LABELS if c != "baseline_cdasi"],
                          default=list(spec.covariates), format_func=COVARIATE_LABELS.get)
    if st.form_submit_button("Fit", icon=":material/play_arrow:"):
        try:
            state.set_mixed_spec(MixedSpec(float(horizon), tuple(covs), random, levels=levels))
            st.rerun()
        except OptionError as exc:
            st.error(str(exc))
ui.provenance()

if ui.require_lines():
    m = state.result("mixed")
    who = (f"{m.n_groups} lines of {m.n_patients} patients" if m.nested else f"{m.n_groups} lines")
    st.markdown(f"`{m.model_formula if m.converged else m.formula}`, REML; {m.n_obs} visits of {who} in the first "
                f"{m.spec.horizon_weeks:g} weeks. Random effects: {m.random_text()}.")
    if m.nested:
        own = ("starting level and rate of change" if m.random_effects.get("patient") == "~weeks"
               else "starting level")
        st.caption("Lines nested in patients: most patients contribute lines to more than one arm, and a patient's "
                   "lines share that patient's skin, antibodies and tendency to flare. The model gives each patient "
                   f"their own {own}, and each line its own on top, so a comparison of arms is weighed as the "
                   "patients behind it allow, not as if every line were a different patient.")
    if m.fallback:
        st.warning(f"Fallback: {m.fallback}.", icon=":material/warning:")
    if not m.converged:
        st.error("The mixed model could not be fitted; see the warnings.")
    else:
        ui.figure(m.figure, "mixed_model_trajectories", "mixed.traj")
        st.subheader("Slopes per arm")
        ui.table(m.slopes.reset_index(), "mixed_model_slopes", "mixed.slopes")
        df_words = ("t-based intervals and p-values with Satterthwaite degrees of freedom (df), computed as R's "
                    "lmerTest does: fewer df, wider intervals, when few patients or lines carry an estimate"
                    if m.df_method.startswith("Satterthwaite") else f"Wald z intervals ({m.df_method})")
        st.caption("Slope: change in CDASI activity per week; slope difference: against the reference arm "
                   f"({m.reference_arm}), the weeks:arm interaction. {df_words}.")
        st.subheader("Fixed effects")
        ui.table(m.fixed_effects.reset_index(names="term"), "mixed_model_fixed_effects", "mixed.fe")
        st.subheader("Variance at each level")
        st.markdown(m.variance_text())
        ui.table(m.variance.drop(columns="key"), "mixed_model_variance", "mixed.variance")
        st.caption("SD: standard deviation. Share of variance: of one visit's CDASI activity around its arm's mean "
                   "trajectory, at the line start and 12 weeks in.")
        st.subheader("Diagnostics")
        ui.figure(m.diagnostics_figure, "mixed_model_diagnostics", "mixed.diag")
    ui.warnings(m.warnings, "the mixed model")
    ui.reproduce(m, "analyze")
