"""The real server in a real browser: `cdasi-outcomes dashboard --port N`, every page in headless
Chromium (Debian's chromium, driven by Playwright), charts found, no exception, screenshots saved
to out/screenshots/. .ci/run installs chromium when it is missing; elsewhere the test is skipped
without one."""

from __future__ import annotations

import os

import pytest

from .browser import chromium_path, free_port, need_chromium, running_dashboard, visit_all
from .conftest import ROOT

pytest.importorskip("playwright")


@pytest.fixture(scope="module")
def visited(tmp_path_factory):
    need_chromium()
    log = tmp_path_factory.mktemp("server") / "dashboard.log"
    with running_dashboard(free_port(), log) as url:
        return visit_all(url, ROOT / "out" / "screenshots")


@pytest.mark.parametrize("name,title,min_charts", [
    ("data", "Data", 0), ("cohort", "Cohort", 0), ("trajectories", "Trajectories", 2),
    ("time_to_response", "Time to response", 1), ("mixed_model", "Mixed model", 2), ("timeline", "Patient timeline", 1),
    ("scheme", "Stepwise scheme", 3), ("quality", "Quality", 1), ("report", "Report", 0)])
def test_every_page_in_a_real_browser(visited, name, title, min_charts):
    got = visited[name]
    assert got["title"] == title
    assert got["exceptions"] == 0 and not got["errors"], got
    assert got["charts"] >= min_charts, got
    assert got["screenshot"].stat().st_size > 10_000
    assert not got["page_errors"], got["page_errors"]


def test_server_binds_to_localhost_only():
    from analytics.cli import build_parser, dashboard_command

    args = build_parser().parse_args(["dashboard", "--port", "9999"])
    cmd = dashboard_command(args)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    config = (ROOT / ".streamlit" / "config.toml").read_text()
    assert 'address = "127.0.0.1"' in config and "gatherUsageStats = false" in config and "maxUploadSize" in config


def test_figure_downloads_render_png_svg_and_html():
    import plotly.graph_objects as go

    from analytics.display.provenance import PNG_SCALE, figure_html
    from analytics.spec import AnalysisSpec
    from dashboard.ui import _image, chrome_path

    if chrome_path() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium for PNG/SVG export")
        pytest.skip("no chromium: PNG/SVG export is disabled in the dashboard, with a message")
    fig = go.Figure(go.Scatter(x=[0, 12, 24], y=[20, 14, 9]))
    fig.update_layout(width=600, height=400)
    stamp = AnalysisSpec().stamp("cohort", "visits.csv", "test")
    png = _image(fig, "png", stamp)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import struct

    width, height = struct.unpack(">II", png[16:24])
    assert width == 600 * PNG_SCALE and height > 400 * PNG_SCALE  # taller by the caption
    assert struct.unpack(">II", _image(fig, "png", None)[16:24]) == (600 * PNG_SCALE, 400 * PNG_SCALE)
    assert b"<svg" in _image(fig, "svg", stamp)[:500]
    html = figure_html(fig, stamp)
    # self-contained: plotly.js is embedded (about 4 MB), no script is fetched from the network
    assert len(html) > 1_000_000 and '<script src="http' not in html and "<script src='http" not in html


def test_uploads_and_an_opened_spec_in_a_real_browser(tmp_path):
    """Transitions a user makes, in Chromium:
    - a valid upload: the sidebar names the new dataset at once (it used to lag one click);
    - a rejected upload: only its own report, with message and fix as the first columns, and the
      previous dataset stays in use;
    - an upload with identifiers (Spanish headers): the guard's refusals, values masked everywhere;
    - an analysis spec opened in the sidebar: the rule and filters apply on Time to response and
      in the sidebar."""
    from playwright.sync_api import sync_playwright

    from .browser import CHROMIUM_ARGS, download, wait_until_idle
    from .test_dashboard import TINY

    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium: .ci/run installs it with apt-get")
        pytest.skip("no chromium on this machine: apt-get install chromium")
    (tmp_path / "tiny.csv").write_bytes(TINY)
    (tmp_path / "bad.csv").write_text("patient_id,visit_day,cdasi_activity\nP1,0,250\n")
    (tmp_path / "nhc.csv").write_text("NHC,fecha_visita,cdasi_activity,apellidos\n4512873,2021-03-04,20,García López\n")
    (tmp_path / "analysis.toml").write_text('[response]\nrule = "percent:40"\n[cohort]\nild = "no"\n')
    with running_dashboard(free_port(), tmp_path / "dashboard.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="domcontentloaded")
            wait_until_idle(page)
            sidebar = page.locator('[data-testid="stSidebar"]')
            main = page.locator('[data-testid="stMain"]')
            main.get_by_text("Upload an export").click()
            wait_until_idle(page)
            main.locator('input[type="file"]').first.set_input_files(str(tmp_path / "tiny.csv"))
            page.wait_for_timeout(1000)
            main.get_by_role("button", name="Load and validate").click()
            wait_until_idle(page)
            assert "Dataset: tiny.csv" in sidebar.inner_text()
            assert "Loaded tiny.csv" in main.inner_text()

            main.locator('input[type="file"]').first.set_input_files(str(tmp_path / "bad.csv"))
            page.wait_for_timeout(1000)
            main.get_by_role("button", name="Load and validate").click()
            wait_until_idle(page)
            text = main.inner_text()
            assert "bad.csv has 1 error(s) and was not loaded" in text
            assert "Validation report of bad.csv" in text and "De-identification guard" not in text
            headers = main.locator('[data-testid="stDataFrame"]').first.locator('[role="columnheader"]')
            assert headers.all_inner_texts()[:2] == ["Finding", "How to fix it"]
            assert "Dataset: tiny.csv" in sidebar.inner_text()

            # a Spanish export with identifiers: the guard's refusals, each with column, masked example and fix
            main.locator('input[type="file"]').first.set_input_files(str(tmp_path / "nhc.csv"))
            page.wait_for_timeout(1000)
            main.get_by_role("button", name="Load and validate").click()
            wait_until_idle(page)
            text = main.inner_text()
            assert "Refused by the de-identification guard" in text, text[-3000:]
            assert "column NHC" in text and "column apellidos" in text and "G***** L****" in text
            assert "García" not in text and "4512873" not in text  # never repeated, even in the report table
            assert "Dataset: tiny.csv" in sidebar.inner_text()

            sidebar.get_by_text("Analysis spec").click()
            sidebar.locator('input[type="file"]').set_input_files(str(tmp_path / "analysis.toml"))
            wait_until_idle(page)
            page.wait_for_timeout(1000)
            assert "Opened analysis.toml" in sidebar.inner_text()
            sidebar.get_by_role("link", name="Time to response").click()  # same session (no reload)
            wait_until_idle(page)
            page.wait_for_timeout(1000)
            assert "percent:40" in sidebar.inner_text() and "ILD: no" in sidebar.inner_text()
            assert "fell by at least 40%" in main.inner_text()

            # the downloads of this page carry the analysis now in force (the spec just opened)
            buttons = main.locator('[data-testid="stDownloadButton"] button')
            head = [line for line in open(download(page, buttons.filter(has_text="CSV").first),
                                          encoding="utf-8-sig").read().splitlines() if line.startswith("#")]
            assert any("rule percent:40" in h for h in head) and any("ILD: no" in h for h in head), head
            assert any("Data: tiny.csv" in h for h in head), head
            # a download reruns the page, which registers its deferred files again: clicking the next
            # button before that rerun ends asks for a file Streamlit has dropped ("Deferred file ...
            # not found"), and no download comes; download() waits until the page is idle (and
            # clicks again if no file comes), after a second for the rerun to begin
            page.wait_for_timeout(1000)
            svg = open(download(page, buttons.filter(has_text="SVG").first), encoding="utf-8").read()
            assert "rule percent:40" in svg and "ILD: no" in svg and "<metadata>" in svg
        finally:
            browser.close()


def test_a_link_with_a_rule_and_filters_in_a_real_browser(tmp_path):
    """Open a copied link: the rule and the filters apply on Time to response and in the sidebar,
    and the address bar keeps them (so the link can be copied again)."""
    from playwright.sync_api import sync_playwright

    from .browser import CHROMIUM_ARGS, wait_until_idle

    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium: .ci/run installs it with apt-get")
        pytest.skip("no chromium on this machine: apt-get install chromium")
    with running_dashboard(free_port(), tmp_path / "dashboard.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/time_to_response?response.rule=percent:40&response.confirm=true"
                      "&cohort.antibodies=tif1g&cohort.severity=moderate-severe", wait_until="domcontentloaded")
            wait_until_idle(page)
            page.wait_for_selector(".js-plotly-plot", timeout=120_000)
            sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
            main = page.locator('[data-testid="stMain"]').inner_text()
            assert "percent:40" in sidebar and "antibody: tif1g" in sidebar and "baseline moderate-severe" in sidebar
            assert "fell by at least 40%" in main and "confirmed at the next follow-up visit" in main
            assert "response.rule=percent" in page.url and "cohort.antibodies=tif1g" in page.url
            page.screenshot(path=str(tmp_path / "link.png"))
        finally:
            browser.close()


def test_time_to_response_tabs_draw_when_clicked(tmp_path):
    """The page fits only the open tab's analyses: in Chromium the Kaplan-Meier tab draws first;
    a click on "Cox model" reruns the page and both forest plots and their tables appear."""
    from playwright.sync_api import sync_playwright

    from .browser import CHROMIUM_ARGS, wait_until_idle

    need_chromium()
    with running_dashboard(free_port(), tmp_path / "dashboard.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/time_to_response", wait_until="domcontentloaded")
            wait_until_idle(page)
            page.wait_for_selector(".js-plotly-plot", timeout=120_000)
            assert "Log-rank" in page.locator('[data-testid="stMain"]').inner_text()
            page.get_by_role("tab", name="Cox model").click()
            page.wait_for_selector("text=Proportional hazards", timeout=120_000)
            wait_until_idle(page)
            panel = page.locator('[role="tabpanel"]:visible')
            page.wait_for_function("() => document.querySelectorAll('[role=tabpanel] .js-plotly-plot').length >= 2",
                                   timeout=120_000)
            text = panel.inner_text()
            assert "Unadjusted model" in text and "Adjusted model" in text
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(tmp_path / "cox.png"))
        finally:
            browser.close()
