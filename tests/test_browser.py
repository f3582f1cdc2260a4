"""The real server in a real browser: `cdasi-outcomes dashboard --port N`, every page in headless
Chromium (Debian's chromium, driven by Playwright), charts found, no exception, screenshots saved
to out/screenshots/. .ci/run installs chromium when it is missing; elsewhere the test is skipped
without one."""

from __future__ import annotations

import os

import pytest

from .browser import chromium_path, free_port, running_dashboard, visit_all
from .conftest import ROOT

pytest.importorskip("playwright")


@pytest.fixture(scope="module")
def visited(tmp_path_factory):
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium: .ci/run installs it with apt-get")
        pytest.skip("no chromium on this machine: apt-get install chromium")
    log = tmp_path_factory.mktemp("server") / "dashboard.log"
    with running_dashboard(free_port(), log) as url:
        return visit_all(url, ROOT / "out" / "screenshots")


@pytest.mark.parametrize("name,title,min_charts", [
    ("data", "Data", 0), ("cohort", "Cohort", 0), ("trajectories", "Trajectories", 2),
    ("time_to_response", "Time to response", 1), ("mixed_model", "Mixed model", 2), ("timeline", "Patient timeline", 1),
    ("quality", "Quality", 1), ("report", "Report", 0)])
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

    from dashboard.ui import _html, _image, chrome_path

    if chrome_path() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium for PNG/SVG export")
        pytest.skip("no chromium: PNG/SVG export is disabled in the dashboard, with a message")
    fig = go.Figure(go.Scatter(x=[0, 12, 24], y=[20, 14, 9]))
    fig.update_layout(width=600, height=400)
    png = _image(fig, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import struct

    assert struct.unpack(">II", png[16:24]) == (1800, 1200)  # scale 3: print resolution
    assert b"<svg" in _image(fig, "svg")[:500]
    html = _html(fig)
    # self-contained: plotly.js is embedded (about 4 MB), no script is fetched from the network
    assert len(html) > 1_000_000 and '<script src="http' not in html and "<script src='http" not in html
