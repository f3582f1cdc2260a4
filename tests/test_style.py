"""One figure style that works, checked on what the figures draw: every figure of the pack (and
the page-only figures) rendered to SVG by kaleido, then measured in Chromium (tests/svg_check.py):
no shape that draws nothing (simple_white gave reference lines a width of 0), no text on another
text, no title, axis title or legend entry on the curves."""

from __future__ import annotations

from analytics.display.provenance import kaleido_render

import math
import os

import pytest

from .svg_check import invisible_shapes, measure, overlapping_texts, texts_on_plot


def _need_chromium():
    from .browser import need_chromium

    need_chromium()


@pytest.fixture(scope="module")
def page():
    _need_chromium()
    from playwright.sync_api import sync_playwright

    from .browser import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        yield browser.new_page()
        browser.close()


@pytest.fixture(scope="module", params=[None, 11], ids=["internal", "min_cell_11"])
def pack_svgs(request, sample_dir, tmp_path_factory):
    """Every figure of the pack as the pack writes it (stamped), internal and shared."""
    _need_chromium()
    from analytics.outputs.pack import PackOptions, build_pack

    out = tmp_path_factory.mktemp("style_pack")
    build_pack(sample_dir / "visits.csv", out, sample_dir / "therapies.csv",
               options=PackOptions(formats=("svg",), min_cell=request.param))
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted((out / "figures").glob("*.svg"))}


@pytest.fixture(scope="module")
def page_svgs(sample_dir):
    """The figures only the pages draw: the spaghetti in its three measures, a patient's
    timeline, and every quality indicator's run chart."""
    _need_chromium()
    import kaleido

    from analytics import analyze, load
    from analytics.display.plots import spaghetti_figure, timeline_figure

    prepared, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    a = analyze(prepared, models=True)
    d = a.derivation
    arms = list(d.options.arms)
    figs = {f"spaghetti_{m}": spaghetti_figure(d.trajectories, arms, m) for m in ("absolute", "change", "percent")}
    pid = d.lines.loc[d.lines["included"], "patient_id"].iloc[0]
    figs["timeline"] = timeline_figure(prepared, d, pid)
    q = a.models["quality"]
    figs |= {f"quality_{k}": q.figure(k) for k in q.summary["key"]}
    kaleido.start_sync_server(n=1, timeout=120, silence_warnings=True)
    try:
        return {name: kaleido_render(fig, {"format": "svg", "width": fig.layout.width or 900,
                                                       "height": fig.layout.height or 560}).decode("utf-8")
                for name, fig in figs.items()}
    finally:
        kaleido.stop_sync_server(silence_warnings=True)


def _problems(page, svgs: dict[str, str]) -> dict:
    problems = {}
    for name, svg in svgs.items():
        found = measure(page, svg)
        assert found["texts"], f"{name}: no text measured"
        got = {"invisible shapes": invisible_shapes(found), "overlapping texts": overlapping_texts(found),
               "texts on the plot": texts_on_plot(found)}
        got = {k: v for k, v in got.items() if v}
        if got:
            problems[name] = got
    return problems


def test_every_pack_figure_draws_every_shape_and_no_text_on_another(page, pack_svgs):
    assert len(pack_svgs) >= 12
    assert _problems(page, pack_svgs) == {}


def test_every_page_figure_draws_every_shape_and_no_text_on_another(page, page_svgs):
    assert len(page_svgs) >= 4 + 11
    assert _problems(page, page_svgs) == {}


def test_the_checker_finds_what_it_is_for(page):
    """The checks are not vacuous: simple_white's invisible reference line, two texts on one
    spot and a legend on the curves are each found; a stroke-less filled rect is not."""
    import kaleido
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[0, 1, 2], name="a legend entry on the curves"))
    fig.update_layout(template="simple_white", width=600, height=400, showlegend=True,
                      legend=dict(x=0.4, y=0.6))
    fig.add_hline(y=1, line=dict(color="#888", dash="dash"))
    fig.add_annotation(x=1, y=1.5, text="one label", showarrow=False)
    fig.add_annotation(x=1, y=1.5, text="another label", showarrow=False)
    fig.add_shape(type="rect", x0=1.6, x1=1.9, y0=0, y1=0.3, line=dict(width=0), fillcolor="#56B4E9",
                  opacity=0.55, layer="below")  # no stroke, but a filled rect (drawn M H V H Z): visible
    kaleido.start_sync_server(n=1, timeout=120, silence_warnings=True)
    try:
        svg = kaleido_render(fig, {"format": "svg", "width": 600, "height": 400}).decode("utf-8")
    finally:
        kaleido.stop_sync_server(silence_warnings=True)
    found = measure(page, svg)
    assert len(invisible_shapes(found)) == 1
    assert [(a, b) for a, b, _ in overlapping_texts(found)] == [("one label", "another label")]
    assert [t for t, _ in texts_on_plot(found)] == ["a legend entry on the curves"]


def test_competing_risks_has_ci_bands_and_forest_ticks_never_run_together(sample_dir):
    """The README promises CI bands on the cumulative incidence; forest tick labels ran together
    ("0.751.52 3") when every nice value in range was a tick."""
    from analytics.lines.analysis_table import analysis_table
    from analytics.pipeline import load
    from analytics import derive
    from analytics.stats.competing import fit_competing
    from analytics.stats.cox import forest_ticks

    p, _ = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    d = derive(p)
    comp = fit_competing(analysis_table(d, p), ["MMF", "IVIG", "JAKi"], alpha=0.1)
    fig = comp.figure()
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 6 and "90% CI bands" in fig.layout.title.text  # response and stopped, per arm
    mmf = comp.curves["MMF"]["response"]
    band = bands[0]
    assert max(band.y) <= 100 * mmf["upper"].max() + 1e-9 and min(band.y) >= 0
    for lo, hi, px in ((0.5, 2.5, 640), (0.05, 20, 640), (0.3, 3.3, 320), (0.9, 1.3, 640)):
        ticks = forest_ticks(lo, hi, px)
        pos = [math.log10(t / lo) / math.log10(hi / lo) * px for t in ticks]
        assert 1.0 in ticks or not (lo <= 1 <= hi)
        assert all(b - a >= 56 for a, b in zip(pos, pos[1:])), (lo, hi, ticks)
