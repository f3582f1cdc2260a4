"""Time to response: the response rule, Kaplan-Meier, Cox, competing risks, the weighted view."""

import dataclasses

import streamlit as st

from analytics import DeriveOptions, OptionError, ResponseRule
from analytics.lines.analysis_table import COVARIATE_LABELS
from analytics.display.tables import p_text
from dashboard import state, ui

st.title("Time to response")
opts = state.derive_options()
mopts = state.model_options()
KINDS = {"points": "fall of at least N points", "percent": "fall of at least P%", "atmost": "activity at most S",
         "clear": "clear skin (activity 0)"}
# The kind sits outside the form so that its value box follows it at once: each kind has its own
# default (points 4, percent 40, atmost 14), and "clear" takes no value.
DEFAULTS = {"points": 4.0, "percent": 40.0, "atmost": 14.0}
kind = st.columns([2, 5])[0].selectbox("Response rule", list(KINDS), index=list(KINDS).index(opts.response.kind),
                                       key="ttr.kind", format_func=lambda k: f"{k}: {KINDS[k]}")
with st.form("ttr.form"):
    c2, c3, c4 = st.columns([1, 1, 3])
    unit = {"points": "points", "percent": "%", "atmost": "points"}.get(kind, "")
    value = c2.number_input(f"Value ({unit})" if unit else "Value (none for clear)", min_value=0.0, max_value=100.0,
                            step=1.0, key=f"ttr.value.{kind}", disabled=kind == "clear",
                            value=(float(opts.response.value) if kind == opts.response.kind and opts.response.value
                                   is not None else DEFAULTS.get(kind, 0.0)),
                            help="points:4 is the MCID and responder definition (Anyanwu 2015, Robinson 2015); "
                                 "percent:40 for baseline > 14 (Ahmed 2020); atmost:14 = mild")
    confirm = c3.checkbox("Confirm at the next visit", value=opts.confirm)
    adjust = c4.multiselect("Adjust the Cox model and the weights for", list(COVARIATE_LABELS),
                            default=list(mopts.adjust_for), format_func=COVARIATE_LABELS.get)
    if st.form_submit_button("Apply", icon=":material/check:"):
        try:
            rule = ResponseRule(kind, None if kind == "clear" else value)
            state.set_derive_options(DeriveOptions(rule, confirm, opts.arms, opts.baseline_window_days))
            state.set_model_options(dataclasses.replace(mopts, adjust_for=tuple(adjust)))
            st.rerun()
        except OptionError as exc:
            st.error(str(exc))
st.caption(f"Response: {state.derive_options().response.describe()}"
           + ("; confirmed at the next follow-up visit." if state.derive_options().confirm else "."))
ui.provenance()

if ui.require_lines():
    # Only the open tab's analyses are fitted (and cached): a first visit fits the Kaplan-Meier
    # curves alone; Cox, competing risks, interval censoring and the weighted view when opened.
    tabs = st.tabs(["Kaplan-Meier", "Cox model", "Competing risks", "Interval censoring", "Adjusted (weighted)"],
                   key="ttr.tab", on_change="rerun")
    with tabs[0]:
        if tabs[0].open:
            km = state.result("km")
            ui.figure(km.figure, "time_to_response_km", "ttr.km")
            s = km.summary.reset_index()
            ui.table(s, "km_medians", "ttr.km.table")
            lr = km.logrank
            if lr["statistic"] is not None:
                st.markdown(f"**Log-rank** across arms: chi-square {lr['statistic']:.2f}, df {lr['df']}, "
                            f"p {p_text(lr['p']) if p_text(lr['p']).startswith('<') else '= ' + p_text(lr['p'])}. "
                            "Pairwise, Holm-corrected:")
                ui.table(km.pairwise, "logrank_pairwise", "ttr.km.pairs")
            ui.warnings(km.warnings, "the Kaplan-Meier analysis")
            ui.reproduce(km, "analyze")
    with tabs[1]:
        if tabs[1].open:
            cox = state.result("cox")
            cox_adj = state.result("cox_adjusted")
            st.info("Observational data: later-line agents go to more refractory patients. The unadjusted model is "
                    "confounded by indication; the adjusted one accounts only for the covariates listed.",
                    icon=":material/info:")
            # one above the other, at the figures' full width: side by side, each forest plot was squeezed to half
            # its design width (tick labels ran together, subtitles were cut, buttons lost their labels)
            for label, model in zip(("unadjusted", "adjusted"), (cox, cox_adj)):
                st.subheader(f"{label.capitalize()} model")
                ui.figure(model.figure, f"cox_{label}", f"ttr.cox.{label}")
                ui.table(model.tables()["hazard_ratios"].frame, f"cox_{label}", f"ttr.cox.{label}.table")
                st.markdown(f"Proportional hazards: {model.ph_text}")
                ui.warnings(model.warnings, f"the {label} Cox model")
            ui.reproduce(cox_adj, "analyze")
    with tabs[2]:
        if tabs[2].open:
            comp = state.result("competing")
            ui.figure(comp.figure, "competing_risks", "ttr.cif")
            ui.table(comp.summary.reset_index(), "competing_risks", "ttr.cif.table")
            ui.warnings(comp.warnings, "the competing-risks analysis")
            ui.reproduce(comp, "analyze")
    with tabs[3]:
        if tabs[3].open:
            interval = state.result("interval")
            ui.figure(interval.figure, "interval_censoring", "ttr.interval")
            ui.table(interval.summary.reset_index(), "interval_censoring", "ttr.interval.table")
            st.caption("Time ratios < 1: faster response than the reference arm (Weibull AFT).")
            ui.warnings(interval.warnings, "the interval-censoring analysis")
            ui.reproduce(interval, "analyze")
    with tabs[4]:
        if tabs[4].open:
            adj = state.result("adjusted")
            st.warning(adj.note, icon=":material/balance:")
            if adj.km is None:
                ui.warnings(adj.warnings, "the adjusted comparison")
            else:
                ui.figure(adj.balance_figure, "balance", "ttr.balance")
                ui.table(adj.balance, "balance", "ttr.balance.table")
                st.caption("Effective sample sizes: " + ", ".join(f"{a} {n:.0f}" for a, n in adj.ess.items()))
                ui.figure(adj.km.figure, "time_to_response_weighted", "ttr.wkm")
                ui.table(adj.cox.tables()["hazard_ratios"].frame, "cox_weighted", "ttr.wcox.table")
                ui.warnings(adj.warnings + adj.cox.warnings, "the adjusted comparison")
            ui.reproduce(adj, "analyze")
