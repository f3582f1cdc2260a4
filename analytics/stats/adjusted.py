"""Adjusted comparison of the arms: inverse-probability-of-treatment weighting.

Later-line agents go to more refractory patients (confounding by indication), so the
unadjusted comparison is biased. Here:

1. the propensity of each arm given the adjustment set (baseline CDASI activity, line number,
   anti-MDA5, ILD by default) is estimated with a multinomial logistic model (statsmodels MNLogit),
   line number as categories (1, 2, 3, 4, 5+), on the common support only: lines at a line number
   where not every arm occurs (often line 1) are left out, counted, since no comparison is
   possible there (positivity);
2. each line gets the stabilised weight P(arm received) / P(arm received | covariates),
   truncated at the 1st and 99th percentiles (trimming);
3. balance is shown before and after weighting (largest pairwise SMD per covariate);
4. weighted Kaplan-Meier curves (with the unweighted numbers at risk) and a weighted Cox model
   with robust standard errors clustered by patient compare the arms.

The comparison stays observational: weights balance only the measured covariates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from statsmodels.discrete.discrete_model import MNLogit
from statsmodels.tools.tools import add_constant

from .cox import CoxResult, fit_cox
from ..lines.analysis_table import ADJUSTMENT_SET, COVARIATE_LABELS, capture_warnings, usable_covariates
from ..protocol import Call, FigureSpec, TableSpec, recorded
from ..display.style import base_layout
from .survival import KMResult, fit_km
from .table1 import smd

__all__ = ["AdjustedResult", "fit_adjusted", "OBSERVATIONAL_NOTE"]

OBSERVATIONAL_NOTE = ("Observational comparison. Lines were not randomised: later-line agents go to more refractory "
                      "patients. Inverse-probability weights balance only the measured covariates ({covs}); "
                      "unmeasured confounding by indication may remain. Read hazard ratios as associations, not "
                      "as the effect of switching a patient from one agent to another.")


@dataclass(frozen=True)
class AdjustedResult:
    arms: list[str]
    covariates: list[str]
    weights: pd.DataFrame  # line_id, arm, ps (of the arm received), weight
    balance: pd.DataFrame  # covariate, smd_before, smd_after
    ess: dict
    trim: tuple[float, float]
    km: KMResult | None
    cox: CoxResult | None
    note: str
    warnings: list[str] = field(default_factory=list)
    model: object = field(default=None, repr=False)
    alpha: float = 0.05
    call: Call | None = field(default=None, compare=False)

    def tables(self) -> dict[str, TableSpec]:
        out = {"balance": TableSpec(self.balance, "Covariate balance before and after weighting (SMD)")}
        if self.cox is not None:
            out["cox"] = dataclasses.replace(self.cox.tables()["hazard_ratios"],
                                             title="Weighted Cox model (IPTW): hazard ratios of response")
        return out

    def figures(self) -> dict[str, FigureSpec]:
        if self.km is None:
            return {}
        km = self.km
        return {"balance": FigureSpec(lambda mc, hidden: self.balance_figure(),
                                      "Covariate balance before and after weighting"),
                "km": FigureSpec(lambda mc, hidden: km.without_arms(hidden).figure(min_cell=mc),
                                 "Time to response, weighted (IPTW)")}

    @property
    def summary(self) -> pd.DataFrame:
        return self.balance

    def to_dict(self) -> dict:
        w = self.weights["weight"] if len(self.weights) else pd.Series(dtype=float)
        return {"method": "stabilised inverse-probability-of-treatment weights from a multinomial logistic "
                          "propensity model (line number as categories 1-5+, common support only), truncated at "
                          f"the {self.trim[0]:.0%} and {self.trim[1]:.0%} percentiles",
                "covariates": self.covariates, "note": self.note, "lines": len(self.weights),
                "weights": {"min": _f(w.min()), "max": _f(w.max()), "mean": _f(w.mean())} if len(w) else {},
                "effective_sample_size": self.ess,
                "balance": self.balance.replace({np.nan: None}).to_dict(orient="records"),
                "weighted_km": self.km.to_dict() if self.km else None,
                "weighted_cox": self.cox.to_dict() if self.cox else None, "warnings": list(self.warnings)}

    def balance_figure(self) -> go.Figure:
        b = self.balance
        fig = go.Figure()
        labels = [COVARIATE_LABELS.get(c, c) for c in b["covariate"]]
        fig.add_trace(go.Scatter(x=b["smd_before"], y=labels, mode="markers", name="Before weighting",
                                 marker=dict(symbol="circle-open", size=11, color="#D55E00", line=dict(width=2))))
        fig.add_trace(go.Scatter(x=b["smd_after"], y=labels, mode="markers", name="After weighting",
                                 marker=dict(symbol="circle", size=10, color="#0072B2")))
        fig.add_vline(x=0.1, line=dict(color="#888", dash="dash"))
        fig.update_xaxes(title_text="Largest pairwise standardised mean difference", rangemode="tozero")
        base_layout(fig, "Covariate balance across arms<br><sup>Dashed line: 0.1, the usual mark of imbalance</sup>",
                    height=max(320, 140 + 45 * len(labels)))
        fig.update_layout(margin=dict(t=110))
        return fig


def _f(x):
    x = float(x)
    return x if np.isfinite(x) else None


@recorded(table="table")
def fit_adjusted(table: pd.DataFrame, arms: list[str] | tuple[str, ...],
                 covariates: tuple[str, ...] | list[str] = ADJUSTMENT_SET,
                 trim: tuple[float, float] = (0.01, 0.99), alpha: float = 0.05) -> AdjustedResult:
    warns: list[str] = []
    arms = list(arms)
    covs = usable_covariates(table, covariates, warns, "the weights do not balance it")
    present = [a for a in arms if (table["arm"] == a).any()]
    sub = table[table["arm"].isin(present)].dropna(subset=covs).copy() if covs else table[
        table["arm"].isin(present)].copy()
    lost = int(table["arm"].isin(present).sum() - len(sub))
    if lost:
        warns.append(f"{lost} line(s) with a missing covariate value were left out of the adjusted comparison")
    note = OBSERVATIONAL_NOTE.format(covs=", ".join(COVARIATE_LABELS.get(c, c).lower() for c in covs) or "none")
    empty = AdjustedResult(arms, covs, pd.DataFrame(columns=["line_id", "arm", "ps", "weight"]),
                           pd.DataFrame(columns=["covariate", "smd_before", "smd_after"]), {}, trim, None, None, note,
                           warns, None, alpha)
    present = [a for a in present if (sub["arm"] == a).any()]
    if "line_number" in covs and len(present) >= 2:
        # Positivity: compare only at line numbers (1, 2, 3, 4, 5+) where every arm occurs.
        level = sub["line_number"].clip(upper=5).astype(int)
        arms_at = sub.groupby(level)["arm"].nunique()
        common = arms_at.index[arms_at == len(present)]
        outside = ~level.isin(common)
        if outside.any():
            levels = ", ".join(f"{int(x)}" + ("+" if x == 5 else "") for x in sorted(level[outside].unique()))
            warns.append(f"{int(outside.sum())} line(s) at line number {levels}, where not every arm occurs, were "
                         "left out of the adjusted comparison (no common support)")
            sub = sub[~outside].copy()
    present = [a for a in present if (sub["arm"] == a).any()]
    if len(present) < 2 or not covs or len(sub) < 10:
        warns.append("fewer than two arms, no usable covariate or too few lines: no adjusted comparison")
        return empty
    codes = sub["arm"].astype(str).map({a: i for i, a in enumerate(present)}).to_numpy()
    X = sub[[c for c in covs if c != "line_number"]].astype(float)
    if "line_number" in covs:  # line number as categories 1..5+: the propensity is not linear in it
        dummies = pd.get_dummies(sub["line_number"].clip(upper=5).astype(int), prefix="line", drop_first=True)
        X = pd.concat([X, dummies.astype(float)], axis=1)
    X = add_constant(X, has_constant="add")
    try:
        with capture_warnings(warns):
            model = MNLogit(codes, X).fit(disp=0, method="newton", maxiter=200)
        probs = np.asarray(model.predict(X))
    except Exception as exc:  # perfect separation, singular design...
        warns.append(f"the propensity model could not be fitted: {type(exc).__name__}: {exc}")
        return empty
    if probs.ndim == 1:  # two arms: statsmodels may return P(second arm) only
        probs = np.column_stack([1 - probs, probs])
    ps = probs[np.arange(len(codes)), codes]
    marginal = np.bincount(codes, minlength=len(present)) / len(codes)
    w = marginal[codes] / ps
    lo, hi = np.quantile(w, trim)
    truncated = int(((w < lo) | (w > hi)).sum())
    w = np.clip(w, lo, hi)
    if truncated:
        warns.append(f"{truncated} weight(s) were truncated at the {trim[0]:.0%} and {trim[1]:.0%} percentiles "
                     f"({lo:.2f} to {hi:.2f})")
    sub["w"] = w
    weights = pd.DataFrame({"line_id": sub["line_id"].to_numpy(), "arm": sub["arm"].astype(str).to_numpy(),
                            "ps": ps, "weight": w})
    groups = sub["arm"].astype(str).astype("category")  # compared with each arm per covariate
    balance = pd.DataFrame([{"covariate": c,
                             "smd_before": smd(sub[c], groups, present, binary=sub[c].isin([0, 1]).all()),
                             "smd_after": smd(sub[c], groups, present, sub["w"], binary=sub[c].isin([0, 1]).all())}
                            for c in covs])
    ess = {a: float(sub.loc[groups == a, "w"].sum() ** 2 / (sub.loc[groups == a, "w"] ** 2).sum()) for a in present}
    km = fit_km(sub, arms, weights="w", alpha=alpha)
    cox = fit_cox(sub, arms, (), weights="w", alpha=alpha)
    if (balance["smd_after"] > 0.1).any():
        bad = ", ".join(balance.loc[balance["smd_after"] > 0.1, "covariate"])
        warns.append(f"after weighting, {bad} still differ between arms (SMD > 0.1)")
    return AdjustedResult(arms, covs, weights, balance, ess, trim, km, cox, note, warns, model, alpha)
