"""Kaplan-Meier time to response per arm, with risk table, medians and log-rank tests.

Curves are drawn as cumulative response, 1 - S(t), going up. Medians are the Kaplan-Meier
median time to response (first time S(t) <= 0.5), with the confidence interval where the
pointwise log(-log) CI band crosses 0.5 (lifelines; R's survfit with conf.type = "log-log").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test
from lifelines.utils import median_survival_times
from plotly.subplots import make_subplots

from ..lines.analysis_table import capture_warnings
from ..protocol import Call, FigureSpec, TableSpec, ci_label, recorded
from ..display.style import WEEKS_AXIS, arm_color, base_layout, count_text, figure_width

__all__ = ["KMResult", "fit_km", "risk_table"]


def _finite(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def risk_table(time: np.ndarray, event: np.ndarray, ticks: list[float], weights: np.ndarray | None = None) -> dict:
    """Numbers at risk (time >= t), cumulative events and censored (time <= t) at each tick."""
    t = np.asarray(time, float)
    e = np.asarray(event, bool)
    return {"at_risk": [int((t >= x).sum()) for x in ticks],
            "events": [int(((t <= x) & e).sum()) for x in ticks],
            "censored": [int(((t <= x) & ~e).sum()) for x in ticks]}


def _step_at(series: pd.Series | pd.DataFrame, t: float):
    """Value of a right-continuous step function (indexed by time) at t."""
    idx = series.index.searchsorted(t, side="right") - 1
    return series.iloc[max(idx, 0)]


@dataclass(frozen=True)
class KMResult:
    """Kaplan-Meier per arm. ``summary``: one row per arm; ``risk``: the risk table as data."""

    arms: list[str]
    summary: pd.DataFrame
    risk: pd.DataFrame
    ticks: list[float]
    logrank: dict
    pairwise: pd.DataFrame
    fitters: dict[str, KaplanMeierFitter] = field(repr=False)
    warnings: list[str] = field(default_factory=list)
    weighted: bool = False
    alpha: float = 0.05
    call: Call | None = field(default=None, compare=False)

    def without_arms(self, arms) -> "KMResult":
        """The same result without the curves of ``arms`` (too small to show)."""
        return dataclasses.replace(self, fitters={a: f for a, f in self.fitters.items() if a not in arms})

    def tables(self) -> dict[str, TableSpec]:
        km = self.summary.reset_index()
        return {"medians": TableSpec(km, "Median time to response and cumulative response by arm",
                                     counts=("lines", "events"),
                                     derived=tuple(c for c in km.columns if c not in ("arm", "lines", "events"))),
                "risk_table": TableSpec(self.risk.reset_index(), "Number at risk, cumulative responses and censored",
                                        counts=("at_risk", "events", "censored"), row_whole=True),
                "pairwise": TableSpec(self.pairwise, "Pairwise log-rank tests (Holm-corrected)")}

    def figures(self) -> dict[str, FigureSpec]:
        what = "weighted (IPTW) " if self.weighted else ""
        return {"curves": FigureSpec(lambda mc, hidden: self.without_arms(hidden).figure(min_cell=mc),
                                     f"Time to response, {what}Kaplan-Meier, with the number at risk")}

    def to_dict(self) -> dict:
        arms = {}
        for arm in self.arms:
            r = self.summary.loc[arm]
            arms[arm] = {"lines": int(r["lines"]), "events": int(r["events"]), "median": _finite(r["median"]),
                         "median_ci": [_finite(r["median_lower"]), _finite(r["median_upper"])],
                         "cumulative_response_12w": _finite(r["cum_12w"]),
                         "cumulative_response_12w_ci": [_finite(r["cum_12w_lower"]), _finite(r["cum_12w_upper"])],
                         "cumulative_response_24w": _finite(r["cum_24w"]),
                         "cumulative_response_24w_ci": [_finite(r["cum_24w_lower"]), _finite(r["cum_24w_upper"])]}
        risk = {arm: {k: self.risk.loc[arm, k].tolist() for k in ("at_risk", "events", "censored")}
                for arm in self.arms if arm in self.risk.index.get_level_values(0)}
        return {"arms": arms, "logrank": self.logrank,
                "logrank_pairwise": self.pairwise.to_dict(orient="records"),
                "risk_table": {"ticks_weeks": self.ticks, "arms": risk}, "weighted": self.weighted,
                "warnings": list(self.warnings)}

    def figure(self, title: str | None = None, horizon: float | None = None, min_cell: int | None = None) -> go.Figure:
        return km_figure(self, title=title, horizon=horizon, min_cell=min_cell)


@recorded(table="table")
def fit_km(table: pd.DataFrame, arms: list[str] | tuple[str, ...], ticks: list[float] | None = None,
           weights: str | None = None, alpha: float = 0.05, tests: bool = True) -> KMResult:
    """Kaplan-Meier time to response per arm from :func:`analytics.lines.analysis_table.analysis_table`.
    ``tests=False``: the curves, medians and risk table only, no log-rank tests (for callers that do
    not report them; lifelines' tests take most of the time with many arms)."""
    warns: list[str] = []
    arms = list(arms)
    ticks = list(ticks) if ticks is not None else [0.0, 12.0, 24.0, 36.0, 48.0]
    rows, fitters, risk_rows = [], {}, []
    # each arm's rows found once (comparing a text column to each arm again costs at 360,000 lines)
    codes, labels = pd.factorize(table["arm"], use_na_sentinel=True)
    at = {label: np.flatnonzero(codes == k) for k, label in enumerate(labels)}
    none = np.array([], dtype=np.intp)

    def of(arm):
        return table.iloc[at.get(arm, none)]

    for arm in arms:
        sub = of(arm)
        row = {"arm": arm, "lines": len(sub), "events": int(sub["event"].sum())}
        nan = dict.fromkeys(["median", "median_lower", "median_upper", "cum_12w", "cum_12w_lower", "cum_12w_upper",
                             "cum_24w", "cum_24w_lower", "cum_24w_upper"], np.nan)
        if sub.empty:
            warns.append(f"{arm}: no included lines; its curve, median and tests are empty")
            rows.append(row | nan)
            risk_rows.append((arm, [0] * len(ticks), [0] * len(ticks), [0] * len(ticks)))
            continue
        if row["events"] == 0:
            warns.append(f"{arm}: no responses among {len(sub)} lines; the median is not reached")
        kmf = KaplanMeierFitter(alpha=alpha)
        with capture_warnings(warns):
            kmf.fit(sub["time"], sub["event"], label=arm, weights=sub[weights] if weights else None)
        fitters[arm] = kmf
        med = kmf.median_survival_time_
        ci = median_survival_times(kmf.confidence_interval_)
        lo, hi = (float(ci.iloc[0, 0]), float(ci.iloc[0, 1])) if len(ci) else (np.nan, np.nan)
        row |= {"median": float(med), "median_lower": lo, "median_upper": hi}
        for w in (12, 24):
            s = float(_step_at(kmf.survival_function_.iloc[:, 0], w))
            band = _step_at(kmf.confidence_interval_survival_function_, w)
            row |= {f"cum_{w}w": 1 - s, f"cum_{w}w_lower": 1 - float(band.iloc[1]),
                    f"cum_{w}w_upper": 1 - float(band.iloc[0])}
        rows.append(row)
        rt = risk_table(sub["time"], sub["event"], ticks)
        risk_rows.append((arm, rt["at_risk"], rt["events"], rt["censored"]))
    summary = pd.DataFrame(rows).set_index("arm")
    risk = pd.DataFrame([{"arm": a, "tick": t, "at_risk": r, "events": e, "censored": c}
                         for a, rs, es, cs in risk_rows for t, r, e, c in zip(ticks, rs, es, cs)]
                        ).set_index(["arm", "tick"])

    present = [a for a in arms if len(at.get(a, none)) > 0]
    logrank = {"statistic": None, "df": max(len(present) - 1, 0), "p": None, "arms": present}
    pair_rows = []
    if not tests:
        pass  # the caller reports no test: logrank stays empty, and no warning is made about it
    elif weights:
        warns.append("log-rank tests are not computed for weighted curves; see the weighted Cox model")
    elif len(present) >= 2:
        sub = table[table["arm"].isin(present)]
        if sub["event"].sum() == 0:
            warns.append("no responses in any arm: the log-rank test is not defined")
        else:
            with capture_warnings(warns):
                res = multivariate_logrank_test(sub["time"], sub["arm"].astype(str), sub["event"])
            logrank |= {"statistic": float(res.test_statistic), "p": float(res.p_value)}
            for a, b in combinations(present, 2):
                x, y = of(a), of(b)
                with capture_warnings(warns):
                    r = logrank_test(x["time"], y["time"], x["event"], y["event"])
                pair_rows.append({"arm_a": a, "arm_b": b, "statistic": float(r.test_statistic),
                                  "p": float(r.p_value)})
            ps = [r["p"] for r in pair_rows]
            adj = holm(ps)
            for r, p in zip(pair_rows, adj):
                r["p_holm"] = float(p)
    else:
        warns.append("fewer than two arms have lines: no log-rank test")
    pairwise = pd.DataFrame(pair_rows, columns=["arm_a", "arm_b", "statistic", "p", "p_holm"])
    return KMResult(arms, summary, risk, ticks, logrank, pairwise, fitters, warns, bool(weights), alpha)


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm, Scand J Stat 1979), in the order given: the k-th
    smallest of n is multiplied by n - k + 1, made non-decreasing, and capped at 1. statsmodels'
    ``multipletests(method="holm")`` gives the same numbers (a test holds them equal) but runs a
    full garbage collection on every call, 0.1 s with a large cohort loaded."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    out = np.empty_like(p)
    out[order] = adj
    return out


def _fmt_p(p: float | None) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _risk_cell(at_risk: int, events: int, censored: int, min_cell: int | None) -> str:
    """ "at risk (cumulative responses, censored)". The three add up to the arm's lines, so when
    one is a small cell the others are hidden too ("-")."""
    vals = (int(at_risk), int(events), int(censored))
    if min_cell and any(0 < v < min_cell for v in vals):
        a, e, c = (count_text(v, min_cell) if 0 < v < min_cell else "–" for v in vals)
    else:
        a, e, c = (str(v) for v in vals)
    return f"{a} ({e}, {c})"


FEW_AT_RISK = 10  # a median with fewer lines at risk than this is marked in the figure


def km_figure(result: KMResult, title: str | None = None, horizon: float | None = None,
              min_cell: int | None = None) -> go.Figure:
    """Cumulative response curves with 1 - alpha CI bands, censor marks, median lines and a
    number-at-risk table aligned to the x ticks."""
    ticks = result.ticks
    medians = [m for m in result.summary["median"] if np.isfinite(m)] if "median" in result.summary else []
    # the axis covers every reported median (a median past the last tick still shows)
    horizon = horizon or max([ticks[-1] * 1.04] + [1.05 * m for m in medians]) or 4.0
    arms_drawn = [a for a in result.arms if a in result.fitters]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.17)
    for arm in arms_drawn:
        kmf = result.fitters[arm]
        colour = arm_color(arm, result.arms)
        sf = kmf.survival_function_.iloc[:, 0]
        ci = kmf.confidence_interval_survival_function_
        x = sf.index.to_numpy()
        keep = x <= horizon
        xs = np.append(x[keep], horizon)
        y = 100 * (1 - np.append(sf.to_numpy()[keep], sf.to_numpy()[keep][-1]))
        lo = 100 * (1 - np.append(ci.iloc[:, 0].to_numpy()[keep], ci.iloc[:, 0].to_numpy()[keep][-1]))
        hi = 100 * (1 - np.append(ci.iloc[:, 1].to_numpy()[keep], ci.iloc[:, 1].to_numpy()[keep][-1]))
        r = result.summary.loc[arm]
        fig.add_trace(go.Scatter(x=np.concatenate([xs, xs[::-1]]), y=np.concatenate([hi, lo[::-1]]),
                                 fill="toself", fillcolor=colour, opacity=0.15, line=dict(width=0),
                                 hoverinfo="skip", showlegend=False, legendgroup=arm), row=1, col=1)
        fig.add_trace(go.Scatter(x=xs, y=y, mode="lines", line=dict(color=colour, width=2.5, shape="hv"),
                                 name=f"{arm} (n = {count_text(r['lines'], min_cell)}, "
                                      f"{count_text(r['events'], min_cell)} responses)",
                                 legendgroup=arm,
                                 hovertemplate="%{x:.1f} weeks: %{y:.1f}%<extra>" + arm + "</extra>"), row=1, col=1)
        ev = kmf.event_table
        cens_t = ev.index[(ev["censored"] > 0) & (ev.index <= horizon)].to_numpy()
        cens_y = 100 * (1 - np.array([_step_at(sf, t) for t in cens_t]))
        fig.add_trace(go.Scatter(x=cens_t, y=cens_y, mode="markers", legendgroup=arm, showlegend=False,
                                 marker=dict(symbol="line-ns-open", size=9, color=colour, line=dict(width=1.5)),
                                 hovertemplate="censored at %{x:.1f} weeks<extra>" + arm + "</extra>"),
                      row=1, col=1)
        med = r["median"]
        if np.isfinite(med) and med <= horizon:
            at_risk = int(ev.loc[ev.index <= med, "at_risk"].iloc[-1]) if (ev.index <= med).any() else 0
            fig.add_shape(type="line", x0=med, x1=med, y0=0, y1=50, line=dict(color=colour, dash="dot", width=1.5),
                          row=1, col=1)
            if at_risk < FEW_AT_RISK:  # a median resting on a handful of lines: marked, with the number
                fig.add_trace(go.Scatter(x=[med], y=[50], mode="markers+text", showlegend=False, legendgroup=arm,
                                         marker=dict(symbol="x-thin-open", size=12, color=colour, line=dict(width=2)),
                                         text=[f"{count_text(at_risk, min_cell)} at risk"], textposition="top center",
                                         textfont=dict(color=colour, size=12),
                                         hovertemplate=f"median {med:.1f} weeks rests on fewer than {FEW_AT_RISK} "
                                                       "lines at risk<extra>" + arm + "</extra>"), row=1, col=1)
    fig.add_shape(type="line", x0=0, x1=horizon, y0=50, y1=50, line=dict(color="#888", dash="dot", width=1),
                  row=1, col=1)
    # Number-at-risk table: one row per arm, one column per x tick, aligned with the ticks above.
    # Narrower than the design (a journal column), cells hold the number at risk only.
    narrow = figure_width() < 650
    for i, arm in enumerate(result.arms):
        r = result.risk.loc[arm] if arm in result.risk.index.get_level_values(0) else None
        cells = [] if r is None else [_risk_cell(a, e, c, min_cell).split(" (")[0] if narrow else
                                      _risk_cell(a, e, c, min_cell)
                                      for a, e, c in zip(r["at_risk"], r["events"], r["censored"])]
        fig.add_trace(go.Scatter(x=ticks, y=[i] * len(ticks), mode="text", text=cells,
                                 textfont=dict(color=arm_color(arm, result.arms), size=13), showlegend=False,
                                 hoverinfo="skip"), row=2, col=1)
    x_range = [-horizon * (0.12 if narrow else 0.07), horizon * 1.01]
    fig.update_yaxes(tickvals=list(range(len(result.arms))), ticktext=result.arms, autorange="reversed",
                     showline=False, ticks="", row=2, col=1, title_text="")
    fig.update_xaxes(tickvals=ticks, range=x_range, row=1, col=1, showticklabels=True, title_text=WEEKS_AXIS,
                     title_standoff=6)
    fig.update_xaxes(tickvals=ticks, range=x_range, row=2, col=1, showline=False, ticks="", showticklabels=False)
    fig.update_yaxes(range=[0, 100], title_text="Cumulative response (%)", row=1, col=1)
    fig.add_annotation(text="Number at risk" if narrow else "Number at risk (cumulative responses, censored)",
                       xref="paper", yref="y2 domain", x=0,
                       y=1.04, xanchor="left", yanchor="bottom", showarrow=False, font=dict(size=13))
    if result.weighted:
        sub = ("Weighted by stabilised inverse-probability weights; numbers at risk are unweighted line counts; "
               f"bands: {ci_label(result.alpha)}")
    elif result.logrank.get("statistic") is not None:
        sub = (f"Log-rank {_fmt_p(result.logrank.get('p'))} (chi-square {result.logrank['statistic']:.2f}, "
               f"df {result.logrank['df']}); dotted lines: medians (x: fewer than {FEW_AT_RISK} at risk); ticks: censored; "
               f"bands: {ci_label(result.alpha)}")
    else:
        sub = f"No log-rank test (fewer than two arms with lines); bands: {ci_label(result.alpha)}"
    default = "Time to response, weighted for the adjustment set (IPTW)" if result.weighted else "Time to response"
    base_layout(fig, f"{title or default}<br><sup>{sub}</sup>", height=640)
    # the legend in a row of its own above the curves, never on them
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0, font=dict(size=13)),
                      margin=dict(t=122), height=672)
    return fig
