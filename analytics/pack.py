"""The meeting pack: every figure in publication formats, the tables, a self-contained report
and a manifest of exactly which data, definitions and software produced them.

    cdasi-outcomes report VISITS [--therapies F] [--mapping F] [--response RULE] [--confirm]
                          [--min-cell N] [--pptx] --out DIR

Layout of DIR: ``figures/`` (PNG at print resolution, SVG and PDF through kaleido with one
Chromium session for all figures; self-contained interactive HTML), ``tables/`` (CSV, and
``tables.xlsx`` with a sheet per table), ``report.html`` (self-contained; ``report.pdf`` where
Chromium exists), ``meeting.pptx`` (optional, one figure per slide) and ``manifest.json``.

Small-cell suppression (``min_cell``, off by default for internal use; 5 or 11 for sharing):
every count from 1 to min_cell - 1 in tables, risk tables, figure labels and Sankey nodes
shows as "<min_cell"; a statistic computed from such a group (a median, a proportion, a mean)
is suppressed with it; a suppressed pack holds no patient-level table or figure (no lines,
trajectories, swimmer plot, individual trajectories or example patient ids).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
import platform
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from . import __version__
from .cohort import CohortFilter, apply_filter
from .export import json_safe, write_csv, xlsx_bytes
from .models import ModelOptions, Models, fit_models
from .options import DeriveOptions, OptionError
from .pipeline import analyze, load
from .plots import sankey_figure, spaghetti_figure, swimmer_figure
from .style import count_text

__all__ = ["PackOptions", "PackResult", "build_pack", "chromium", "suppress_table", "FIGURES", "TABLES", "zip_dir"]

# What a pack can hold (a patient-level item is left out when small cells are suppressed).
FIGURES = ("km", "cox_unadjusted", "cox_adjusted", "competing_risks", "mixed_model", "trajectories", "sequences",
           "balance", "km_weighted", "quality_cdasi_documented", "quality_no_mcid_by_12w", "swimmer")
TABLES = ("attrition", "table1", "km_medians", "km_risk_table", "logrank_pairwise", "cox_unadjusted",
          "cox_adjusted", "competing_risks", "interval_censoring", "mixed_fixed_effects", "mixed_slopes", "balance",
          "cox_weighted", "quality_indicators", "quality_by_period", "validation_report", "lines", "trajectories")

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
_FORMATS = ("png", "svg", "pdf")
NO_CHROMIUM = ("PNG, SVG and PDF figures and the PDF report need a Chromium, which this machine lacks: install "
               "Debian's package (apt-get install chromium) and run the report again. The HTML figures, the "
               "tables and the HTML report were written.")


def chromium() -> str | None:
    return next((p for p in map(shutil.which, _BROWSERS) if p), None)


@dataclass(frozen=True)
class PackOptions:
    min_cell: int | None = None
    pptx: bool = False
    formats: tuple[str, ...] = _FORMATS
    title: str = "CDASI outcomes: meeting pack"
    figures: tuple[str, ...] = FIGURES  # which figures and tables to include
    tables: tuple[str, ...] = TABLES
    period: str = "year"  # of the quality indicators

    def __post_init__(self):
        if self.period not in ("quarter", "year"):
            raise OptionError("period must be 'quarter' or 'year'")
        for kind, chosen, known in (("figures", self.figures, FIGURES), ("tables", self.tables, TABLES)):
            unknown = set(chosen) - set(known)
            if unknown:
                raise OptionError(f"unknown {kind} {sorted(unknown)}; choose from {', '.join(known)}")
            object.__setattr__(self, kind, tuple(chosen))
        if self.min_cell is not None and not (2 <= int(self.min_cell) <= 1000):
            raise OptionError("--min-cell must be between 2 and 1000 (5 or 11 are usual for sharing)")
        bad = set(self.formats) - set(_FORMATS)
        if bad:
            raise OptionError(f"unknown figure formats {sorted(bad)}; choose from {_FORMATS}")


@dataclass
class PackResult:
    out: Path
    manifest: dict
    messages: list[str] = field(default_factory=list)
    timings_s: dict = field(default_factory=dict)


# ------------------------------------------------------------------ small-cell suppression
def _small(x, min_cell: int) -> bool:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return False
    return np.isfinite(v) and v == int(v) and 0 < v < min_cell


def suppress_table(df: pd.DataFrame, counts: list[str], derived: list[str] | None = None,
                   min_cell: int | None = None) -> pd.DataFrame:
    """Counts in ``counts`` from 1 to min_cell - 1 become "<min_cell"; in a row with such a
    count, the ``derived`` columns (statistics of that small group) become "suppressed"."""
    if not min_cell or df.empty:
        return df
    out = df.astype(object).copy()
    small_row = pd.Series(False, index=df.index)
    for c in counts:
        if c in out.columns:
            mask = df[c].map(lambda v: _small(v, min_cell))
            out.loc[mask, c] = f"<{min_cell}"
            small_row |= mask
    for c in derived or []:
        if c in out.columns:
            out.loc[small_row, c] = "suppressed"
    return out


def _suppress_text_counts(text: str, min_cell: int | None) -> str:
    """Table 1 cells such as '3 (8%)' and plain counts, suppressed with their percentage."""
    if not min_cell:
        return text
    s = str(text)
    head = s.split(" ", 1)[0]
    if head.isdigit() and _small(head, min_cell):
        return f"<{min_cell}" + (" (suppressed)" if "(" in s else "")
    return s


# ------------------------------------------------------------------ the pieces
def small_arms(models: Models, min_cell: int | None) -> list[str]:
    """Arms with 1 to min_cell - 1 included lines: their curves and Table 1 columns would reveal counts."""
    if not min_cell:
        return []
    lines = models.km.summary["lines"]
    return [a for a in models.arms if 0 < int(lines.get(a, 0)) < min_cell]


def _without_arms(result, arms: list[str]):
    """A copy of a KM or competing-risks result with the curves of ``arms`` left out."""
    import dataclasses

    if not arms or result is None:
        return result
    if hasattr(result, "fitters"):
        return dataclasses.replace(result, fitters={a: f for a, f in result.fitters.items() if a not in arms})
    return dataclasses.replace(result, curves={a: c for a, c in result.curves.items() if a not in arms})


def _complementary(n: pd.Series, hidden: pd.Series, groups: list[list[int]]) -> pd.Series:
    """When exactly one part of a sum is hidden, hide the smallest other part too, so that no
    hidden count can be recovered by subtraction from the total (complementary suppression)."""
    hidden = hidden.copy()
    changed = True
    while changed:
        changed = False
        for parts in groups:
            parts = [i for i in parts if i in n.index]
            shown = [i for i in parts if not hidden[i] and n[i] > 0]
            if sum(hidden[i] for i in parts) == 1 and shown:
                hidden[min(shown, key=lambda i: n[i])] = True
                changed = True
    return hidden


def _suppress_attrition(att: pd.DataFrame, arms: list[str], min_cell: int) -> pd.DataFrame:
    n = att["n"].astype(int)
    hidden = n.map(lambda v: _small(v, min_cell))
    step = {s.strip(): i for i, s in enumerate(att["step"])}
    groups = [[step.get("rows with errors (not used)"), step.get("repeated rows merged"), step.get("visits")],
              [step.get("excluded: no baseline"), step.get("excluded: no follow-up"),
               step.get("lines included in the arms")],
              [step.get(a) for a in arms]]
    groups = [[i for i in g if i is not None] for g in groups]
    hidden = _complementary(n, hidden, groups)
    out = att.astype(object).copy()
    out.loc[hidden, "n"] = [f"<{min_cell}" if _small(v, min_cell) else "suppressed" for v in n[hidden]]
    # "186 responses" in the notes of the arm rows: counts too
    out["note"] = [re.sub(r"^(\d+) responses$", lambda m: f"{count_text(m.group(1), min_cell)} responses", str(x))
                   for x in out["note"]]
    return out


def _tables(analysis, models: Models, min_cell: int | None) -> dict[str, pd.DataFrame]:
    d, p = analysis.derivation, analysis.prepared
    t: dict[str, pd.DataFrame] = {}
    att = d.attrition.copy()
    t["attrition"] = _suppress_attrition(att, models.arms, min_cell) if min_cell else att
    t1 = models.table1.table.copy()
    if min_cell:
        hidden = small_arms(models, min_cell)
        for arm in models.arms:
            if arm in hidden:  # every statistic of a small arm would describe a handful of patients
                t1[arm] = [f"<{min_cell}"] + ["suppressed"] * (len(t1) - 1)
            elif arm in t1.columns:
                t1[arm] = t1[arm].map(lambda v: _suppress_text_counts(v, min_cell))
        if hidden:
            t1["SMD"] = "suppressed"
    t["table1"] = t1
    km = models.km.summary.reset_index()
    t["km_medians"] = suppress_table(km, ["lines", "events"], [c for c in km.columns if c not in ("arm", "lines",
                                                                                                  "events")], min_cell)
    risk = models.km.risk.reset_index()
    if min_cell:  # at risk, events and censored add up: suppress the whole tick when any is small
        small = risk[["at_risk", "events", "censored"]].map(lambda v: _small(v, min_cell)).any(axis=1)
        risk = risk.astype(object)
        for c in ("at_risk", "events", "censored"):
            risk.loc[small, c] = risk.loc[small, c].map(lambda v: count_text(v, min_cell) if _small(v, min_cell)
                                                        else "suppressed")
    t["km_risk_table"] = risk
    t["logrank_pairwise"] = models.km.pairwise
    any_small_arm = bool(small_arms(models, min_cell)) or (min_cell and any(
        _small(v, min_cell) for v in models.km.summary["events"]))
    for name, cox in (("cox_unadjusted", models.cox), ("cox_adjusted", models.cox_adjusted)):
        tab = cox.summary.reset_index()
        tab.insert(1, "n_lines", cox.n_lines)
        tab.insert(2, "n_events", cox.n_events)
        tab = suppress_table(tab, ["n_lines", "n_events"], ["coef", "se", "hr", "lower", "upper", "p",
                                                            "se_model"], min_cell)
        if any_small_arm:  # the totals would give away a suppressed arm count by subtraction
            tab["n_lines"] = tab["n_lines"].astype(object)
            tab["n_events"] = tab["n_events"].astype(object)
            tab.loc[:, ["n_lines", "n_events"]] = "suppressed"
        t[name] = tab
    cif = models.competing.summary.reset_index()
    t["competing_risks"] = suppress_table(cif, ["lines", "responses", "stopped_first", "censored"],
                                          [c for c in cif.columns if c.startswith(("response_", "stopped_"))],
                                          min_cell)
    iv = models.interval.summary.reset_index()
    t["interval_censoring"] = suppress_table(iv, ["lines"], [c for c in iv.columns if c not in ("arm", "lines")],
                                             min_cell)
    m = models.mixed
    t["mixed_fixed_effects"] = m.fixed_effects.reset_index(names="term")
    slopes = m.slopes.reset_index()
    slopes.insert(1, "lines", slopes["arm"].map(m.lines_by_arm).fillna(0).astype(int))
    t["mixed_slopes"] = suppress_table(slopes, ["lines"], [c for c in slopes.columns if c not in ("arm", "lines")],
                                       min_cell)
    t["balance"] = models.adjusted.balance
    if models.adjusted.cox is not None:
        t["cox_weighted"] = models.adjusted.cox.summary.reset_index()
    q = analysis.quality()
    qs = q.summary.copy()
    qp = q.by_period.copy()
    t["quality_indicators"] = suppress_table(qs, ["numerator", "denominator"], ["value"], min_cell)
    t["quality_by_period"] = suppress_table(qp, ["numerator", "denominator"], ["value"], min_cell)
    rep = p.report.to_frame()
    if min_cell:  # example patient ids are patient-level; counts of affected rows are small cells too
        rep = suppress_table(rep.drop(columns=["patient_ids", "rows"]), ["count"], min_cell=min_cell)
    t["validation_report"] = rep
    if not min_cell:  # patient-level tables only in the internal (unsuppressed) pack
        t["lines"] = d.lines
        t["trajectories"] = d.trajectories
    return t


def _figures(analysis, models: Models, min_cell: int | None) -> dict[str, tuple[go.Figure, str]]:
    d = analysis.derivation
    arms = list(d.options.arms)
    traj = d.trajectories[d.trajectories["arm"] != ""]
    hidden = small_arms(models, min_cell)
    note = (f" (curves of {', '.join(hidden)} not drawn: fewer than {min_cell} lines)" if hidden else "")
    if hidden:
        traj = traj[~traj["arm"].isin(hidden)]
    km = _without_arms(models.km, hidden)
    f: dict[str, tuple[go.Figure, str]] = {
        "km": (km.figure(min_cell=min_cell), "Time to response (Kaplan-Meier) with the number at risk" + note),
        "cox_unadjusted": (models.cox.figure(min_cell=min_cell, totals=not hidden), "Cox model, unadjusted"),
        "cox_adjusted": (models.cox_adjusted.figure(min_cell=min_cell, totals=not hidden), "Cox model, adjusted"),
        "competing_risks": (_without_arms(models.competing, hidden).figure(min_cell=min_cell),
                            "Competing risks" + note),
        "mixed_model": (models.mixed.figure(min_cell=min_cell), "Mixed model: CDASI activity over time"),
        "trajectories": (spaghetti_figure(traj, arms, "change", min_cell=min_cell, webgl=False),
                         "Change in CDASI activity from baseline"),
        "sequences": (sankey_figure(d, 4, min_cell=min_cell), "Therapy sequences"),
    }
    if models.adjusted.km is not None:
        f["balance"] = (models.adjusted.balance_figure(), "Covariate balance before and after weighting")
        f["km_weighted"] = (_without_arms(models.adjusted.km, hidden).figure(min_cell=min_cell),
                            "Time to response, weighted (IPTW)" + note)
    q = analysis.quality()
    for key in ("cdasi_documented", "no_mcid_by_12w"):
        f[f"quality_{key}"] = (q.figure(key, min_cell), f"Quality indicator by {q.period}: {key.replace('_', ' ')}")
    if not min_cell:  # patient-level: internal packs only
        f["swimmer"] = (swimmer_figure(d, 40), "Therapy lines per patient")
    return f


def _export_figures(figs: dict[str, tuple[go.Figure, str]], fig_dir: Path, formats: tuple[str, ...],
                    messages: list[str]) -> None:
    fig_dir.mkdir(parents=True, exist_ok=True)
    for name, (fig, _) in figs.items():
        (fig_dir / f"{name}.html").write_text(fig.to_html(include_plotlyjs=True, full_html=True), encoding="utf-8")
    if not formats:
        return
    if chromium() is None:
        messages.append(NO_CHROMIUM)
        return
    import kaleido

    # One browser session renders every figure in every format (a started sync server; measured
    # twice as fast here as write_fig_from_object_sync, which took 16 s for the sample's 30 images).
    kaleido.start_sync_server(n=1, timeout=120, silence_warnings=True)
    try:
        for name, (fig, _) in figs.items():
            for fmt in formats:
                opts = {"format": fmt, "width": fig.layout.width or 900, "height": fig.layout.height or 560,
                        "scale": 3 if fmt == "png" else 1}
                try:
                    kaleido.write_fig_sync(fig, path=str(fig_dir / f"{name}.{fmt}"), opts=opts)
                except Exception as exc:  # a browser or rendering failure: report it, keep the rest
                    messages.append(f"{name}.{fmt} could not be rendered: {type(exc).__name__}: {exc}")
    finally:
        kaleido.stop_sync_server(silence_warnings=True)


def _versions() -> dict:
    out = {"python": platform.python_version(), "cdasi-outcomes": __version__}
    for pkg in ("pandas", "numpy", "scipy", "lifelines", "statsmodels", "plotly", "kaleido", "openpyxl",
                "python-pptx", "streamlit"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _methods(analysis, models: Models, options: PackOptions, versions: dict) -> list[str]:
    o = analysis.derivation.options
    mo = models.mixed
    lo, hi = o.baseline_window_days
    adj = ", ".join(models.cox_adjusted.covariates) or "none"
    return [
        f"Therapy lines were derived from {analysis.derivation.episode_source}: each start of a systemic agent the "
        "patient was not already on is a line; glucocorticoids and topicals are never lines. The baseline is the "
        f"latest visit with a CDASI activity score from {-lo} days before to {hi} days after the line start; "
        "follow-up runs from the visit after the baseline to the earliest of the agent's stop, the start of another "
        "systemic agent and the patient's last visit.",
        f"Response: {o.response.describe()}" + (", confirmed at the next follow-up visit" if o.confirm else "")
        + f" (rule {o.response}). Time to response is in weeks from the line start; lines without a response are "
        "censored at their last follow-up visit.",
        "Kaplan-Meier estimates with 95% log-log confidence intervals; log-rank tests across arms and pairwise with "
        "Holm correction. Cox proportional-hazards models with Efron ties and robust (sandwich) standard errors "
        f"clustered by patient, unadjusted and adjusted for {adj}; proportional hazards checked with scaled "
        "Schoenfeld residuals. Competing risks (stopping for inefficacy or an adverse event before response) by "
        "the Aalen-Johansen estimator. Interval-censoring sensitivity: Turnbull NPMLE and Weibull AFT models.",
        f"Linear mixed model {mo.formula} with random effects {mo.re_formula} by line, REML, on the first "
        f"{mo.spec.horizon_weeks:g} weeks of each line" + (f"; fallback: {mo.fallback}" if mo.fallback else "")
        + ". Adjusted comparison: stabilised inverse-probability-of-treatment weights from a multinomial "
        "propensity model on the common support, truncated at the 1st and 99th percentiles.",
        "Software: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ". Numbers were checked against R "
        "(survival, lme4) in the project's test suite.",
        ("Small-cell suppression: counts below " f"{options.min_cell} are shown as <{options.min_cell}, statistics "
         "of such groups are suppressed, and no patient-level data is included.") if options.min_cell else
        "Internal pack: no small-cell suppression; patient-level tables are included. Do not share outside the "
        "department; rerun with --min-cell 5 (or 11) for sharing.",
    ]


LIMITATIONS = [
    "Observational data: therapy lines were not randomised. Later-line agents go to more refractory patients "
    "(confounding by indication), so unadjusted arm differences are biased; weighting balances only the measured "
    "covariates, and unmeasured confounding may remain.",
    "Responses are seen only at visits: visit spacing delays the dated response (see the interval-censoring "
    "sensitivity analysis). Visits without a CDASI score count only as the patient's last visit.",
    "A patient can contribute several lines; standard errors are clustered by patient, but carry-over from a "
    "previous agent is not modelled.",
]


def _report_html(title: str, meta: dict, sections: list[tuple[str, str]], methods: list[str],
                 static: bool) -> str:
    css = ("body{font-family:Arial,Helvetica,sans-serif;max-width:1000px;margin:2em auto;color:#222;line-height:1.45}"
           "table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;"
           "padding:3px 7px;text-align:left}th{background:#f3f3f3}h2{border-bottom:2px solid #0072B2;"
           "padding-bottom:3px;margin-top:2em}.note{background:#fff4e0;border-left:4px solid #E69F00;padding:.6em 1em}"
           "figure{margin:0 0 1.5em}figcaption{font-size:13px;color:#555}.meta td{border:none;padding:1px 8px}"
           "@media print{h2{page-break-before:auto}figure,table{page-break-inside:avoid}table{font-size:8px}"
           "td,th{padding:1px 3px}}")
    head = "<script>" + _plotly_js() + "</script>" if not static else ""
    meta_rows = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(str(v))}</td></tr>"
                        for k, v in meta.items())
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    methods_html = "".join(f"<p>{html.escape(m)}</p>" for m in methods)
    limits = "".join(f"<li>{html.escape(x)}</li>" for x in LIMITATIONS)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{css}</style>{head}</head><body><h1>{html.escape(title)}</h1>"
            f"<table class='meta'>{meta_rows}</table>{body}<h2>Methods</h2>{methods_html}"
            f"<h2>Limitations</h2><div class='note'><ul>{limits}</ul></div></body></html>")


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _table_html(df: pd.DataFrame | None, max_rows: int = 60) -> str:
    if df is None:
        return ""
    shown = df.head(max_rows)
    more = f"<p><i>{len(df) - max_rows} more rows in tables/</i></p>" if len(df) > max_rows else ""
    return shown.to_html(index=False, na_rep="", float_format=lambda x: f"{x:.3g}", escape=True, border=0) + more


def _figure_html(name: str, fig: go.Figure, caption: str, fig_dir: Path, static: bool) -> str:
    if static:
        svg = fig_dir / f"{name}.svg"
        body = svg.read_text(encoding="utf-8") if svg.exists() else f"<p>(see figures/{name}.html)</p>"
    else:
        body = fig.to_html(include_plotlyjs=False, full_html=False, default_width="100%")
    return f"<figure>{body}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _pdf(html_path: Path, pdf_path: Path, messages: list[str]) -> None:
    exe = chromium()
    if exe is None:
        return
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--no-pdf-header-footer",
               f"--user-data-dir={profile}", f"--print-to-pdf={pdf_path}", html_path.resolve().as_uri()]
        try:
            subprocess.run(cmd, capture_output=True, timeout=180, check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            messages.append(f"the PDF report could not be printed: {exc}")
    if not pdf_path.exists():
        messages.append("the PDF report could not be printed by Chromium; the HTML report is complete")


def _pptx(figs: dict[str, tuple[go.Figure, str]], fig_dir: Path, path: Path, title: str, messages: list[str]) -> None:
    try:
        from pptx import Presentation
        from pptx.util import Inches, Pt
    except ImportError:
        messages.append("the PPTX deck needs python-pptx (pip install python-pptx); it was not written")
        return
    prs = Presentation()
    prs.slide_width, prs.slide_height = Inches(13.333), Inches(7.5)
    slide = prs.slides.add_slide(prs.slide_layouts[0])
    slide.shapes.title.text = title
    slide.placeholders[1].text = _dt.date.today().isoformat()
    for name, (_, caption) in figs.items():
        png = fig_dir / f"{name}.png"
        if not png.exists():
            continue
        s = prs.slides.add_slide(prs.slide_layouts[5])
        s.shapes.title.text = caption
        s.shapes.title.text_frame.paragraphs[0].font.size = Pt(26)
        s.shapes.add_picture(str(png), Inches(1.2), Inches(1.3), height=Inches(5.9))
    prs.save(str(path))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------ entry point
def build_pack(visits: str | Path, out: str | Path, therapies: str | Path | None = None,
               mapping: str | Path | None = None, derive_options: DeriveOptions | None = None,
               model_options: ModelOptions | None = None, cohort: CohortFilter | None = None,
               options: PackOptions | None = None, progress: Callable[[str], None] | None = None) -> PackResult:
    """Write the meeting pack into ``out``. Raises InvalidDataError when the data is invalid."""
    options = options or PackOptions()
    derive_options = derive_options or DeriveOptions()
    cohort = cohort or CohortFilter()
    say = progress or (lambda _msg: None)
    out = Path(out)
    t0 = time.perf_counter()
    say("reading and validating the export")
    prepared, timings = load(visits, therapies, mapping)
    say("deriving therapy lines and fitting the models")
    analysis = analyze(prepared, derive_options, timings)
    analysis.period = options.period
    if cohort.active:
        analysis.derivation = apply_filter(analysis.derivation, prepared, cohort).derivation
    models = fit_models(analysis.derivation, prepared, model_options)
    analysis.models = models
    t1 = time.perf_counter()
    mc = options.min_cell
    messages: list[str] = []
    out.mkdir(parents=True, exist_ok=True)
    tables = {k: v for k, v in _tables(analysis, models, mc).items() if k in options.tables}
    table_dir = out / "tables"
    for name, df in tables.items():
        write_csv(df, table_dir / f"{name}.csv")
    (table_dir / "tables.xlsx").write_bytes(xlsx_bytes(tables))
    say("rendering the figures (one browser session)")
    figs = {k: v for k, v in _figures(analysis, models, mc).items() if k in options.figures}
    fig_dir = out / "figures"
    t2 = time.perf_counter()
    _export_figures(figs, fig_dir, options.formats, messages)
    t3 = time.perf_counter()

    say("writing the report")
    versions = _versions()
    files = {"visits": prepared.sources["visits"]}
    meta = {"Created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "Input": f"{files['visits']['name']} (sha256 {files['visits']['sha256'][:16]}...)",
            "Response rule": str(derive_options.response) + (" (confirmed)" if derive_options.confirm else ""),
            "Arms": ", ".join(derive_options.arms),
            "Cohort filters": "; ".join(cohort.describe()) or "none",
            "Small-cell suppression": f"counts below {mc} shown as <{mc}" if mc else "off (internal use only)",
            "Tool": f"cdasi-outcomes {__version__}"}
    mx = models.mixed
    sections = [
        ("Cohort and attrition", _table_html(tables.get("attrition"))),
        ("Table 1: characteristics by arm", _table_html(tables.get("table1"))
         + "<p>SMD: largest absolute pairwise standardised mean difference between arms.</p>"),
        ("Trajectories", "{trajectories}"),
        ("Time to response", "{km}" + _table_html(tables.get("km_medians")) + _table_html(tables.get("km_risk_table"))),
        ("Cox model", "{cox_unadjusted}{cox_adjusted}" + _table_html(tables.get("cox_adjusted"))
         + f"<p>Proportional hazards: {html.escape(models.cox_adjusted.ph_text)}</p>"),
        ("Competing risks", "{competing_risks}" + _table_html(tables.get("competing_risks"))),
        ("Mixed model", "{mixed_model}" + _table_html(tables.get("mixed_slopes"))
         + (f"<p>Fallback: {html.escape(mx.fallback)}</p>" if mx.fallback else "")),
        ("Adjusted comparison (weighted)", f"<div class='note'>{html.escape(models.adjusted.note)}</div>"
         + "{balance}{km_weighted}" + _table_html(tables.get("balance"))),
        ("Therapy sequences", "{sequences}"),
        ("Quality indicators", "{quality_cdasi_documented}{quality_no_mcid_by_12w}"
         + _table_html(tables.get("quality_indicators"))
         + "".join(f"<p>{html.escape(n)}</p>" for n in analysis.quality().notes)),
    ]
    methods = _methods(analysis, models, options, versions)
    for static in (False, True):
        filled = []
        for head, content in sections:
            for name in FIGURES:
                html_fig = _figure_html(name, *figs[name], fig_dir, static) if name in figs else ""
                content = content.replace("{" + name + "}", html_fig)
            filled.append((head, content))
        page = _report_html(options.title, meta, filled, methods, static)
        target = out / ("report.html" if not static else "report_print.html")
        target.write_text(page, encoding="utf-8")
    if chromium() is not None and "svg" in options.formats:
        _pdf(out / "report_print.html", out / "report.pdf", messages)
    (out / "report_print.html").unlink(missing_ok=True)
    if options.pptx:
        _pptx(figs, fig_dir, out / "meeting.pptx", options.title, messages)
    t4 = time.perf_counter()

    results = analysis.results()
    manifest = {
        "tool": {"name": "cdasi-outcomes", "version": __version__},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "input": {"sha256": prepared.sources["visits"]["sha256"], "sources": prepared.sources,
                  "rows": prepared.counts.get("rows_read"), "visits": prepared.counts.get("visits"),
                  "patients": prepared.counts.get("patients"),
                  "lines": {"derived": int(len(analysis.derivation.lines)),
                            "included": int(analysis.derivation.lines["included"].sum())}},
        "definitions": results["definitions"],
        "filters": asdict(cohort) | {"text": cohort.describe()},
        "options": {"derive": repr(derive_options), "models": repr(model_options or ModelOptions()),
                    "pack": asdict(options)},
        "min_cell": mc,
        "software": versions,
        "messages": messages,
        "timings_s": {"analysis": t1 - t0, "tables": t2 - t1, "figures": t3 - t2, "report": t4 - t3},
    }
    if mc:
        for k in ("rows", "visits", "patients"):
            manifest["input"][k] = count_text(manifest["input"][k] or 0, mc)
        manifest["input"]["lines"] = {k: count_text(v, mc) for k, v in manifest["input"]["lines"].items()}
    files_list = []
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"):
        files_list.append({"path": path.relative_to(out).as_posix(), "sha256": _sha256(path),
                           "bytes": path.stat().st_size})
    manifest["files"] = files_list
    (out / "manifest.json").write_text(json.dumps(json_safe(manifest), indent=2) + "\n", encoding="utf-8")
    return PackResult(out, manifest, messages, manifest["timings_s"])



def zip_dir(folder: Path) -> bytes:
    """The pack as one ZIP (in memory), paths relative to the pack folder."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            zf.write(path, path.relative_to(folder).as_posix())
    return buf.getvalue()
