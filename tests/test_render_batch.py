"""The pack renders its figures in one Chromium whose tabs draw one figure after another without
reloading plotly.js (kaleido_render_many). Each image must be the image a fresh page draws: the
PNG equal pixel for pixel, the SVG the same elements with the same attributes once plotly's random
ids are set aside (a tab that drew a legend before writes a legend's attributes in another order,
and writes x="0" y="0", the default, on its scroll bar)."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import pytest

from .browser import need_chromium


def _svg_text(data: bytes) -> str:
    """The SVG with plotly's random ids replaced: the figure's uid (in defs-, clip... ids) and
    each trace's (class "trace1a2b3c", and in a legend)."""
    text = data.decode("utf-8")
    uid = re.search(r'id="defs-([0-9a-f]+)"', text).group(1)
    text = re.sub(r"trace[0-9a-f]{6}\b", "traceUID", text.replace(uid, "UID"))
    return "\n".join(f"{el.tag} {sorted((k, v) for k, v in el.attrib.items() if not (k in ('x', 'y') and v == '0'))} "
                     f"{(el.text or '').strip()}" for el in ET.fromstring(text).iter())


@pytest.fixture(scope="module")
def figures(sample_dir):
    from analytics.outputs.pack import collect
    from analytics.pipeline import analyze, load

    prepared, timings = load(sample_dir / "visits.csv", sample_dir / "therapies.csv")
    contents = collect(analyze(prepared, timings=timings, models=True))
    names = ["km", "cox_adjusted", "trajectories", "sequences", "mixed_model_diagnostics",
             "quality_cdasi_documented", "km"]  # km twice: after other figures in the same tab
    return [(name, contents.figures[name][0]) for name in names]


def test_tabs_kept_between_figures_draw_what_a_fresh_page_draws(figures):
    need_chromium()
    from PIL import Image

    from analytics.display.provenance import kaleido_render, kaleido_render_many

    items = [(fig, {"format": "svg", "width": fig.layout.width or 900, "height": fig.layout.height or 560})
             for _, fig in figures]
    items += [(fig, {"format": "png", "width": 600, "height": 400, "scale": 1}) for _, fig in figures]
    batch = kaleido_render_many(items, tabs=1)  # one tab: every figure after the others
    assert all(isinstance(b, bytes) for b in batch), [b for b in batch if not isinstance(b, bytes)]
    for (fig, opts), got in zip(items, batch):
        fresh = kaleido_render(fig, opts)  # a page of its own
        if opts["format"] == "svg":
            assert _svg_text(got) == _svg_text(fresh)
        else:
            a, b = Image.open(io.BytesIO(got)), Image.open(io.BytesIO(fresh))
            assert a.size == b.size and a.tobytes() == b.tobytes()


def test_a_figure_that_cannot_be_rendered_is_reported_and_the_rest_are_drawn(figures):
    need_chromium()
    from analytics.display.provenance import kaleido_render_many

    fig = figures[0][1]
    got = kaleido_render_many([(fig, {"format": "svg"}), (fig, {"format": "bmp"}),
                               (fig, {"format": "png", "scale": 1})], tabs=2)
    assert isinstance(got[0], bytes) and got[0].lstrip().startswith(b"<svg")
    assert isinstance(got[1], Exception) and "bmp" in str(got[1]), got[1]  # kaleido 1.1 raises its own error
    assert isinstance(got[2], bytes) and got[2].startswith(b"\x89PNG")


def test_a_stop_before_the_browser_opens_or_after_its_loop_closed_is_harmless():
    """The stop of a batch (Ctrl-C, SIGTERM while figures render): given before the browser
    opened, the batch is told not to render; given after the batch's loop closed (the batch ended
    meanwhile), it does nothing and raises nothing, so the stop itself goes on as Ctrl-C does."""
    import asyncio

    from analytics.display.provenance import _Stop

    class Browser:
        closed = 0

        async def close(self):
            Browser.closed += 1

    early = _Stop()
    early.set()
    loop = asyncio.new_event_loop()
    assert early.opened(loop, Browser()) is False
    late = _Stop()
    assert late.opened(loop, Browser()) is True
    loop.close()
    late.set()  # no RuntimeError("Event loop is closed")
    assert Browser.closed == 0
