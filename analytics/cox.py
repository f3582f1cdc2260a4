"""Cox proportional hazards for time to response: arm (against a reference arm), optionally
adjusted, Efron ties, robust (sandwich) standard errors clustered by patient, because one
patient can contribute several lines. A hazard ratio above 1 means a faster response."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from lifelines import CoxPHFitter
from lifelines.statistics import proportional_hazard_test

from .results import COVARIATE_LABELS, capture_warnings
from .style import arm_color, base_layout

__all__ = ["CoxResult", "fit_cox"]

Z95 = 1.959963984540054


@dataclass
class CoxResult:
    reference_arm: str | None
    summary: pd.DataFrame  # one row per term: hr, lower, upper, coef, se (robust), p
    arms: list[str]
    covariates: list[str]
    n_lines: int
    n_events: int
    n_patients: int
    ph_test: pd.DataFrame
    ph_text: str
    warnings: list[str] = field(default_factory=list)
    model: CoxPHFitter | None = field(default=None, repr=False)
    weighted: bool = False
    excluded_missing: int = 0

    def hazard_ratios(self) -> dict:
        out = {}
        for arm in self.arms:
            if arm == self.reference_arm:
                continue
            term = f"arm[T.{arm}]"
            if term in self.summary.index:
                r = self.summary.loc[term]
                out[arm] = {"hr": float(r["hr"]), "ci": [float(r["lower"]), float(r["upper"])], "p": float(r["p"]),
                            "coef": float(r["coef"]), "se_robust": float(r["se"])}
            else:
                out[arm] = {"hr": None, "ci": [None, None], "p": None}
        return out

    def to_dict(self) -> dict:
        covs = {}
        for c in self.covariates:
            if c in self.summary.index:
                r = self.summary.loc[c]
                covs[c] = {"hr": float(r["hr"]), "ci": [float(r["lower"]), float(r["upper"])], "p": float(r["p"])}
        return {"reference_arm": self.reference_arm, "robust_cluster": "patient_id", "ties": "efron",
                "hazard_ratios": self.hazard_ratios(), "covariates": covs, "adjusted_for": list(self.covariates),
                "n_lines": self.n_lines, "n_events": self.n_events, "n_patients": self.n_patients,
                "excluded_missing_covariates": self.excluded_missing, "weighted": self.weighted,
                "proportional_hazards": {"text": self.ph_text, "tests": self.ph_test.to_dict(orient="records")},
                "warnings": list(self.warnings)}

    def figure(self, title: str | None = None) -> go.Figure:
        return forest_figure(self, title)


def _design(table: pd.DataFrame, arms: list[str], covariates: list[str], weights: str | None):
    df = pd.DataFrame({"time": table["time"].to_numpy(float), "event": table["event"].to_numpy(int),
                       "patient_id": table["patient_id"].to_numpy()})
    ref = arms[0]
    for arm in arms[1:]:
        df[f"arm[T.{arm}]"] = (table["arm"].astype(str) == arm).to_numpy(float)
    for c in covariates:
        df[c] = table[c].to_numpy(float)
    if weights:
        df["_w"] = table[weights].to_numpy(float)
    return df, ref


def fit_cox(table: pd.DataFrame, arms: list[str] | tuple[str, ...], covariates: list[str] | tuple[str, ...] = (),
            weights: str | None = None, alpha: float = 0.05) -> CoxResult:
    """Fit the Cox model. Arms without lines, or without any response, are left out with a
    warning (their hazard ratio is not estimable); covariates missing from the export are
    dropped with a warning; lines with a missing covariate value are excluded and counted."""
    warns: list[str] = []
    arms = list(arms)
    present = [a for a in arms if (table["arm"] == a).sum() > 0]
    for a in arms:
        if a not in present:
            warns.append(f"{a}: no included lines; its hazard ratio is not estimable")
    usable = []
    for a in present:
        if table.loc[table["arm"] == a, "event"].sum() == 0:
            warns.append(f"{a}: no responses; its hazard ratio is not estimable (it would be 0)")
        else:
            usable.append(a)
    covs = []
    for c in covariates:
        if c not in table.columns:
            warns.append(f"covariate {c!r} is not in the export; the model is not adjusted for it")
        elif table[c].nunique(dropna=True) < 2:
            warns.append(f"covariate {c!r} does not vary; the model is not adjusted for it")
        else:
            covs.append(c)
    sub = table[table["arm"].isin(usable)]
    n_before = len(sub)
    if covs:
        sub = sub.dropna(subset=covs)
    excluded = n_before - len(sub)
    if excluded:
        warns.append(f"{excluded} line(s) with a missing covariate value were left out of the Cox model")
    empty = CoxResult(usable[0] if usable else (present[0] if present else None),
                      pd.DataFrame(columns=["coef", "se", "hr", "lower", "upper", "p"]), arms, covs, len(sub),
                      int(sub["event"].sum()) if len(sub) else 0, int(sub["patient_id"].nunique()) if len(sub) else 0,
                      pd.DataFrame(columns=["term", "statistic", "p"]), "not tested", warns, None, bool(weights),
                      excluded)
    if len(usable) < 2 and not covs:
        warns.append("fewer than two arms with responses: no hazard ratio to estimate")
        return empty
    if len(sub) < 3 or sub["event"].sum() < 2:
        warns.append("too few lines or responses for a Cox model")
        return empty
    df, ref = _design(sub, usable, covs, weights)
    cph = CoxPHFitter(alpha=alpha)
    try:
        with capture_warnings(warns):
            cph.fit(df, duration_col="time", event_col="event", cluster_col="patient_id", robust=True,
                    weights_col="_w" if weights else None)
    except Exception as exc:  # lifelines raises ConvergenceError and numpy errors on degenerate data
        warns.append(f"the Cox model could not be fitted: {type(exc).__name__}: {exc}")
        return empty
    s = cph.summary
    summary = pd.DataFrame({"coef": s["coef"], "se": s["se(coef)"], "hr": np.exp(s["coef"]),
                            "lower": np.exp(s["coef"] - Z95 * s["se(coef)"]),
                            "upper": np.exp(s["coef"] + Z95 * s["se(coef)"]), "p": s["p"]})
    ph, text = _ph_check(cph, df, weights, warns)
    return CoxResult(ref, summary, arms, covs, len(sub), int(sub["event"].sum()), int(sub["patient_id"].nunique()),
                     ph, text, warns, cph, bool(weights), excluded)


def _ph_check(cph: CoxPHFitter, df: pd.DataFrame, weights: str | None, warns: list[str]):
    try:
        with capture_warnings(warns):
            res = proportional_hazard_test(cph, df, time_transform="rank")
    except Exception as exc:
        return pd.DataFrame(columns=["term", "statistic", "p"]), f"the proportional-hazards test failed ({exc})"
    tab = res.summary.reset_index().rename(columns={"index": "term", "test_statistic": "statistic"})
    tab = tab[["term", "statistic", "p"]]
    bad = tab[tab["p"] < 0.05]
    if bad.empty:
        text = (f"No evidence that the hazard ratios change over follow-up (scaled Schoenfeld residuals against "
                f"time rank; smallest p = {tab['p'].min():.2f}): the proportional-hazards assumption looks reasonable.")
    else:
        terms = ", ".join(f"{t} (p = {p:.3f})" for t, p in zip(bad["term"], bad["p"]))
        text = (f"The effect of {terms} changes over follow-up (scaled Schoenfeld residuals against time rank): "
                "read its hazard ratio as an average over follow-up and look at the Kaplan-Meier curves.")
    return tab, text


def forest_figure(result: CoxResult, title: str | None = None) -> go.Figure:
    """Hazard ratios with 95% CIs on a log axis, reference line at 1, n and events per arm."""
    rows = []
    for arm in result.arms:
        if arm == result.reference_arm:
            rows.append((f"{arm} (reference)", 1.0, np.nan, np.nan, arm_color(arm, result.arms)))
            continue
        term = f"arm[T.{arm}]"
        if term in result.summary.index:
            r = result.summary.loc[term]
            rows.append((f"{arm} vs {result.reference_arm}", r["hr"], r["lower"], r["upper"],
                         arm_color(arm, result.arms)))
        else:
            rows.append((f"{arm}: not estimable", np.nan, np.nan, np.nan, "#999999"))
    for c in result.covariates:
        if c in result.summary.index:
            r = result.summary.loc[c]
            rows.append((COVARIATE_LABELS.get(c, c), r["hr"], r["lower"], r["upper"], "#555555"))
    labels = [r[0] for r in rows]
    fig = go.Figure()
    for label, hr, lo, hi, colour in rows:
        if not np.isfinite(hr):
            continue
        err = dict(type="data", symmetric=False, array=[hi - hr], arrayminus=[hr - lo], color=colour, thickness=2,
                   width=6) if np.isfinite(lo) else None
        text = f"{hr:.2f} ({lo:.2f} to {hi:.2f})" if np.isfinite(lo) else "1 (reference)"
        fig.add_trace(go.Scatter(x=[hr], y=[label], mode="markers", error_x=err, showlegend=False,
                                 marker=dict(symbol="square", size=11, color=colour),
                                 hovertemplate=f"{label}: HR {text}<extra></extra>"))
        fig.add_annotation(x=1.0, xref="paper", y=label, xanchor="left", text=text, showarrow=False,
                           font=dict(size=13))
    fig.add_vline(x=1, line=dict(color="#888", dash="dash"))
    finite = [v for r in rows for v in (r[2], r[3], r[1]) if np.isfinite(v) and v > 0]
    lo_t, hi_t = min(finite + [1.0]), max(finite + [1.0])
    ticks = [v for v in (0.1, 0.2, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 10) if lo_t / 1.3 <= v <= hi_t * 1.3]
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=[f"{v:g}" for v in ticks], tickangle=0,
                     title_text="Hazard ratio of response, 95% CI (log scale)")
    fig.update_yaxes(categoryorder="array", categoryarray=labels[::-1], title_text="")
    adj = ("adjusted for " + ", ".join(COVARIATE_LABELS.get(c, c).split(" (")[0].lower() for c in result.covariates)
           if result.covariates else "unadjusted")
    sub = (f"{result.n_lines} lines, {result.n_events} responses, {result.n_patients} patients; "
           "robust SEs clustered by patient; HR > 1: faster response<br>" + adj.capitalize())
    base_layout(fig, f"{title or 'Cox model: hazard ratio of response'}"
                + (" (weighted)" if result.weighted else "") + f"<br><sup>{sub}</sup>",
                height=max(320, 120 + 48 * len(rows)))
    fig.update_layout(margin=dict(r=170, t=110))
    return fig
