"""The meeting pack: files and manifest hashes, small-cell suppression in every table and figure
text, formula neutralisation, and the export without Chromium."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from pathlib import Path

import openpyxl
import pytest

from analytics.cli import main
from analytics.outputs.pack import NO_CHROMIUM, PackOptions, build_pack, chromium
from analytics.sample import write_sample

from .procs import descendants, name, running

HAVE_CHROMIUM = chromium() is not None
COUNT_COLUMNS = {"n", "lines", "events", "at_risk", "censored", "responses", "stopped_first", "n_lines", "n_events",
                 "count", "numerator", "denominator"}
# Counts as figures write them: "n = 12", "12 responses", "12 lines", "12 visits", "12 patients", risk "12 (3, 4)".
FIGURE_COUNTS = [re.compile(p) for p in (r"n = (\d+)", r"\b(\d+) responses", r"\b(\d+) lines", r"\b(\d+) visits",
                                         r"\b(\d+) patients", r"\b(\d+) \((\d+), (\d+)\)", r'"(\d+)/(\d+)"')]


def _need_chromium():
    if not HAVE_CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium (make test installs it)")
        pytest.skip("no chromium on this machine")


@pytest.fixture(scope="module")
def sample_pack(sample_dir, tmp_path_factory):
    _need_chromium()
    out = tmp_path_factory.mktemp("pack")
    return build_pack(sample_dir / "visits.csv", out, sample_dir / "therapies.csv", options=PackOptions(pptx=True))


@pytest.fixture(scope="module")
def small_pack(tmp_path_factory):
    """A 40-patient cohort, shared with --min-cell 11: most arm-level counts are small cells."""
    src = tmp_path_factory.mktemp("small_src")
    paths = write_sample(src, n_patients=40, seed=3)
    out = tmp_path_factory.mktemp("small_pack")
    return build_pack(paths["visits"], out, paths["therapies"], options=PackOptions(min_cell=11))


def _files(pack) -> dict[str, str]:
    return {f["path"]: f["sha256"] for f in pack.manifest["files"]}


def test_manifest_lists_every_file_with_its_hash(sample_pack):
    listed = _files(sample_pack)
    on_disk = {p.relative_to(sample_pack.out).as_posix() for p in sample_pack.out.rglob("*") if p.is_file()}
    assert on_disk - {"manifest.json"} == set(listed)
    for path, sha in listed.items():
        assert hashlib.sha256((sample_pack.out / path).read_bytes()).hexdigest() == sha, path
    for required in ("report.html", "report.pdf", "meeting.pptx", "tables/tables.xlsx", "tables/table1.csv",
                     "tables/lines.csv", "figures/km.png", "figures/km.svg", "figures/km.pdf", "figures/km.html",
                     "tables/quality_indicators.csv", "figures/quality_cdasi_documented.png"):
        assert required in listed, required
    m = sample_pack.manifest
    assert m["input"]["sha256"] == hashlib.sha256((Path(m["input"]["sources"]["visits"]["name"]).name and
                                                   (Path(__file__).parents[1] / "sample_data" / "visits.csv"))
                                                  .read_bytes()).hexdigest()
    assert m["definitions"]["response"] == "points:4" and m["min_cell"] is None
    assert {"python", "pandas", "lifelines", "statsmodels", "plotly", "kaleido"} <= set(m["software"])
    assert m["created"] and m["filters"]["text"] == [] and "options" in m


def test_report_is_self_contained_with_methods_and_limitations(sample_pack):
    text = (sample_pack.out / "report.html").read_text()
    for heading in ("Cohort and attrition", "Table 1", "Time to response", "Cox model", "Mixed model", "Methods",
                    "Limitations", "Quality indicators"):
        assert heading in text, heading
    assert "Observational data" in text and "lifelines 0." in text and "points:4" in text
    assert '<script src="http' not in text  # plotly.js is embedded: the report opens offline
    assert (sample_pack.out / "report.pdf").read_bytes()[:4] == b"%PDF"


def test_figures_in_every_format(sample_pack):
    fig_dir = sample_pack.out / "figures"
    for name in ("km", "cox_adjusted", "competing_risks", "mixed_model", "trajectories", "sequences"):
        assert (fig_dir / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (fig_dir / f"{name}.svg").read_bytes()[:400]
        assert (fig_dir / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    from pptx import Presentation

    assert len(Presentation(str(sample_pack.out / "meeting.pptx")).slides) == 1 + len(
        [p for p in fig_dir.glob("*.png")])


def _small(v, n) -> bool:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return False
    return x == int(x) and 0 < x < n


def test_min_cell_leaves_no_small_count_in_any_table(small_pack):
    n = small_pack.manifest["min_cell"]
    assert n == 11
    listed = _files(small_pack)
    assert not any(p.endswith(("lines.csv", "trajectories.csv", "swimmer.html")) for p in listed)
    seen_suppressed = False
    for path in (p for p in listed if p.endswith(".csv")):
        with open(small_pack.out / path, newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                for col, val in row.items():
                    assert "CADM-" not in val, (path, col)  # no patient ids in a shared pack
                    seen_suppressed |= val == f"<{n}"
                    if col in COUNT_COLUMNS:
                        assert not _small(val, n), (path, col, val)
                    if path.endswith("table1.csv") and col not in ("characteristic", "SMD"):
                        assert not _small(val.split(" ")[0], n), (path, col, val)
    assert seen_suppressed
    wb = openpyxl.load_workbook(small_pack.out / "tables" / "tables.xlsx")
    assert "lines" not in wb.sheetnames and "trajectories" not in wb.sheetnames


def test_min_cell_leaves_no_small_count_in_any_figure_text(small_pack):
    n = small_pack.manifest["min_cell"]
    texts = []
    for p in (small_pack.out / "figures").iterdir():
        t = p.read_text(encoding="utf-8", errors="ignore") if p.suffix in (".svg", ".html") else ""
        if p.suffix == ".html":
            t = t[t.find("Plotly.newPlot("):]  # the figure, not the embedded plotly.js library
        texts.append(t.replace("&lt;", "<").replace("\\u003c", "<").replace("&#60;", "<"))
    texts.append((small_pack.out / "report.html").read_text().split("Plotly.newPlot(", 1)[-1].replace("\\u003c", "<"))
    hits = []
    for t in texts:
        assert "CADM-" not in t
        for pattern in FIGURE_COUNTS:
            for m in pattern.finditer(t):
                hits += [g for g in m.groups() if _small(g, n)]
    assert not hits, hits
    assert any(f"<{n}" in t for t in texts)


def test_formula_cells_are_neutralised_in_the_pack(tmp_path):
    rows = "".join(f"=P{i},{w},{20 - k * (i % 5)},MMF\n" for i in range(12) for k, w in enumerate((0, 28, 56)))
    visits = tmp_path / "v.csv"
    visits.write_text("patient_id,visit_day,cdasi_activity,systemic_therapy\n" + rows)
    pack = build_pack(visits, tmp_path / "out", options=PackOptions(formats=()))
    with open(pack.out / "tables" / "lines.csv", newline="", encoding="utf-8-sig") as fh:
        ids = {r["patient_id"] for r in csv.DictReader(fh)}
    assert ids and all(i.startswith("'=") for i in ids)
    ws = openpyxl.load_workbook(pack.out / "tables" / "tables.xlsx")["lines"]
    assert all(str(c.value).startswith("'=") for c in ws["A"][1:])


def test_without_chromium_html_and_tables_still_export(tmp_path, sample_dir, monkeypatch):
    import analytics.outputs.pack as pack_mod

    monkeypatch.setattr(pack_mod, "chromium", lambda: None)
    pack = build_pack(sample_dir / "visits.csv", tmp_path / "out", sample_dir / "therapies.csv")
    listed = _files(pack)
    assert NO_CHROMIUM in pack.messages and NO_CHROMIUM in pack.manifest["messages"]
    assert "figures/km.html" in listed and "report.html" in listed and "tables/tables.xlsx" in listed
    assert not any(p.endswith((".png", ".svg", ".pdf")) for p in listed)
    assert "apt-get install chromium" in NO_CHROMIUM


def test_report_cli_exit_codes(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,visit_day,cdasi_activity\nP1,0,500\n")
    assert main(["report", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert not (tmp_path / "o").exists()
    good = tmp_path / "good.csv"
    good.write_text("patient_id,visit_day,cdasi_activity,systemic_therapy\nP1,0,20,MMF\nP1,28,10,MMF\n")
    assert main(["report", str(good), "--min-cell", "1", "--out", str(tmp_path / "o")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    json.dumps(PackOptions().__dict__)


def test_small_arms_lose_their_curves_and_table1_columns(tmp_path):
    # 30 MMF lines and 4 IVIG lines: with --min-cell 5 the IVIG curve would show steps of 1/4.
    rows = []
    for i in range(34):
        drug = "MMF" if i < 30 else "IVIG"
        rows += [f"P{i},{w},{max(0, 20 - k * (i % 6))},{drug}" for k, w in enumerate((0, 28, 56, 84))]
    visits = tmp_path / "v.csv"
    visits.write_text("patient_id,visit_day,cdasi_activity,systemic_therapy\n" + "\n".join(rows) + "\n")
    pack = build_pack(visits, tmp_path / "out", options=PackOptions(min_cell=5, formats=(), figures=("km", "cox_adjusted")))
    html = (pack.out / "figures" / "km.html").read_text()
    fig = html[html.find("Plotly.newPlot("):]
    assert '"name":"MMF' in fig and '"name":"IVIG' not in fig
    with open(pack.out / "tables" / "table1.csv", newline="", encoding="utf-8-sig") as fh:
        ivig = [r["IVIG"] for r in csv.DictReader(fh)]
    assert ivig[0] == "<5" and set(ivig[1:]) == {"suppressed"}

    # complementary suppression: the total and the other arm no longer give the small arm away
    with open(pack.out / "tables" / "attrition.csv", newline="", encoding="utf-8-sig") as fh:
        att = {r["step"].strip(): r for r in csv.DictReader(fh)}
    assert att["IVIG"]["n"] == "<5" and att["MMF"]["n"] == "suppressed"
    assert "responses" not in att["IVIG"]["note"] or att["IVIG"]["note"].startswith(("<5", "0 "))
    with open(pack.out / "tables" / "cox_adjusted.csv", newline="", encoding="utf-8-sig") as fh:
        assert {r["n_lines"] for r in csv.DictReader(fh)} <= {"suppressed"}
    forest = (pack.out / "figures" / "cox_adjusted.html").read_text()
    assert " lines, " not in forest[forest.find("Plotly.newPlot("):]


def test_complementary_suppression_hides_a_second_cell():
    from analytics.display.suppression import _complementary

    n = [30, 3, 12, 15]  # total, then three parts
    hidden = _complementary(n, [False, True, False, False], [(0, (1, 2, 3))], 5)
    assert hidden == [False, True, True, False]  # the smallest other part goes too
    hidden = _complementary(n, [False, True, True, False], [(0, (1, 2, 3))], 5)
    assert hidden == [False, True, True, False]  # two hidden parts summing to 15: nothing more to do
    # two hidden parts that add up to a small number are revealed by the shown total: hide one more
    hidden = _complementary([30, 2, 2, 26], [False, True, True, False], [(0, (1, 2, 3))], 5)
    assert hidden == [False, True, True, True]


def test_report_template_escapes_what_comes_from_the_data(tmp_path):
    """The report is a jinja2 template with autoescape: a file name, a drug name or a cell that
    holds markup is shown as text, never run as script."""
    rows = [f"P{i},{w},{max(0, 20 - k * 3)},<img src=x onerror=alert(1)>" for i in range(6)
            for k, w in enumerate((0, 28, 56))]
    rows += [f"Q{i},{w},{max(0, 20 - k * 3)},MMF" for i in range(6) for k, w in enumerate((0, 28, 56))]
    visits = tmp_path / "a<script>alert(1)<.csv"
    visits.write_text("patient_id,visit_day,cdasi_activity,systemic_therapy\n" + "\n".join(rows) + "\n")
    pack = build_pack(visits, tmp_path / "out", options=PackOptions(formats=(), figures=("km",),
                                                                     tables=("attrition", "validation_report")))
    html = (pack.out / "report.html").read_text(encoding="utf-8")
    body = html[html.index("<body>"):]
    assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)&lt;.csv" in body
    assert "<img src=x" not in body and "&lt;img src=x" in body  # the unknown drug, named in the validation report


# ------------------------------------------------------------------ tables for people
FORBIDDEN_TEXT = re.compile(r"\b(nan|NaN|inf|Infinity|None|NaT)\b|\d[eE][+-]\d|00:00:00")
FORBIDDEN_CELLS = {"inf", "-inf", "Infinity", "-Infinity", "nan", "NaN", "None", "NaT", "<NA>"}


def _visible_text(html: str) -> str:
    """What a reader of the HTML sees: the text outside <script> and <style>."""
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self):
            super().__init__()
            self.skip, self.parts = 0, []

        def handle_starttag(self, tag, attrs):
            self.skip += tag in ("script", "style")

        def handle_endtag(self, tag):
            self.skip -= tag in ("script", "style")

        def handle_data(self, data):
            if not self.skip:
                self.parts.append(data)

    parser = Text()
    parser.feed(html)
    return " ".join(parser.parts)


def test_report_shows_no_scientific_notation_and_no_inf_nan_none(sample_pack):
    from pypdf import PdfReader

    text = _visible_text((sample_pack.out / "report.html").read_text(encoding="utf-8"))
    assert "Median time to response (weeks)" in text and "< 0.001" in text  # tables for people
    assert not FORBIDDEN_TEXT.search(text), FORBIDDEN_TEXT.search(text).group(0)
    pdf = "\n".join(page.extract_text() for page in PdfReader(sample_pack.out / "report.pdf").pages)
    assert "Median time to response" in pdf
    hit = FORBIDDEN_TEXT.search(pdf)
    assert hit is None, pdf[max(0, hit.start() - 80):hit.end() + 80]


def test_every_pack_csv_has_no_inf_nan_none_and_every_column_is_in_the_dictionary(sample_pack):
    tables = sample_pack.out / "tables"
    with open(tables / "data_dictionary.csv", encoding="utf-8", newline="") as fh:
        described = {(r["table"], r["column"]): r for r in csv.DictReader(fh)}
    seen = 0
    for path in sorted(tables.glob("*.csv")):
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            for row in reader:
                bad = set(row) & FORBIDDEN_CELLS
                assert not bad, (path.name, bad, row)
        if path.stem == "data_dictionary":
            continue
        for col in header:
            entry = described.get((path.stem, col))
            assert entry and entry["description"] and entry["label"], (path.name, col)
            seen += 1
    assert seen > 100
    from analytics.registry import QUALITY_INDICATOR_KEYS

    failing = {p.stem.removeprefix("quality_").removesuffix("_failing") for p in tables.glob("quality_*_failing.csv")}
    assert failing == set(QUALITY_INDICATOR_KEYS)  # the sample allows all 11: each with its drill-down
    report = (sample_pack.out / "report.html").read_text(encoding="utf-8")
    assert "Drill-down lists (internal pack only)" in report and "quality_lost_to_follow_up_failing.csv" in report
    wb = openpyxl.load_workbook(tables / "tables.xlsx")
    assert "columns" in wb.sheetnames and wb["km_medians"]["B1"].value == "Lines"


def test_every_quality_indicator_has_a_control_chart_with_denominators_and_limits_in_the_pack(sample_pack):
    from analytics.registry import QUALITY_INDICATOR_KEYS

    fig_dir = sample_pack.out / "figures"
    for key in QUALITY_INDICATOR_KEYS:
        svg = (fig_dir / f"quality_{key}.svg").read_text(encoding="utf-8")
        assert "3-sigma limits" in svg and "centre line" in svg, key  # p-chart or XmR limits, drawn
        # every period's denominator under the axis: "1188/1277" (proportions) or "n = 1277" (visit gaps)
        assert re.search(r">\d+/\d+<", svg) or re.search(r"n = \d", svg), key


def test_one_plotly_js_per_pack_and_the_html_figures_draw_with_it(sample_pack):
    """plotly.js is in the pack twice at most: figures/plotly.min.js, which every HTML figure loads,
    and embedded once in the self-contained report; both times compressed (about 2 MB instead of
    4.8), and it inflates to the library itself. A figure opened from the folder, and the report,
    draw in Chromium."""
    import base64
    import zlib

    from plotly.offline import get_plotlyjs

    payload = re.compile(r'atob\("([A-Za-z0-9+/=]{100000,})"\)')
    marker = get_plotlyjs()[-2000:]  # the end of the library's own text: no file holds it uncompressed
    holders = {}
    for p in sample_pack.out.rglob("*"):
        if p.suffix in (".html", ".js"):
            text = p.read_text(encoding="utf-8", errors="ignore")
            assert marker not in text, p.name
            found = payload.findall(text)
            if found:
                holders[p.relative_to(sample_pack.out).as_posix()] = found
    assert sorted(holders) == ["figures/plotly.min.js", "report.html"]
    for found in holders.values():
        assert len(found) == 1
        assert zlib.decompress(base64.b64decode(found[0])).decode("utf-8") == get_plotlyjs()
    assert (sample_pack.out / "figures" / "plotly.min.js").stat().st_size < 2.1e6
    figures = sorted((sample_pack.out / "figures").glob("*.html"))
    assert len(figures) >= 20
    for page in figures:
        assert re.search(r'<script[^>]*\ssrc="plotly\.min\.js"', page.read_text(encoding="utf-8")), page.name
    assert sum(p.stat().st_size for p in sample_pack.out.rglob("*")) < 30e6

    from playwright.sync_api import sync_playwright

    from .browser import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto((sample_pack.out / "figures" / "km.html").as_uri())
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
            assert page.locator(".js-plotly-plot .scatterlayer .trace").count() > 0
            page.goto((sample_pack.out / "report.html").as_uri())
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 10",
                                   timeout=120_000)
            assert errors == []
        finally:
            browser.close()


def test_a_large_table_is_a_gzipped_csv_and_parquet_outside_the_workbook(sample_dir, tmp_path, monkeypatch):
    """Above LARGE_TABLE_ROWS rows (lowered here, so the sample's line-level tables count as large)
    a table is tables/NAME.csv.gz and NAME.parquet, both holding the whole neutralised table; the
    workbook leaves it out and its about sheet, the report and the manifest name the files."""
    import pandas as pd

    from analytics.outputs import pack as pack_module
    from analytics.pipeline import analyze, load

    monkeypatch.setattr(pack_module, "LARGE_TABLE_ROWS", 1000)
    pack = build_pack(sample_dir / "visits.csv", tmp_path / "out", sample_dir / "therapies.csv",
                      options=PackOptions(formats=()))
    tables = pack.out / "tables"
    prepared, timings = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    lines = analyze(prepared, timings=timings).derivation.lines
    assert len(lines) > 1000
    assert not (tables / "lines.csv").exists() and not (tables / "trajectories.csv").exists()
    from_csv = pd.read_csv(tables / "lines.csv.gz", keep_default_na=False, na_values=[""])
    from_parquet = pd.read_parquet(tables / "lines.parquet")
    assert len(from_csv) == len(from_parquet) == len(lines)
    assert list(from_csv.columns) == list(from_parquet.columns) == list(lines.columns)
    assert from_csv["line_id"].tolist() == from_parquet["line_id"].tolist() == lines["line_id"].tolist()
    assert (tables / "table1.csv").exists()  # small tables stay plain CSV
    wb = openpyxl.load_workbook(tables / "tables.xlsx")
    assert "lines" not in wb.sheetnames and "trajectories" not in wb.sheetnames and "table1" in wb.sheetnames
    about = " ".join(str(c.value) for row in wb["about"].iter_rows() for c in row)
    assert "tables/lines.csv.gz" in about and "over 1,000 rows" in about
    listed = {f["path"] for f in pack.manifest["files"]}
    assert {"tables/lines.csv.gz", "tables/lines.parquet", "tables/trajectories.parquet"} <= listed
    report = (pack.out / "report.html").read_text(encoding="utf-8")
    failing = [n for n, df in pack_module.collect(analyze(prepared, timings=timings, models=True)).tables.items()
               if n.endswith("_failing") and len(df) > 1000]
    for name in failing:
        assert f"{name}.csv.gz and {name}.parquet" in report


def test_large_tables_are_neutralised(tmp_path):
    import gzip

    import pandas as pd

    from analytics.outputs.pack import write_table

    df = pd.DataFrame({"patient_id": ["=HYPERLINK(1)", "P2"] * 6_000, "x": range(12_000)})
    paths = write_table(df, tmp_path, "t")
    assert [p.name for p in paths] == ["t.csv.gz", "t.parquet"]
    assert "'=HYPERLINK(1)" in gzip.decompress(paths[0].read_bytes()).decode()
    assert pd.read_parquet(paths[1])["patient_id"].iloc[0] == "'=HYPERLINK(1)"


def test_a_new_pack_replaces_the_earlier_one_whole(tmp_path):
    """A second pack in the same folder: the first one's files that the second does not make (a
    deck, a figure left out) are gone, the manifest lists exactly what is there, a file of the
    user's own stays, and no staging folder is left behind."""
    paths = write_sample(tmp_path / "src", n_patients=40, seed=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    first = build_pack(paths["visits"], out, paths["therapies"], options=PackOptions(formats=(), pptx=False))
    assert "figures/swimmer.html" in _files(first)
    (out / "meeting.pptx").write_bytes(b"an earlier deck")
    second = build_pack(paths["visits"], out, paths["therapies"], options=PackOptions(formats=(), figures=("km",)))
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk - {"manifest.json", "notes.txt"} == set(_files(second))
    assert "figures/km.html" in on_disk and "figures/swimmer.html" not in on_disk and "meeting.pptx" not in on_disk
    assert (out / "notes.txt").read_text() == "mine"
    assert not list(out.glob(".cdasi-partial-*"))


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_sigterm_while_the_figures_render_leaves_the_folder_as_it_was(tmp_path, sample_dir):
    """A service manager's stop (SIGTERM) while Chromium renders the figures: `report` exits 143
    without a traceback and without hanging (closing the browser by cancelling kaleido's task
    left Chromium running and the interpreter waiting for it at exit), its browser processes
    end, and the --out folder holds what it held before: no half pack (unhandled, SIGTERM left
    the tables and some figures without a manifest), no staging folder."""
    import signal
    import subprocess
    import sys
    import time

    _need_chromium()
    exe = Path(sys.executable).with_name("cdasi-outcomes")
    if not exe.exists():
        pytest.skip("the console script is not installed")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("an earlier pack's report")
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    proc = subprocess.Popen([str(exe), "report", str(sample_dir / "visits.csv"), "--therapies",
                             str(sample_dir / "therapies.csv"), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 180
    browser: list[int] = []
    while not browser:  # wait until Chromium runs: the figures are rendering
        assert proc.poll() is None and time.monotonic() < deadline, "the command ended before it could be stopped"
        time.sleep(0.05)
        browser = [pid for pid in descendants(proc.pid) if "chrom" in name(pid)]
    time.sleep(1.0)  # a few figures in
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)  # a hang fails here
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not list(out.glob(".cdasi-partial-*"))
    deadline = time.monotonic() + 30
    while alive := [pid for pid in browser if running(pid)]:
        assert time.monotonic() < deadline, f"browser processes still running: {alive}"
        time.sleep(0.1)

