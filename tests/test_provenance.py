"""Every exported figure and table names the analysis behind it: a caption under each figure, an
``about`` sheet and ``#`` lines for tables, and file metadata in PNG, SVG, PDF, HTML and XLSX.
Checked on what the files hold and on what they draw (the rendered PNG, the PDF's text)."""

from __future__ import annotations

from analytics.display.provenance import kaleido_render

import csv
import io
import os
import re
import xml.etree.ElementTree as ET

import openpyxl
import pandas as pd
import plotly.graph_objects as go
import pytest

from analytics.display.export import csv_bytes, xlsx_bytes
from analytics.display.provenance import (figure_bytes, figure_html, png_with_metadata, stamp_figure,
                                          svg_with_metadata)
from analytics.spec import AnalysisSpec

SPEC = AnalysisSpec.from_toml('[response]\nrule = "percent:40"\nconfirm = true\n[cohort]\nantibodies = ["tif1g"]\n'
                              'ild = "no"\n[models]\nalpha = 0.1\n')
SVG_NS = "{http://www.w3.org/2000/svg}"


def _chromium():
    from analytics.outputs.pack import chromium

    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium (make test installs it)")
        pytest.skip("no chromium on this machine")


def _figure() -> go.Figure:
    from analytics.display.style import base_layout

    fig = go.Figure(go.Scatter(x=[0, 12, 24], y=[20, 14, 9], name="MMF"))
    return base_layout(fig, "Mean CDASI", "Weeks since line start", "CDASI activity (points, 0-100)", height=400)


def test_the_stamp_names_the_rule_the_arms_the_filters_and_the_data():
    s = SPEC.stamp("cohort", "visits.csv (sha256 0123...)", "KM")
    assert s.lines == ("Response: CDASI activity fell by at least 40% from baseline (never at baseline 0), confirmed at "
                       "the next visit (rule percent:40)",
                       "Arms: MMF, IVIG, JAKi",
                       "Cohort: antibody: tif1g; ILD: no · 90% intervals",
                       "Data: visits.csv (sha256 0123...)")
    assert AnalysisSpec.from_toml(s.spec) == SPEC and s.title == "KM" and s.software.startswith("cdasi-outcomes ")
    whole = SPEC.stamp("export")
    assert whole.lines[2] == "Cohort: the whole export (cohort filters not applied)"
    assert "percent:40" in whole.lines[0]
    assert SPEC.stamp("data", "v.csv").lines == ("Data: v.csv",)
    assert AnalysisSpec().stamp().lines[2] == "Cohort: all included lines · 95% intervals"
    assert AnalysisSpec().stamp(suppressed=11).lines[-1] == "Counts below 11 suppressed"
    with pytest.raises(ValueError, match="scope"):
        SPEC.stamp("filtered")


def test_a_stamped_figure_is_a_copy_whose_plot_area_keeps_its_size():
    fig = _figure()
    s = SPEC.stamp("cohort", "v.csv")
    out = stamp_figure(fig, s)
    assert len(fig.layout.annotations) == 0, "the original is unchanged"
    (note,) = [a for a in out.layout.annotations if a.name == "provenance"]
    assert "percent:40" in note.text and "ILD: no" in note.text
    band = out.layout.height - fig.layout.height
    assert band > 4 * 15 and out.layout.margin.b - fig.layout.margin.b == band
    assert stamp_figure(fig, None) is fig
    long = stamp_figure(fig, AnalysisSpec.from_toml('[cohort]\nstart_years = [2020, 2025]\nsex = ["female"]\n'
                                                    'severity = "moderate-severe"\nline_numbers = [2, 3]\n'
                                                    'antibodies = ["mda5", "tif1g", "nxp2", "sae", "mi2"]\n').stamp())
    for line in long.layout.annotations[0].text.split("<br>"):
        assert len(line) <= (900 - 16) / 6.2, line  # wrapped to the figure's width


def test_csv_download_names_the_analysis_above_a_table_that_reads_back_unchanged():
    df = pd.DataFrame({"arm": ["MMF", "IVIG"], "median": [12.0, 16.5], "note": ["=HYPERLINK(1)", "ok"]})
    data = csv_bytes(df, SPEC.stamp("cohort", "v.csv", "km_medians"))
    text = data.decode("utf-8-sig")
    head = [line for line in text.splitlines() if line.startswith("#")]
    assert head[0] == "# km_medians" and any("percent:40" in h for h in head) and any("ILD: no" in h for h in head)
    back = pd.read_csv(io.BytesIO(data), comment="#", encoding="utf-8-sig")
    assert list(back.columns) == ["arm", "median", "note"] and back["median"].tolist() == [12.0, 16.5]
    assert back["note"][0] == "'=HYPERLINK(1)"  # still neutralised
    assert csv_bytes(df).decode("utf-8-sig").startswith("arm,median,note")  # no stamp: plain CSV


def test_xlsx_download_has_an_about_sheet_and_document_properties():
    df = pd.DataFrame({"arm": ["MMF"], "lines": [12]})
    wb = openpyxl.load_workbook(io.BytesIO(xlsx_bytes({"km_medians": df}, SPEC.stamp("cohort", "v.csv", "km_medians"))))
    assert wb.sheetnames == ["km_medians", "columns", "about"]
    assert [c.value for c in wb["km_medians"][1]] == ["Arm", "Lines"]  # for people; "columns" maps them back
    dd = [[c.value for c in r] for r in wb["columns"].iter_rows(min_row=2)]
    assert [r[:3] for r in dd] == [["km_medians", "arm", "Arm"], ["km_medians", "lines", "Lines"]]
    about = {r[0].value: r[1].value for r in wb["about"].iter_rows(min_row=2)}
    assert "percent:40" in about["Response"] and about["Cohort"].startswith("antibody: tif1g; ILD: no")
    assert AnalysisSpec.from_toml(about["analysis spec (TOML)"]) == SPEC
    assert wb.properties.title == "km_medians" and "ILD: no" in wb.properties.subject
    assert AnalysisSpec.from_toml(wb.properties.description) == SPEC
    assert openpyxl.load_workbook(io.BytesIO(xlsx_bytes({"t": df}))).sheetnames == ["t", "columns"]
    assert openpyxl.load_workbook(io.BytesIO(xlsx_bytes({"t": df}, people=False))).sheetnames == ["t"]


def test_html_figure_holds_the_spec_in_its_head():
    page = figure_html(_figure(), SPEC.stamp("cohort", "v.csv", "Mean CDASI"))
    head = page[:page.index("</head>")]
    assert "<title>Mean CDASI</title>" in head and 'name="description"' in head and "ILD: no" in head
    spec = re.search(r'<script type="application/toml" id="cdasi-outcomes-spec">(.*?)</script>', head, re.S).group(1)
    assert AnalysisSpec.from_toml(spec) == SPEC
    assert "percent:40" in page[page.index("</head>"):]  # the caption, inside the figure


def test_svg_metadata_is_valid_xml_and_round_trips_the_spec():
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="1" height="1"/></svg>'
    out = svg_with_metadata(svg, SPEC.stamp("cohort", "v & w.csv", "KM <all>"))
    root = ET.fromstring(out)
    assert root.find(f"{SVG_NS}title").text == "KM <all>" and "v & w.csv" in root.find(f"{SVG_NS}desc").text
    meta = root.find(f"{SVG_NS}metadata")[0]
    assert AnalysisSpec.from_toml(meta.text) == SPEC
    with pytest.raises(ValueError, match="not an SVG"):
        svg_with_metadata("<html/>", SPEC.stamp())


def _ink_rows(png: bytes):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("L"))


def _caption_apart(render, fig: go.Figure, stamp) -> tuple[int, int]:
    """Render ``fig`` stamped, and stamped with the caption's text emptied (same layout): the
    rows where they differ are the caption's. Returns (last row of the figure's own ink, first
    row of the caption), at scale 1, after checking that nothing above the caption differs."""
    import numpy as np

    stamped = stamp_figure(fig, stamp)
    blank = go.Figure(stamped)
    blank.update_annotations(selector=dict(name="provenance"), text=" ")
    opts = {"format": "png", "width": stamped.layout.width, "height": stamped.layout.height, "scale": 1}
    with_caption, without = _ink_rows(render(stamped, opts)), _ink_rows(render(blank, opts))
    differ = np.nonzero((with_caption != without).any(axis=1))[0]
    ink = np.nonzero((without < 200).any(axis=1))[0]
    assert len(differ), "the caption draws nothing"
    return int(ink.max()), int(differ.min())


def test_rendered_exports_draw_the_caption_apart_from_the_figure():
    """The PNG as pixels: the caption's rows lie below every row the figure itself draws on;
    the SVG's caption is text, the PDF's too (extracted), and each file's metadata holds the spec."""
    _chromium()
    import kaleido
    from PIL import Image
    from pypdf import PdfReader

    stamp = SPEC.stamp("cohort", "visits.csv (sha256 0123...)", "Mean CDASI")
    fig = _figure()
    kaleido.start_sync_server(n=1, timeout=120, silence_warnings=True)
    try:
        render = kaleido_render
        last_ink, caption = _caption_apart(render, fig, stamp)
        png = figure_bytes(fig, "png", stamp, render)
        svg = figure_bytes(fig, "svg", stamp, render)
        pdf = figure_bytes(fig, "pdf", stamp, render)
    finally:
        kaleido.stop_sync_server(silence_warnings=True)
    assert caption > last_ink + 3, (last_ink, caption)
    img = Image.open(io.BytesIO(png))
    # 2x: 1,800 px for a 900 px figure, recorded as 200 dpi, so that it prints 9 inches wide like the PDF
    assert img.size == (1800, 2 * stamp_figure(fig, stamp).layout.height)
    assert AnalysisSpec.from_toml(img.text["cdasi-outcomes:spec"]) == SPEC and round(img.info["dpi"][0]) == 200
    texts = " ".join("".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG_NS}text"))
    assert "rule percent:40" in texts and "antibody: tif1g; ILD: no" in texts
    reader = PdfReader(io.BytesIO(pdf))
    drawn = "".join(reader.pages[0].extract_text().split())  # pypdf's spacing varies by version
    assert "percent:40" in drawn and "antibody:tif1g;ILD:no" in drawn
    assert reader.metadata.title == "Mean CDASI" and AnalysisSpec.from_toml(reader.metadata["/Keywords"]) == SPEC


def test_every_registry_figure_keeps_its_caption_clear_of_what_it_draws(sample_dir):
    """Each figure of every analysis, stamped and rendered: the caption starts below the
    figure's last drawn row (legends, risk tables and axis titles included)."""
    _chromium()
    import kaleido

    from analytics import analyze, load
    from analytics.registry import entries, figures_of

    prepared, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    analysis = analyze(prepared, spec=SPEC)
    stamp = SPEC.stamp("cohort", "visits.csv (sha256 0123...)", "x", suppressed=11)
    seen = {}
    kaleido.start_sync_server(n=1, timeout=120, silence_warnings=True)
    try:
        render = kaleido_render
        for e in entries():
            if e.name in analysis.models:
                for name, fs in figures_of(e, analysis.models[e.name]).items():
                    seen[name] = _caption_apart(render, fs.make(None, ()), stamp)
    finally:
        kaleido.stop_sync_server(silence_warnings=True)
    assert len(seen) >= 12
    close = {name: rows for name, rows in seen.items() if rows[1] <= rows[0] + 1}
    assert close == {}, "captions touching their figure (last figure row, first caption row)"


def test_png_metadata_without_a_stamp_still_sets_the_print_resolution():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (30, 20), "white").save(buf, "PNG")
    img = Image.open(io.BytesIO(png_with_metadata(buf.getvalue(), None)))
    assert img.size == (30, 20) and round(img.info["dpi"][0]) == 200 and not img.text


@pytest.fixture(scope="module")
def stamped_pack(sample_dir, tmp_path_factory):
    _chromium()
    from analytics.outputs.pack import PackOptions, build_pack

    spec = AnalysisSpec.from_toml(SPEC.to_toml() + '[pack]\nmin_cell = 5\nfigures = ["km", "quality_cdasi_documented"]\n'
                                  'tables = ["km_medians", "quality_indicators"]\n')
    return build_pack(sample_dir / "visits.csv", tmp_path_factory.mktemp("stamped"), sample_dir / "therapies.csv",
                      options=PackOptions(formats=("svg", "png")), spec=spec)


def test_every_pack_figure_carries_its_analysis_and_the_quality_figure_says_whole_export(stamped_pack):
    from PIL import Image

    out = stamped_pack.out
    want = AnalysisSpec.from_dict(stamped_pack.manifest["spec"])
    for name in stamped_pack.manifest["contents"]["figures"]:
        root = ET.parse(out / "figures" / f"{name}.svg").getroot()
        texts = " ".join("".join(t.itertext()) for t in root.iter(f"{SVG_NS}text"))
        assert "rule percent:40" in texts and "Counts below 5 suppressed" in texts and "visits.csv (sha256" in texts
        if name.startswith("quality"):
            assert "whole export (cohort filters not applied)" in texts and "tif1g" not in texts
        else:
            assert "antibody: tif1g; ILD: no · 90% intervals" in texts
        assert AnalysisSpec.from_toml(root.find(f"{SVG_NS}metadata")[0].text) == want
        assert AnalysisSpec.from_toml(Image.open(out / "figures" / f"{name}.png").text["cdasi-outcomes:spec"]) == want
        page = (out / "figures" / f"{name}.html").read_text(encoding="utf-8")
        assert 'id="cdasi-outcomes-spec"' in page[:page.index("</head>")]


def test_pack_tables_stay_plain_csv_and_the_workbook_says_which_sheets_are_whole_export(stamped_pack):
    out = stamped_pack.out
    with open(out / "tables" / "km_medians.csv", encoding="utf-8-sig", newline="") as fh:
        assert next(csv.reader(fh))[0] == "arm"  # machine-readable: the manifest beside it holds the spec
    wb = openpyxl.load_workbook(out / "tables" / "tables.xlsx")
    assert wb.sheetnames == ["km_medians", "quality_indicators", "columns", "about"]
    about = {r[0].value: r[1].value for r in wb["about"].iter_rows(min_row=2)}
    assert about["Cohort"].startswith("antibody: tif1g; ILD: no") and "quality_indicators" in about["whole export"]
    assert AnalysisSpec.from_toml(wb.properties.description) == AnalysisSpec.from_dict(stamped_pack.manifest["spec"])
