"""Competing risks: response versus stopping the agent first.

A line can end in a response (event 1), in stopping the agent for inefficacy or an adverse
event before any response (event 2, the competing event), or be censored (0). The
Aalen-Johansen estimator gives the cumulative incidence of each per arm.

Why not lifelines' ``AalenJohansenFitter``: it breaks tied event times by random jitter (it
warns "Tied event times were detected"), and visit-based times tie constantly. The estimator
below handles ties exactly (events before censorings at the same time, as R's survfit does);
its point estimates are checked against R's multi-state ``survfit`` in tests/reference, and
its variance is the same Greenwood-type delta-method formula lifelines uses (Collett, Modelling
Survival Data in Medical Research, 3rd ed., p. 411), with log(-log) confidence intervals.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..protocol import Call, FigureSpec, TableSpec, recorded, z_value
from ..display.style import WEEKS_AXIS, arm_color, base_layout, count_text, legend_below

__all__ = ["CIFResult", "aalen_johansen", "fit_competing", "COMPETING_STOP_REASONS"]

COMPETING_STOP_REASONS = ("inefficacy", "adverse_event")


def event_codes(table: pd.DataFrame) -> np.ndarray:
    """1 response, 2 stopped for inefficacy or an adverse event before response, 0 censored."""
    stopped = (table["censor_reason"] == "stopped") & table["stop_reason"].isin(COMPETING_STOP_REASONS)
    return np.where(table["event"] == 1, 1, np.where(stopped, 2, 0))


def aalen_johansen(time: np.ndarray, code: np.ndarray, cause: int, alpha: float = 0.05) -> pd.DataFrame:
    """Cumulative incidence of ``cause`` at each distinct event time, with variance and CI.

    Returns columns time, at_risk, events (this cause), events_all, cif, var, lower, upper."""
    t = np.asarray(time, float)
    c = np.asarray(code, int)
    times = np.unique(t[c > 0])
    if times.size == 0:
        return pd.DataFrame({"time": [0.0], "at_risk": [len(t)], "events": [0], "events_all": [0], "cif": [0.0],
                             "var": [0.0], "lower": [0.0], "upper": [0.0]})
    order = np.sort(t)
    n = len(t) - np.searchsorted(order, times, side="left")  # at risk: time >= t_j
    d_all = np.array([((t == x) & (c > 0)).sum() for x in times]) if len(times) < 64 else \
        pd.Series(c > 0).groupby(t).sum().reindex(times).to_numpy()
    d_k = pd.Series(c == cause).groupby(t).sum().reindex(times).to_numpy()
    d_all = np.asarray(d_all, float)
    d_k = np.asarray(d_k, float)
    surv = np.cumprod(1 - d_all / n)
    lag_s = np.concatenate([[1.0], surv[:-1]])
    cif = np.cumsum(lag_s * d_k / n)
    # Variance (Collett p. 411): sum_i (F - F_i)^2 a_i + sum_i b_i - 2 sum_i (F - F_i) c_i, expanded into prefix sums.
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(n > d_all, d_all / (n * (n - d_all)), 0.0)
    b = lag_s**2 * d_k * (n - d_k) / n**3
    cc = lag_s * d_k / n**2
    sa, saf, saf2 = np.cumsum(a), np.cumsum(a * cif), np.cumsum(a * cif**2)
    sc, scf = np.cumsum(cc), np.cumsum(cc * cif)
    var = (cif**2 * sa - 2 * cif * saf + saf2) + np.cumsum(b) - 2 * (cif * sc - scf)
    var = np.maximum(var, 0.0)
    z = z_value(alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        se_ll = np.sqrt(var) / (cif * np.abs(np.log(cif)))
        lower = np.where((cif > 0) & (cif < 1), cif ** np.exp(z * se_ll), cif)
        upper = np.where((cif > 0) & (cif < 1), cif ** np.exp(-z * se_ll), cif)
    return pd.DataFrame({"time": times, "at_risk": n, "events": d_k.astype(int), "events_all": d_all.astype(int),
                         "cif": cif, "var": var, "lower": lower, "upper": upper})


def _steps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The corners of a right-continuous step function through (x, y), for a filled band."""
    xs = np.repeat(np.asarray(x, float), 2)[1:]
    ys = np.repeat(np.asarray(y, float), 2)[:-1]
    return xs, ys


def _at(curve: pd.DataFrame, t: float, col: str) -> float:
    i = curve["time"].searchsorted(t, side="right") - 1
    return float(curve[col].iloc[i]) if i >= 0 else 0.0


@dataclass(frozen=True)
class CIFResult:
    arms: list[str]
    curves: dict[str, dict[str, pd.DataFrame]]  # arm -> {"response": df, "stopped": df}
    summary: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    alpha: float = 0.05
    call: Call | None = field(default=None, compare=False)

    def without_arms(self, arms) -> "CIFResult":
        return dataclasses.replace(self, curves={a: c for a, c in self.curves.items() if a not in arms})

    def tables(self) -> dict[str, TableSpec]:
        cif = self.summary.reset_index()
        return {"summary": TableSpec(cif, "Cumulative incidence of response and of stopping first",
                                     counts=("lines", "responses", "stopped_first", "censored"), row_whole=True,
                                     derived=tuple(c for c in cif.columns if c.startswith(("response_", "stopped_"))))}

    def figures(self) -> dict[str, FigureSpec]:
        return {"curves": FigureSpec(lambda mc, hidden: self.without_arms(hidden).figure(min_cell=mc),
                                     "Competing risks: response versus stopping the agent first")}

    def to_dict(self) -> dict:
        return {"competing_event": "agent stopped for " + " or ".join(COMPETING_STOP_REASONS) + " before response",
                "method": "Aalen-Johansen", "arms": {
                    arm: {k: (None if pd.isna(v) else float(v)) for k, v in self.summary.loc[arm].items()}
                    for arm in self.summary.index}, "warnings": list(self.warnings)}

    def figure(self, horizon: float = 52.0, title: str | None = None, min_cell: int | None = None) -> go.Figure:
        fig = go.Figure()
        for arm in self.arms:
            if arm not in self.curves:
                continue
            colour = arm_color(arm, self.arms)
            n = count_text(self.summary.loc[arm, "lines"], min_cell)
            for kind, dash in (("response", "solid"), ("stopped", "dash")):
                cur = self.curves[arm][kind]
                cur = cur[cur["time"] <= horizon]
                x = np.concatenate([[0.0], cur["time"].to_numpy(), [horizon]])
                y = 100 * np.concatenate([[0.0], cur["cif"].to_numpy(), [cur["cif"].iloc[-1] if len(cur) else 0.0]])
                label = "response" if kind == "response" else "stopped first"
                if len(cur):  # the pointwise CI as a band of steps under the curve
                    lo = 100 * np.concatenate([[0.0], cur["lower"].to_numpy(), [cur["lower"].iloc[-1]]])
                    hi = 100 * np.concatenate([[0.0], cur["upper"].to_numpy(), [cur["upper"].iloc[-1]]])
                    sx, s_hi = _steps(x, hi)
                    _, s_lo = _steps(x, lo)
                    fig.add_trace(go.Scatter(x=np.concatenate([sx, sx[::-1]]), y=np.concatenate([s_hi, s_lo[::-1]]),
                                             fill="toself", fillcolor=colour, line=dict(width=0), hoverinfo="skip",
                                             opacity=0.16 if kind == "response" else 0.08, showlegend=False,
                                             legendgroup=arm))
                fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line=dict(color=colour, dash=dash, shape="hv",
                                                                            width=2.5 if kind == "response" else 2),
                                         name=f"{arm}: {label} (n = {n})", legendgroup=arm,
                                         hovertemplate="%{x:.1f} weeks: %{y:.1f}%<extra>" + f"{arm} {label}</extra>"))
        fig.update_xaxes(range=[0, horizon], title_text=WEEKS_AXIS)
        fig.update_yaxes(range=[0, 100], title_text="Cumulative incidence (%)")
        base_layout(fig, (title or "Competing risks: response versus stopping the agent first")
                    + f"<br><sup>Aalen-Johansen with pointwise {100 * (1 - self.alpha):.10g}% CI bands (log-log)<br>"
                      "solid: response; dashed: stopped for inefficacy or an adverse event before response</sup>",
                    height=560)
        fig.update_layout(margin=dict(t=110))
        return legend_below(fig, plot_height=380, entry_px=400)  # a row per arm


@recorded(table="table")
def fit_competing(table: pd.DataFrame, arms: list[str] | tuple[str, ...], alpha: float = 0.05) -> CIFResult:
    warns: list[str] = []
    arms = list(arms)
    codes = event_codes(table)
    curves, rows = {}, []
    for arm in arms:
        m = (table["arm"] == arm).to_numpy()
        row = {"arm": arm, "lines": int(m.sum()), "responses": int((codes[m] == 1).sum()),
               "stopped_first": int((codes[m] == 2).sum()), "censored": int((codes[m] == 0).sum())}
        if not m.any():
            warns.append(f"{arm}: no included lines; no cumulative incidence")
            rows.append(row)
            continue
        resp = aalen_johansen(table["time"].to_numpy()[m], codes[m], 1, alpha)
        stop = aalen_johansen(table["time"].to_numpy()[m], codes[m], 2, alpha)
        curves[arm] = {"response": resp, "stopped": stop}
        for w in (12, 24):
            row[f"response_{w}w"] = _at(resp, w, "cif")
            row[f"response_{w}w_lower"] = _at(resp, w, "lower")
            row[f"response_{w}w_upper"] = _at(resp, w, "upper")
            row[f"stopped_{w}w"] = _at(stop, w, "cif")
        rows.append(row)
    if not (codes == 2).any():
        warns.append("no line stopped for inefficacy or an adverse event before response: no competing events")
    summary = pd.DataFrame(rows).set_index("arm")
    return CIFResult(arms, curves, summary, warns, alpha)
