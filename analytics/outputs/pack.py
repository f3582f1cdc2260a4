"""The meeting pack: every figure in publication formats, the tables, a self-contained report
and a manifest of exactly which data, definitions and software produced them.

    cdasi-outcomes report VISITS [--therapies F] [--mapping F] [--response RULE] [--confirm]
                          [--min-cell N] [--pptx] --out DIR

Layout of DIR: ``figures/`` (PNG at print resolution, SVG and PDF through kaleido with one
Chromium session for all figures; self-contained interactive HTML), ``tables/`` (CSV with
machine-readable names and full precision, ``data_dictionary.csv`` saying what each of their
columns means, and ``tables.xlsx``: a sheet per table for people, with labelled columns), ``report.html`` (self-contained; ``report.pdf`` where
Chromium exists), ``meeting.pptx`` (optional, one figure per slide) and ``manifest.json``.
The pack is written into a staging folder inside DIR and moved into place when complete, the
manifest last, replacing an earlier pack's files: a run stopped or failed halfway leaves DIR as
it was.

What a pack holds comes from the registry of analyses (:mod:`analytics.registry`): every
entry's tables and figures, in registry order, one report section per entry heading.

Small-cell suppression (``min_cell``, off by default for internal use; 5 or 11 for sharing) is
:mod:`analytics.display.suppression`, applied once to every table and to the figure labels: counts
from 1 to min_cell - 1 show as "<min_cell", statistics of such groups are suppressed, arms
with fewer lines lose their curves and columns, and a suppressed pack holds no patient-level
table or figure (no lines, trajectories, swimmer plot, residuals or example patient ids).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

import pandas as pd
import plotly.graph_objects as go

from .. import __version__
from ..lines.cohort import CohortFilter
from ..display.export import json_safe, write_csv, write_parquet, xlsx_bytes
from ..display.provenance import (Stamp, html_with_metadata, kaleido_render_many, render_options, stamp_figure,
                                  with_metadata)
from ..models import ModelOptions
from ..lines.options import DeriveOptions, OptionError
from ..pipeline import PARTIAL_PREFIX, Analysis, analyze, load
from ..registry import entries, figure_names, figures_of, table_names, tables_of
from ..spec import PackChoices
from ..display.suppression import count_text, small_groups, suppress
from ..display.tables import dictionary, for_people

__all__ = ["PackOptions", "PackResult", "build_pack", "chromium", "figure_names", "table_names", "zip_dir",
           "collect"]

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
    figures: tuple[str, ...] | None = None  # which figures and tables to include; None = all
    tables: tuple[str, ...] | None = None

    def __post_init__(self):
        for kind, chosen, known in (("figures", self.figures, figure_names()), ("tables", self.tables, table_names())):
            if chosen is None:
                continue
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


# ------------------------------------------------------------------ the pieces, from the registry
@dataclass
class Section:
    heading: str
    figures: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Contents:
    """Everything a pack (or a page) shows, suppressed for ``min_cell``: tables by name,
    figures by name as (figure, caption), table titles, and the report's sections."""

    tables: dict[str, pd.DataFrame]
    figures: dict[str, tuple[go.Figure, str]]
    titles: dict[str, str]
    sections: list[Section]
    scopes: dict[str, str] = field(default_factory=dict)  # name -> "cohort" or "export" (whole export)
    drill_down: set[str] = field(default_factory=set)  # tables in tables/ and the workbook, not the report


def collect(analysis: Analysis, min_cell: int | None = None, figures: tuple[str, ...] | None = None,
            tables: tuple[str, ...] | None = None) -> Contents:
    """The tables and figures of every fitted analysis, in registry order, as they may be shown
    with ``min_cell`` (None: internal, nothing suppressed)."""
    models = analysis.models
    lines_by_arm = {a: int(v["lines"]) for a, v in models["km"].to_dict()["arms"].items()} if "km" in models else {}
    hidden = small_groups(lines_by_arm, min_cell)
    out_t: dict[str, pd.DataFrame] = {}
    out_f: dict[str, tuple[go.Figure, str]] = {}
    titles: dict[str, str] = {}
    sections: dict[str, Section] = {}
    scopes: dict[str, str] = {}
    drill: set[str] = set()
    note = (f" (curves of {', '.join(hidden)} not drawn: fewer than {min_cell} lines)" if hidden else "")
    for e in entries():
        if e.name not in models:
            continue
        result = models[e.name]
        sec = sections.setdefault(e.heading, Section(e.heading))
        for name, spec in figures_of(e, result).items():
            if (figures is not None and name not in figures) or (min_cell and spec.patient_level):
                continue
            out_f[name] = (spec.make(min_cell, tuple(hidden)), spec.caption + note)
            scopes[name] = "export" if e.whole_export else "cohort"
            sec.figures.append(name)
        for name, spec in tables_of(e, result).items():
            if tables is not None and name not in tables:
                continue
            frame = suppress(spec, min_cell, hidden)
            if frame is None:
                continue
            out_t[name] = frame
            if not spec.in_report:
                drill.add(name)
            titles[name] = spec.title or name
            scopes[name] = "export" if e.whole_export else "cohort"
            sec.tables.append(name)
        if e.notes is not None:
            sec.notes.extend(e.notes(result))
    return Contents(out_t, out_f, titles, list(sections.values()), scopes, drill)


PLOTLY_JS = "plotly.min.js"  # one copy per pack, beside the HTML figures that load it


def _export_figures(figs: dict[str, tuple[go.Figure, str]], fig_dir: Path, formats: tuple[str, ...],
                    messages: list[str], stamps: dict[str, Stamp] | None = None) -> None:
    """Every figure as HTML and in ``formats``, each file with its stamp's metadata (the figures
    already carry the stamp's caption). The HTML figures share one plotly.js (``figures/plotly.min.js``)."""
    stamps = stamps or {}
    fig_dir.mkdir(parents=True, exist_ok=True)
    if figs:
        (fig_dir / PLOTLY_JS).write_text(_plotly_js(), encoding="utf-8")
    for name, (fig, _) in figs.items():
        page = html_with_metadata(fig.to_html(include_plotlyjs=PLOTLY_JS, full_html=True), stamps.get(name))
        (fig_dir / f"{name}.html").write_text(page, encoding="utf-8")
    if not formats:
        return
    if chromium() is None:
        messages.append(NO_CHROMIUM)
        return
    jobs = [(name, fmt, fig, render_options(fig, fmt)) for name, (fig, _) in figs.items() for fmt in formats]
    for (name, fmt, _, _), got in zip(jobs, kaleido_render_many([(fig, opts) for _, _, fig, opts in jobs])):
        if isinstance(got, Exception):  # a browser or rendering failure: report it, keep the rest
            messages.append(f"{name}.{fmt} could not be rendered: {type(got).__name__}: {got}")
        else:
            (fig_dir / f"{name}.{fmt}").write_bytes(with_metadata(got, fmt, stamps.get(name)))


LARGE_TABLE_ROWS = 10_000  # above this a table is written compressed and typed, and left out of the workbook


def is_large(df: pd.DataFrame) -> bool:
    return len(df) > LARGE_TABLE_ROWS


def table_files(name: str, large: bool) -> list[str]:
    """The files a table of the pack is written to, under tables/."""
    return [f"{name}.csv.gz", f"{name}.parquet"] if large else [f"{name}.csv"]


def write_table(df: pd.DataFrame, table_dir: Path, name: str) -> list[Path]:
    """A table of the pack: a CSV; a large one (a line-level table of a big cohort) as a gzipped
    CSV and a Parquet file instead, both neutralised, so that its cost and size stay small."""
    large = is_large(df)
    paths = [table_dir / f for f in table_files(name, large)]
    write_csv(df, paths[0])
    if large:
        write_parquet(df, paths[1])
    return paths


def _versions() -> dict:
    out = {"python": platform.python_version(), "cdasi-outcomes": __version__}
    for pkg in ("pandas", "numpy", "scipy", "lifelines", "statsmodels", "patsy", "plotly", "kaleido", "openpyxl",
                "python-pptx", "jinja2", "streamlit"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _methods(analysis: Analysis, options: PackOptions, versions: dict) -> list[str]:
    o = analysis.derivation.options
    lo, hi = o.baseline_window_days
    out = [
        f"Therapy lines were derived from {analysis.derivation.episode_source}: each start of a systemic agent the "
        "patient was not already on is a line; glucocorticoids and topicals are never lines. The baseline is the "
        f"latest visit with a CDASI activity score from {-lo} days before to {hi} days after the line start; "
        "follow-up runs from the visit after the baseline to the earliest of the agent's stop, the start of another "
        "systemic agent and the patient's last visit.",
        f"Response: {o.response.describe()}" + (", confirmed at the next follow-up visit" if o.confirm else "")
        + f" (rule {o.response}). Time to response is in weeks from the line start; lines without a response are "
        "censored at their last follow-up visit.",
    ]
    from ..registry import FitContext

    ctx = FitContext(analysis.prepared, analysis.derivation, analysis.full, analysis.model_options)
    out += [e.methods(analysis.models[e.name], ctx) for e in entries()
            if e.methods is not None and e.name in analysis.models]
    out += [
        "Software: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ". Numbers were checked against R "
        "(survival, lme4) in the project's test suite.",
        ("Small-cell suppression: counts below " f"{options.min_cell} are shown as <{options.min_cell}, statistics "
         "of such groups are suppressed, and no patient-level data is included.") if options.min_cell else
        "Internal pack: no small-cell suppression; patient-level tables are included. Do not share outside the "
        "department; rerun with --min-cell 5 (or 11) for sharing.",
    ]
    return out


LIMITATIONS = [
    "Observational data: therapy lines were not randomised. Later-line agents go to more refractory patients "
    "(confounding by indication), so unadjusted arm differences are biased; weighting balances only the measured "
    "covariates, and unmeasured confounding may remain.",
    "Responses are seen only at visits: visit spacing delays the dated response (see the interval-censoring "
    "sensitivity analysis). Visits without a CDASI score count only as the patient's last visit.",
    "A patient can contribute several lines; standard errors are clustered by patient, but carry-over from a "
    "previous agent is not modelled.",
]


def _report_html(title: str, meta: dict, contents: Contents, methods: list[str], fig_dir: Path,
                 static: bool) -> str:
    """The report, from templates/report.html.j2 (jinja2, autoescaped). Figures and tables are
    the only markup let through: plotly's own HTML or SVG, and pandas' escaped table HTML."""
    from jinja2 import Environment, PackageLoader, select_autoescape
    from markupsafe import Markup

    env = Environment(loader=PackageLoader("analytics.outputs", "templates"), autoescape=select_autoescape(["html", "j2"]))
    sections = []
    for sec in contents.sections:
        figs = [{"body": Markup(_figure_body(name, contents.figures[name][0], fig_dir, static)),
                 "caption": contents.figures[name][1]} for name in sec.figures]
        tabs = []
        left_out = [name for name in sec.tables if name in contents.drill_down]
        for name in sec.tables:
            if name in contents.drill_down:
                continue
            df = contents.tables[name]
            tabs.append({"name": name, "title": contents.titles.get(name, name), "body": Markup(_table_html(df, name)),
                         "more": max(len(df) - 60, 0)})
        notes = list(sec.notes)
        if left_out:
            notes.append(f"Drill-down lists (internal pack only), in tables/ and, up to {LARGE_TABLE_ROWS:,} rows, "
                         "tables.xlsx: "
                         + ", ".join(f"{' and '.join(table_files(n, is_large(contents.tables[n])))} "
                                     f"({len(contents.tables[n]):,} rows)" for n in left_out) + ".")
        if figs or tabs or notes:
            sections.append({"heading": sec.heading, "figures": figs, "tables": tabs, "notes": notes,
                             "warnings": sec.warnings})
    return env.get_template("report.html.j2").render(
        title=title, meta=meta, sections=sections, methods=methods, limitations=LIMITATIONS,
        plotly_js=None if static else Markup(_plotly_js()))


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    """plotly.js as the pack carries it: the library compressed (zlib, base64) with a loader that
    inflates it with pako (vendored, ``assets/pako_inflate.es5.min.js``, MIT and Zlib licences)
    and runs it at once, so that ``Plotly`` is defined for the scripts after it, as with the plain
    library. 1.98 MB instead of 4.8 MB, in each of the two places it is needed (the report and
    figures/plotly.min.js): that kept the pack of 10,000 patients under 25 MB when the scheme's
    figures were added. Runs in any browser that runs plotly.js (pako is ES5; no eval)."""
    import base64
    import zlib

    import plotly
    from plotly.offline import get_plotlyjs

    payload = base64.b64encode(zlib.compress(get_plotlyjs().encode("utf-8"), 9)).decode("ascii")
    pako = (Path(__file__).parent / "assets" / "pako_inflate.es5.min.js").read_text(encoding="utf-8")
    return (f"/* plotly.js (plotly.py {plotly.__version__}), zlib-compressed and base64-encoded, inflated below by "
            "pako 2.1.0 (https://github.com/nodeca/pako, MIT and Zlib licences) */\n"
            f"{pako}\n"
            "(function(){var s=atob(\"" + payload + "\"),b=new Uint8Array(s.length),i;"
            "for(i=0;i<s.length;i++){b[i]=s.charCodeAt(i);}"
            "var e=document.createElement(\"script\");e.text=pako.inflate(b,{to:\"string\"});"
            "(document.head||document.documentElement).appendChild(e);})();\n")


def _table_html(df: pd.DataFrame, name: str = "", max_rows: int = 60) -> str:
    """The table for people (labels with units, "< 0.001", integer counts, no inf/NaN/None),
    as escaped HTML; every cell is text, so pandas writes no number in scientific notation."""
    return for_people(df.head(max_rows), name).to_html(index=False, escape=True, border=0)


def _figure_body(name: str, fig: go.Figure, fig_dir: Path, static: bool) -> str:
    if static:
        svg = fig_dir / f"{name}.svg"
        return svg.read_text(encoding="utf-8") if svg.exists() else f"<p>(see figures/{name}.html)</p>"
    return fig.to_html(include_plotlyjs=False, full_html=False, default_width="100%")


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
               options: PackOptions | None = None, progress: Callable[[str], None] | None = None,
               spec=None, date_format: str | None = None, workers: int | None = 1) -> PackResult:
    """Write the meeting pack into ``out``. Raises InvalidDataError when the data is invalid.

    ``spec``: an :class:`~analytics.spec.AnalysisSpec` instead of ``derive_options``,
    ``model_options``, ``cohort`` and the pack's choices (``options`` then adds only the
    formats, the deck and the title). The cohort filters restrict every analysis except the
    quality indicators, which describe care in the whole export (as on the Quality page).
    ``workers`` > 1: the models are fitted on that many processes (:mod:`analytics.parallel`;
    the command line's ``--jobs``); None: chosen from the cores and the size of the export."""
    options = options or PackOptions()
    if spec is not None:
        derive_options, model_options, cohort = spec.derive, spec.models, spec.cohort
        options = dataclasses.replace(options, min_cell=spec.pack.min_cell, figures=spec.pack.figures,
                                      tables=spec.pack.tables)
    derive_options = derive_options or DeriveOptions()
    model_options = model_options or ModelOptions()
    cohort = cohort or CohortFilter()
    say = progress or (lambda _msg: None)
    out = Path(out)
    t0 = time.perf_counter()
    say("reading and validating the export")
    prepared, timings = load(visits, therapies, mapping, date_format)
    say("deriving therapy lines")
    analysis = analyze(prepared, derive_options, timings, models=model_options, cohort=cohort,
                       progress=lambda title: say(f"fitting: {title}"), spec=spec, workers=workers)
    t1 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    # written into a staging folder and moved into place when complete: a run stopped (Ctrl-C,
    # SIGTERM) or failed halfway leaves no half pack, and an earlier pack in ``out`` stays whole
    work = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=out))
    try:
        mc = options.min_cell
        messages: list[str] = [str(w) for w in analysis.notes]  # e.g. a spec saved for other data
        contents = collect(analysis, mc, options.figures, options.tables)
        spec_used = analysis.spec(PackChoices(mc, _unless_all(options.figures, figure_names()),
                                              _unless_all(options.tables, table_names())))
        src = prepared.sources["visits"]
        data = f"{src['name']} (sha256 {src['sha256'][:16]}...)"
        stamps = {name: spec_used.stamp(contents.scopes.get(name, "cohort"), data, caption, mc)
                  for name, (_, caption) in contents.figures.items()}
        contents.figures = {name: (stamp_figure(fig, stamps[name]), caption)
                            for name, (fig, caption) in contents.figures.items()}
        table_dir = work / "tables"
        table_dir.mkdir(parents=True, exist_ok=True)  # the workbook's "about" sheet is written with no table chosen
        for name, df in contents.tables.items():
            write_table(df, table_dir, name)
        if contents.tables:  # what every column of every CSV means (the CSVs keep machine names)
            write_csv(dictionary(contents.tables), table_dir / "data_dictionary.csv")
        sheets = {n: df for n, df in contents.tables.items() if not is_large(df)}
        whole = [n for n in sheets if contents.scopes.get(n) == "export"]
        extra = {}
        if whole:
            extra["whole export"] = f"sheets {', '.join(whole)} describe the whole export (cohort filters not applied)"
        large = [n for n in contents.tables if n not in sheets]
        if large:
            extra["large tables"] = (f"{', '.join(large)} (over {LARGE_TABLE_ROWS:,} rows) are not in this workbook: "
                                     "see tables/" + ", tables/".join(table_files(n, True)[0] for n in large)
                                     + " and their .parquet")
        book = spec_used.stamp("cohort", data, f"{options.title}: tables", mc)
        if extra:
            book = dataclasses.replace(book, extra=extra)
        (table_dir / "tables.xlsx").write_bytes(xlsx_bytes(sheets, book))
        say("rendering the figures (one browser session)")
        fig_dir = work / "figures"
        t2 = time.perf_counter()
        _export_figures(contents.figures, fig_dir, options.formats, messages, stamps)
        t3 = time.perf_counter()

        say("writing the report")
        versions = _versions()
        meta = {"Created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "Input": f"{src['name']} (sha256 {src['sha256'][:16]}...)",
                "Response rule": str(derive_options.response) + (" (confirmed)" if derive_options.confirm else ""),
                "Arms": ", ".join(derive_options.arms),
                "Cohort filters": "; ".join(cohort.describe()) or "none",
                "Intervals": f"{100 * (1 - model_options.alpha):.10g}% (alpha {model_options.alpha:g})",
                "Small-cell suppression": f"counts below {mc} shown as <{mc}" if mc else "off (internal use only)",
                "Tool": f"cdasi-outcomes {__version__}"}
        methods = _methods(analysis, options, versions)
        for static in (False, True):
            page = _report_html(options.title, meta, contents, methods, fig_dir, static)
            (work / ("report_print.html" if static else "report.html")).write_text(page, encoding="utf-8")
        if chromium() is not None and "svg" in options.formats:
            _pdf(work / "report_print.html", work / "report.pdf", messages)
        (work / "report_print.html").unlink(missing_ok=True)
        if options.pptx:
            _pptx(contents.figures, fig_dir, work / "meeting.pptx", options.title, messages)
        t4 = time.perf_counter()

        results = analysis.results()
        manifest = {
            "tool": {"name": "cdasi-outcomes", "version": __version__},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "input": {"sha256": src["sha256"], "sources": prepared.sources,
                      "rows": prepared.counts.get("rows_read"), "visits": prepared.counts.get("visits"),
                      "patients": prepared.counts.get("patients"),
                      "lines": {"derived": int(len(analysis.derivation.lines)),
                                "included": int(analysis.derivation.lines["included"].sum())}},
            "definitions": results["definitions"],
            "spec": spec_used.to_dict(),
            "filters": asdict(cohort) | {"text": cohort.describe()},
            "options": {"derive": repr(derive_options), "models": repr(model_options), "pack": asdict(options)},
            "analyses": results["analyses"],
            "contents": {"figures": list(contents.figures), "tables": list(contents.tables)},
            "min_cell": mc,
            "software": versions,
            "messages": messages,
            "timings_s": {"analysis": t1 - t0, "tables": t2 - t1, "figures": t3 - t2, "report": t4 - t3},
        }
        if mc:
            for k in ("rows", "visits", "patients"):
                manifest["input"][k] = count_text(manifest["input"][k] or 0, mc)
            manifest["input"]["lines"] = {k: count_text(v, mc) for k, v in manifest["input"]["lines"].items()}
        manifest["files"] = [{"path": path.relative_to(work).as_posix(), "sha256": _sha256(path),
                              "bytes": path.stat().st_size}
                             for path in sorted(p for p in work.rglob("*") if p.is_file() and p.name != "manifest.json")]
        (work / "manifest.json").write_text(json.dumps(json_safe(manifest), indent=2) + "\n", encoding="utf-8")
        _publish(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return PackResult(out, manifest, messages, manifest["timings_s"])


# what a pack is made of in its folder: a new pack replaces all of them, so that no figure, deck or
# PDF of an earlier pack stays beside a manifest that does not list it
PACK_ENTRIES = ("figures", "tables", "report.html", "report.pdf", "meeting.pptx", "manifest.json")


def _publish(work: Path, out: Path) -> None:
    """Move the finished pack from its staging folder ``work`` into ``out``, replacing an earlier
    pack's files; the manifest last, so that a folder with a manifest holds a whole pack."""
    for name in PACK_ENTRIES:
        old = out / name
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() or old.is_symlink():
            old.unlink()
    for entry in sorted(work.iterdir(), key=lambda p: p.name == "manifest.json"):
        entry.replace(out / entry.name)


def _unless_all(chosen, every) -> tuple[str, ...] | None:
    """A choice of figures or tables as the spec writes it: None when it is all of them."""
    return None if chosen is None or set(chosen) == set(every) else tuple(chosen)


def zip_dir(folder: Path) -> bytes:
    """The pack as one ZIP (in memory), paths relative to the pack folder."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            zf.write(path, path.relative_to(folder).as_posix())
    return buf.getvalue()
