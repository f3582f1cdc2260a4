"""Exploratory figures of trajectories and therapy sequences (the model figures live beside
their models). Every function takes derived tables and returns a plotly figure; points carry
the patient id in ``customdata`` so a dashboard can open the patient's timeline on selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from statsmodels.nonparametric.smoothers_lowess import lowess

from ..lines.derive import Derivation
from ..protocol import ci_label, z_value
from .style import CDASI_AXIS, WEEKS_AXIS, arm_color, base_layout, count_text, legend_below, needs_width
from ..ingest.validate import Prepared

__all__ = ["MEASURES", "trajectory_values", "binned_means", "spaghetti_figure", "swimmer_figure", "sankey_figure",
           "timeline_figure", "PATIENT_MARKS", "selected_patient"]

# ``meta`` of the traces whose ``customdata`` is a patient id: only their marks open a timeline
# (an arm mean's customdata is its n, which must never be taken for a patient).
PATIENT_MARKS = "patient_id"


def selected_patient(selection: dict | None, fig: go.Figure) -> str | None:
    """The patient of the first selected mark that carries a patient id (a trace whose ``meta``
    is :data:`PATIENT_MARKS`), from a plotly selection event (``{"selection": {"points": [...]}}``);
    None when no such mark is selected (an arm mean, a smooth, a band)."""
    for point in ((selection or {}).get("selection") or {}).get("points", []):
        curve, value = point.get("curve_number", -1), point.get("customdata")
        if 0 <= curve < len(fig.data) and fig.data[curve].meta == PATIENT_MARKS and value not in (None, "", []):
            return str(value[0] if isinstance(value, (list, tuple)) else value)
    return None

MEASURES = {"absolute": CDASI_AXIS, "change": "Change from baseline (CDASI points)",
            "percent": "Change from baseline (%)"}


def trajectory_values(trajectories: pd.DataFrame, measure: str = "absolute") -> pd.DataFrame:
    """Trajectories with a ``value`` column: the score, its change from baseline, or the percent
    change (undefined at baseline 0: those lines are left out, and counted in ``attrs``)."""
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {list(MEASURES)}")
    t = trajectories.copy()
    if measure == "absolute":
        t["value"] = t["cdasi_activity"]
    elif measure == "change":
        t["value"] = t["cdasi_activity"] - t["baseline_cdasi"]
    else:
        zero = t["baseline_cdasi"] == 0
        t["value"] = np.where(zero, np.nan, 100 * (t["cdasi_activity"] - t["baseline_cdasi"]) / t["baseline_cdasi"])
        t.attrs["lines_without_percent"] = int(t.loc[zero, "line_id"].nunique())
        t = t[~zero]
    return t


def binned_means(values: pd.DataFrame, width: float = 4.0, max_weeks: float = 52.0,
                 alpha: float = 0.05) -> pd.DataFrame:
    """Arm means with 1 - alpha CIs (normal approximation) in bins of ``width`` weeks."""
    v = values[(values["weeks"] <= max_weeks) & (values["arm"] != "")]
    if v.empty:
        return pd.DataFrame(columns=["arm", "weeks", "mean", "lower", "upper", "n"])
    edges = np.arange(-width * np.ceil(9 / width), max_weeks + width, width)
    v = v.assign(bin=pd.cut(v["weeks"], edges, include_lowest=True))
    g = v.groupby(["arm", "bin"], observed=True).agg(mean=("value", "mean"), std=("value", "std"),
                                                     count=("value", "count"), lines=("line_id", "nunique"))
    g = g.reset_index()
    g["weeks"] = g["bin"].map(lambda iv: iv.mid).astype(float)
    half = z_value(alpha) * g["std"].fillna(0) / np.sqrt(g["count"])
    return pd.DataFrame({"arm": g["arm"], "weeks": g["weeks"], "mean": g["mean"], "lower": g["mean"] - half,
                         "upper": g["mean"] + half, "n": g["count"], "lines": g["lines"]})


# The range each measure can take: a mean's CI is clipped to it (a CI below 0 points is impossible).
SCALE_RANGE = {"absolute": (0.0, 100.0), "change": (-100.0, 100.0), "percent": (-100.0, np.inf)}
MIN_BIN_LINES = 5  # a bin's mean and CI are drawn only from this many lines on
MAX_DRAWN_LINES = 300  # above this, a seeded random sample of single lines is drawn (means use every line)


def _sample_lines(vals: pd.DataFrame, max_lines: int, seed: int) -> tuple[pd.DataFrame, int, int]:
    """At most ``max_lines`` lines of ``vals``, a seeded random sample taken in proportion per arm
    (every arm keeps at least one). Returns (rows of the drawn lines, drawn, total)."""
    ids = vals[["arm", "line_id"]].drop_duplicates()
    total = len(ids)
    if total <= max_lines:
        return vals, total, total
    rng = np.random.default_rng(seed)
    keep = []
    for _, group in ids.groupby("arm", sort=True):
        k = max(1, int(round(max_lines * len(group) / total)))
        keep.extend(rng.choice(group["line_id"].to_numpy(), size=min(k, len(group)), replace=False).tolist())
    drawn = vals[vals["line_id"].isin(set(keep))]
    return drawn, len(keep), total


def robust_range(values: pd.Series, measure: str) -> list[float] | None:
    """A y range that outliers do not set, for percent change: the 1st to 99th percentile with
    a margin, within the scale (None: let plotly choose)."""
    if measure != "percent" or values.dropna().empty:
        return None
    lo, hi = np.nanpercentile(values, [1, 99])
    pad = 0.08 * (hi - lo or 10)
    return [max(-100.0, lo - pad), hi + pad]


def _smooth(values: pd.DataFrame, max_points: int = 20_000) -> np.ndarray:
    """A LOWESS smooth of value on weeks; above ``max_points`` visits it runs on the means of
    half-week bins instead of the visits (LOWESS's cost grows with the square of the points)."""
    x, y = values["weeks"].to_numpy(float), values["value"].to_numpy(float)
    if len(x) > max_points:
        b = np.round(x * 2) / 2
        g = pd.DataFrame({"b": b, "y": y}).groupby("b")["y"].mean()
        x, y = g.index.to_numpy(float), g.to_numpy(float)
    return lowess(y, x, frac=0.4, return_sorted=True)


def _with_gaps(groups: pd.Series, *columns: pd.Series) -> list[list]:
    """Concatenate ``columns`` with a None between groups, so one trace draws many separate lines."""
    starts = np.flatnonzero(groups.ne(groups.shift()).to_numpy())[1:]
    return [np.insert(c.to_numpy(dtype=object), starts, None).tolist() for c in columns]


def spaghetti_figure(trajectories: pd.DataFrame, arms: list[str], measure: str = "absolute",
                     max_weeks: float = 52.0, smooth: bool = True, min_cell: int | None = None,
                     webgl: bool = True, alpha: float = 0.05, max_lines: int = MAX_DRAWN_LINES,
                     seed: int = 20210301) -> go.Figure:
    """One thin line per therapy line, aligned at line start; arm means with 1 - alpha CIs in 4-week
    bins; a LOWESS smooth per arm. With ``min_cell`` (anything shared), single lines are not
    drawn and bins with fewer visits are left out. ``webgl=False`` draws SVG lines: slower in a
    browser with thousands of lines, but several times faster to export to PNG, SVG or PDF
    (headless Chromium renders WebGL in software)."""
    vals = trajectory_values(trajectories, measure)
    vals = vals[(vals["weeks"] <= max_weeks) & vals["arm"].isin(arms)]
    fig = go.Figure()
    means = binned_means(vals, max_weeks=max_weeks, alpha=alpha)
    means = means[means["lines"] >= MIN_BIN_LINES]
    lo, hi = SCALE_RANGE[measure]
    means = means.assign(lower=means["lower"].clip(lower=lo, upper=hi), upper=means["upper"].clip(lower=lo, upper=hi))
    ci = ci_label(alpha)
    if min_cell:
        means = means[means["n"] >= min_cell]
    drawn_vals, drawn, total = _sample_lines(vals, max_lines, seed)
    for arm in arms:
        colour = arm_color(arm, arms)
        every = vals[vals["arm"] == arm]
        if every.empty:
            continue
        sub = drawn_vals[drawn_vals["arm"] == arm].sort_values(["line_id", "weeks"])
        n_lines, n_drawn = every["line_id"].nunique(), sub["line_id"].nunique()
        # one trace per arm, a gap (None) between consecutive lines: fast with thousands of lines
        xs, ys, ids = _with_gaps(sub["line_id"], sub["weeks"], sub["value"], sub["patient_id"])
        label = (f"{arm}: single lines (n = {n_lines:,})" if n_drawn == n_lines
                 else f"{arm}: {n_drawn:,} of {n_lines:,} lines")
        if not min_cell:
            trace = go.Scattergl if webgl else go.Scatter
            fig.add_trace(trace(x=xs, y=ys, mode="lines+markers", line=dict(color=colour, width=1),
                                marker=dict(size=3, color=colour), opacity=0.25, legendgroup=arm,
                                name=label, customdata=ids, meta=PATIENT_MARKS,
                                hovertemplate="patient %{customdata}<br>%{x:.1f} weeks: %{y:.1f}<extra>" + arm
                                              + "</extra>"))
        m = means[means["arm"] == arm]
        fig.add_trace(go.Scatter(x=m["weeks"], y=m["mean"], mode="markers", legendgroup=arm,
                                 name=f"{arm}: mean with {ci}",
                                 marker=dict(color=colour, size=9, line=dict(color="white", width=1)),
                                 error_y=dict(type="data", symmetric=False, array=m["upper"] - m["mean"],
                                              arrayminus=m["mean"] - m["lower"], color=colour, thickness=1.5),
                                 customdata=[count_text(n, min_cell) for n in m["n"]],
                                 hovertemplate="%{x:.0f} weeks: mean %{y:.1f} (n = %{customdata})"
                                                                  "<extra>" + arm + "</extra>"))
        if smooth and len(every) >= 10:
            sm = _smooth(every)
            fig.add_trace(go.Scatter(x=sm[:, 0], y=sm[:, 1], mode="lines", line=dict(color=colour, width=3),
                                     legendgroup=arm, name=f"{arm}: LOWESS", hoverinfo="skip"))
    if measure != "absolute":
        fig.add_hline(y=0, line=dict(color="#888", dash="dash"))
    if measure == "change":
        fig.add_hline(y=-4, line=dict(color="#888", dash="dot"), annotation_text="-4 points (MCID)",
                      annotation_position="bottom right")
    fig.update_xaxes(title_text=WEEKS_AXIS, range=[-9, max_weeks])
    fig.update_yaxes(title_text=MEASURES[measure], range=robust_range(vals["value"], measure))
    note = ""
    if drawn < total and not min_cell:
        note += f"; showing a random sample of {drawn:,} of {total:,} lines (seed {seed}); means use every line"
    if measure == "percent":
        note += "; axis: 1st-99th percentile"
    if measure == "percent" and vals.attrs.get("lines_without_percent"):
        note += f"; {vals.attrs['lines_without_percent']} line(s) with baseline 0 have no percent change"
    base_layout(fig, "CDASI activity trajectories by arm<br><sup>Aligned at line start; thin lines: single therapy "
                f"lines; points: arm means with {ci} in 4-week bins; thick lines: LOWESS smooth{note}</sup>", height=580)
    fig.update_layout(margin=dict(t=100))
    return legend_below(fig, plot_height=360, entry_px=260)  # a row per arm: lines, mean, LOWESS


def swimmer_figure(derivation: Derivation, max_patients: int = 60, arms: list[str] | None = None) -> go.Figure:
    """Therapy lines per patient (one row each), from start to end of the line's window, with
    response and stop markers. Shows the ``max_patients`` patients with the most lines."""
    arms = arms or list(derivation.options.arms)
    ln = derivation.lines.copy()
    if ln.empty:
        fig = go.Figure()
        base_layout(fig, "Therapy lines per patient: no lines in this cohort", height=300)
        return fig
    counts = ln.groupby("patient_id")["line_id"].size().sort_values(ascending=False, kind="stable")
    patients = counts.index[:max_patients].tolist()
    ln = ln[ln["patient_id"].isin(patients)]
    first = ln.groupby("patient_id")["start_day"].min()
    ln["x0"] = (ln["start_day"] - ln["patient_id"].map(first)) / 7
    ln["x1"] = (ln["end_day"].astype(float) - ln["patient_id"].map(first)) / 7
    ln["x1"] = np.maximum(ln["x1"], ln["x0"] + 0.5)
    fig = go.Figure()
    labels = {a: a for a in arms}
    for group, sub in ln.groupby(ln["arm"].where(ln["arm"] != "", "other")):
        colour = arm_color(group, arms) if group != "other" else "#BBBBBB"
        xs, ys, ids = [], [], []
        for r in sub.itertuples():
            xs += [r.x0, r.x1, None]
            ys += [r.patient_id, r.patient_id, None]
            ids += [r.patient_id, r.patient_id, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=colour, width=9),
                                 name=labels.get(group, "other systemic agents"), customdata=ids, meta=PATIENT_MARKS,
                                 hovertemplate="patient %{customdata}<extra>" + group + "</extra>"))
    ev = ln[ln["event"] == 1]
    fig.add_trace(go.Scatter(x=ev["x0"] + ev["time_weeks"], y=ev["patient_id"], mode="markers", name="response",
                             marker=dict(symbol="star", size=11, color="#000000"), customdata=ev["patient_id"],
                             meta=PATIENT_MARKS,
                             hovertemplate="response at %{x:.0f} weeks<extra>%{customdata}</extra>"))
    st = ln[ln["end_reason"] == "stopped"]
    fig.add_trace(go.Scatter(x=st["x1"], y=st["patient_id"], mode="markers", name="agent stopped",
                             marker=dict(symbol="x-thin", size=10, color="#D55E00", line=dict(width=2)),
                             customdata=st["patient_id"], text=st["stop_reason"], meta=PATIENT_MARKS,
                             hovertemplate="stopped (%{text})<extra>%{customdata}</extra>"))
    fig.update_yaxes(categoryorder="array", categoryarray=patients[::-1], title_text="Patient",
                     tickfont=dict(size=10))
    fig.update_xaxes(title_text="Weeks since the patient's first therapy line")
    base_layout(fig, f"Therapy lines per patient<br><sup>{len(patients)} patients with the most lines; bars: line "
                "start to end of its follow-up window; stars: responses; crosses: agent stopped</sup>",
                height=max(420, 120 + 16 * len(patients)))
    fig.update_layout(margin=dict(t=100))
    return fig


# the usual abbreviations, so that labels of neighbouring columns do not run into each other (hover: full name)
_SHORT = {"hydroxychloroquine": "HCQ", "methotrexate": "MTX", "mycophenolate mofetil": "MMF", "azathioprine": "AZA",
          "cyclosporine": "CSA", "tacrolimus": "TAC", "rituximab": "RTX"}


def sankey_figure(derivation: Derivation, max_lines: int = 4, min_cell: int | None = None) -> go.Figure:
    """Therapy sequences: agents at line 1, 2, ... ``max_lines`` per patient, flows counted in
    patients. With ``min_cell``, flows of fewer patients are left out and small node counts
    show as "<min_cell" (small-cell suppression)."""
    ln = derivation.lines[derivation.lines["line_number"] <= max_lines]
    arms = list(derivation.options.arms)
    code = ln["arm"].where(ln["arm"] != "", ln["agent"])
    seq = ln.assign(node=[f"Line {n}: {c}" for n, c in zip(ln["line_number"], code)])
    pairs = seq.sort_values(["patient_id", "line_number"]).assign(
        nxt=lambda d: d.groupby("patient_id")["node"].shift(-1)).dropna(subset=["nxt"])
    flows = pairs.groupby(["node", "nxt"]).size().reset_index(name="n")
    flows = flows[flows["n"] >= (min_cell or 1)]
    nodes = sorted(set(flows["node"]) | set(flows["nxt"]), key=lambda s: (int(s.split()[1].rstrip(":")), s))
    idx = {n: i for i, n in enumerate(nodes)}
    totals = seq.groupby("node")["patient_id"].nunique()

    def colour(node: str) -> str:
        name = node.split(": ", 1)[1]
        return arm_color(name, arms) if name in arms else "#BBBBBB"

    fig = go.Figure(go.Sankey(
        arrangement="snap",
        # short labels (the column says the line): "Line 3: IVIG (n = 118)" ran into the next column's labels
        node=dict(label=[f"{_SHORT.get(n.split(': ', 1)[1], n.split(': ', 1)[1])} ({count_text(totals.get(n, 0), min_cell)})"
                         for n in nodes],
                  customdata=nodes, hovertemplate="%{customdata}: %{value} patients<extra></extra>",
              color=[colour(n) for n in nodes],
                  pad=14, thickness=16),
        link=dict(source=[idx[s] for s in flows["node"]], target=[idx[t] for t in flows["nxt"]],
                  value=flows["n"].tolist(), color="rgba(150,150,150,0.35)")))
    columns = sorted({int(n.split()[1].rstrip(":")) for n in nodes})
    for i, number in enumerate(columns):  # a header over each column of nodes
        fig.add_annotation(text=f"<b>Line {number}</b>", xref="paper", yref="paper", y=1.0, yanchor="bottom",
                           x=i / max(1, len(columns) - 1), showarrow=False, font=dict(size=13),
                           xanchor="left" if i == 0 else "right" if i == len(columns) - 1 else "center")
    base_layout(fig, f"Therapy sequences, lines 1-{max_lines}<br><sup>Flows: patients moving from one line's agent to "
                "the next (numbers: patients); grey: systemic agents in no arm (HCQ hydroxychloroquine, MTX methotrexate)</sup>", height=560)
    fig.update_layout(margin=dict(t=120))
    return needs_width(fig, 150 * len(columns))  # a node label ("IVIG (118)") beside each column's nodes


def timeline_figure(prepared: Prepared, derivation: Derivation, patient_id: str) -> go.Figure:
    """One patient's visits (CDASI activity and damage, prednisone dose) and therapy lines."""
    v = prepared.visits[prepared.visits["patient_id"] == patient_id].sort_values("day")
    ln = derivation.lines[derivation.lines["patient_id"] == patient_id]
    arms = list(derivation.options.arms)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.08,
                        specs=[[{"secondary_y": True}], [{}]])
    x = v["day"] / 7
    fig.add_trace(go.Scatter(x=x, y=v["cdasi_activity"], mode="lines+markers", name="CDASI activity",
                             line=dict(color="#0072B2", width=2), connectgaps=True), row=1, col=1)
    if "cdasi_damage" in v:
        fig.add_trace(go.Scatter(x=x, y=v["cdasi_damage"], mode="lines+markers", name="CDASI damage",
                                 line=dict(color="#CC79A7", width=1.5, dash="dot")), row=1, col=1)
    if "prednisone_mg_day" in v and v["prednisone_mg_day"].fillna(0).gt(0).any():
        fig.add_trace(go.Bar(x=x, y=v["prednisone_mg_day"], name="prednisone (mg/day)", marker_color="#999999",
                             opacity=0.35), row=1, col=1, secondary_y=True)
        fig.update_yaxes(title_text="Prednisone (mg/day)", secondary_y=True, row=1, col=1, showgrid=False)
    blank = v["cdasi_activity"].isna()
    if blank.any():
        fig.add_trace(go.Scatter(x=x[blank], y=[0] * int(blank.sum()), mode="markers", name="visit without a score",
                                 marker=dict(symbol="line-ns-open", size=10, color="#555")), row=1, col=1)
    for r in ln.itertuples():
        responded = bool(pd.notna(r.event) and r.event == 1)
        colour = arm_color(r.arm, arms) if r.arm else "#BBBBBB"
        label = f"{r.line_number}: {r.agent}"
        x1 = (float(r.end_day) if pd.notna(r.end_day) else r.start_day + 7) / 7
        fig.add_trace(go.Scatter(x=[r.start_day / 7, max(x1, r.start_day / 7 + 0.5)], y=[label, label], mode="lines",
                                 line=dict(color=colour, width=12), showlegend=False,
                                 hovertemplate=f"line {label}: {'response' if responded else (r.censor_reason or r.exclusion_reason)}"
                                               "<extra></extra>"), row=2, col=1)
        if responded:
            fig.add_trace(go.Scatter(x=[(r.start_day + r.time_weeks * 7) / 7], y=[label], mode="markers",
                                     marker=dict(symbol="star", size=13, color="#000"), showlegend=False,
                                     hovertemplate="response<extra></extra>"), row=2, col=1)
    fig.update_yaxes(title_text="CDASI (points)", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="Therapy line", row=2, col=1, autorange="reversed")
    anchor = "first visit" if prepared.time_basis == "date" else "the export's day 0"
    fig.update_xaxes(title_text=f"Weeks since {anchor}", row=2, col=1)
    base_layout(fig, f"Patient {patient_id}<br><sup>{len(v)} visits, {len(ln)} therapy lines; bars: each line "
                "from start to the end of its follow-up window; stars: responses</sup>", height=620)
    fig.update_layout(margin=dict(t=100))
    return fig
