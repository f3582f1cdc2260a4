"""Journal presets (analytics.display.journal): the sizes by hand, the files as a journal's
checker reads them (pixels, dpi, TIFF compression, the PDF page in mm), every pack figure
rendered at single and double column and measured in Chromium, and the export in the dashboard,
in a real browser."""

from __future__ import annotations

import io
import os

import pytest

from analytics import OptionError
from analytics.display.journal import COLUMN_MM, Journal, axis_titles, journal_bytes, journal_figure

from .svg_check import invisible_shapes, measure, overlapping_texts, texts_on_plot, texts_outside


def test_sizes_by_hand():
    # 14 px base font x 72 x 85 mm / (8 pt x 25.4) = 421.65 px; 85 mm at 300 dpi = 1003.9 px
    j = Journal("single", 300, "png", 8)
    assert (j.width_mm, j.layout_width, j.pixel_width) == (85.0, 422, 1004)
    assert Journal("double", 600, "tiff", 8).layout_width == 863 and Journal("double", 600).pixel_width == 4110
    assert Journal(120.0, font_pt=10).layout_width == 476
    assert COLUMN_MM == {"single": 85.0, "double": 174.0}


@pytest.mark.parametrize("kwargs,message", [
    ({"width": "triple"}, "choose single, double or a width in mm"),
    ({"width": 20}, "from 40 to 250 mm"),
    ({"dpi": 150}, "choose 300 or 600"),
    ({"fmt": "jpg"}, "choose png, tiff, pdf"),
    ({"font_pt": 20}, "from 5 to 14 pt"),
    ({"width": "single", "font_pt": 9.5}, "choose a smaller font (at most 8.9 pt) or a wider figure"),
])
def test_bad_choices_say_what_to_choose(kwargs, message):
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Journal(**kwargs)


def test_title_and_axis_labels_are_the_authors():
    import plotly.graph_objects as go

    from analytics.display.style import base_layout

    fig = base_layout(go.Figure(go.Scatter(x=[0, 1], y=[1, 2])), "A title<br><sup>a subtitle</sup>", "Weeks", "CDASI")
    assert axis_titles(fig) == ("Weeks", "CDASI")
    plain = journal_figure(fig, Journal("double"))
    assert plain.layout.title.text == "" and plain.layout.width == 863 and axis_titles(plain) == ("Weeks", "CDASI")
    assert plain.layout.margin.t < fig.layout.margin.t  # the title's room is given back
    mine = journal_figure(fig, Journal("double", title="Figure 2", x_title="Time (weeks)", y_title="Score (points)"))
    assert mine.layout.title.text == "Figure 2" and axis_titles(mine) == ("Time (weeks)", "Score (points)")
    assert fig.layout.title.text.startswith("A title")  # the original is left alone


def _need_chromium():
    from analytics.outputs.pack import chromium

    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium (make test installs it)")
        pytest.skip("no chromium on this machine")


@pytest.fixture(scope="module")
def analysis(sample_dir):
    from analytics import analyze, load

    prepared, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    return analyze(prepared, models=True)


@pytest.fixture(scope="module")
def kaleido_session():
    _need_chromium()
    import kaleido

    kaleido.start_sync_server(n=1, timeout=120, silence_warnings=True)
    yield
    kaleido.stop_sync_server(silence_warnings=True)


def test_files_have_the_size_and_resolution_a_journal_checks(analysis, kaleido_session):
    from PIL import Image
    from pypdf import PdfReader

    from analytics.display.provenance import kaleido_render
    from analytics.spec import AnalysisSpec

    km = analysis.models["km"]
    stamp = AnalysisSpec().stamp("cohort", "visits.csv", "km")
    png = Image.open(io.BytesIO(journal_bytes(km.figure, Journal("single", 300, "png", 8), kaleido_render, stamp)))
    assert png.size[0] == 1004 and round(png.info["dpi"][0]) == 300 and "cdasi-outcomes:spec" in png.info
    tiff = Image.open(io.BytesIO(journal_bytes(km.figure, Journal("double", 600, "tiff", 8), kaleido_render, stamp)))
    assert tiff.format == "TIFF" and tiff.size[0] == 4110 and tiff.info["dpi"] == (600, 600)
    assert tiff.info["compression"] == "tiff_lzw" and tiff.mode == "RGB"
    assert "points:4" in tiff.tag_v2[270]  # ImageDescription: the analysis
    pdf = PdfReader(io.BytesIO(journal_bytes(km.figure, Journal("double", 300, "pdf", 8), kaleido_render, stamp)))
    page = pdf.pages[0]
    assert abs(float(page.mediabox.width) / 72 * 25.4 - 174) < 0.1 and "points:4" in pdf.metadata["/Subject"]


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module (Playwright's sync API allows one running instance)."""
    _need_chromium()
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    from .browser import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.mark.parametrize("preset", [Journal("single", font_pt=8), Journal("double", font_pt=8),
                                    Journal("single", font_pt=6)], ids=["single_8pt", "double_8pt", "single_6pt"])
def test_every_pack_figure_at_journal_widths_draws_cleanly_or_says_why_not(analysis, kaleido_session, browser, preset):
    """Each figure is built at the column's width and measured in Chromium: no invisible shape,
    no text on another or on the curves, nothing cut at an edge; a figure that cannot be that
    narrow (a forest plot's labels and HR column) refuses with the width it needs."""
    from analytics.display.provenance import kaleido_render
    from analytics.registry import entries, figures_of

    browser_page = browser.new_page()
    problems, refused, drawn = {}, {}, 0
    for e in entries():
        if e.name not in analysis.models:
            continue
        for name, spec in figures_of(e, analysis.models[e.name]).items():
            try:
                fig = journal_figure(lambda spec=spec: spec.make(None, ()), preset)
            except OptionError as exc:
                refused[name] = str(exc)
                continue
            svg = kaleido_render(fig, {"format": "svg", "width": fig.layout.width,
                                       "height": fig.layout.height}).decode("utf-8")
            found = measure(browser_page, svg)
            got = {"invisible shapes": invisible_shapes(found), "overlapping texts": overlapping_texts(found),
                   "texts on the plot": texts_on_plot(found), "texts cut at an edge": texts_outside(found)}
            got = {k: v for k, v in got.items() if v}
            if got:
                problems[name] = got
            drawn += 1
    assert problems == {}
    assert all("needs at least" in m and "mm at" in m for m in refused.values()), refused
    if preset.width == "double":
        assert refused == {} and drawn >= 20
    else:
        # Sankeys (a node label beside each column), forest plots (labels and an HR column) and the
        # scheme's ladder (a stair per step, its name on it) need a double column
        assert set(refused) <= {"sequences", "cox_unadjusted", "cox_adjusted", "scheme_paths", "scheme_ladder",
                                "scheme_refractory_cox"} and drawn >= 18, refused


def test_journal_export_in_the_dashboard_in_a_real_browser(tmp_path, browser):
    """Open a figure's Journal export on Time to response, choose a double column TIFF at 600 dpi
    with a title, download it: the file is 174 mm at 600 dpi."""
    from PIL import Image

    from .browser import free_port, running_dashboard, wait_until_idle

    with running_dashboard(free_port(), tmp_path / "dashboard.log") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        try:
            page.goto(url + "/time_to_response", wait_until="domcontentloaded")
            wait_until_idle(page)
            main = page.locator('[data-testid="stMain"]')
            main.locator('[data-testid="stPopover"] button').filter(has_text="Journal").first.click()
            pop = page.locator('[data-testid="stPopoverBody"]').first
            pop.get_by_text("double column (174 mm)").click()
            wait_until_idle(page)
            pop = page.locator('[data-testid="stPopoverBody"]').first
            pop.get_by_text("600 dpi").click()
            wait_until_idle(page)
            pop = page.locator('[data-testid="stPopoverBody"]').first
            pop.get_by_text("TIFF", exact=True).click()
            wait_until_idle(page)
            pop = page.locator('[data-testid="stPopoverBody"]').first
            assert "174 mm, 8 pt, 600 dpi TIFF: 4110 px wide" in pop.inner_text()
            with page.expect_download(timeout=120_000) as got:
                pop.locator('[data-testid="stDownloadButton"] button').filter(has_text="Download TIFF").click()
            assert got.value.suggested_filename == "time_to_response_km_174mm_600dpi.tiff"
            img = Image.open(got.value.path())
            assert img.format == "TIFF" and img.size[0] == 4110 and img.info["dpi"] == (600, 600)
        finally:
            page.close()


def test_a_figure_that_does_not_fit_says_so_before_it_is_built_again(analysis):
    from analytics.display.journal import check_fits

    forest = analysis.models["cox_adjusted"].figure()  # built at the design width
    with pytest.raises(OptionError, match=r"needs at least 142 mm at 8 pt: choose a wider column \(double is 174 mm\)"):
        check_fits(forest, Journal("single", font_pt=8))
    check_fits(forest, Journal("double", font_pt=8))
    with pytest.raises(OptionError, match="needs at least"):
        journal_figure(analysis.models["cox_adjusted"].figure, Journal("single", font_pt=8))
