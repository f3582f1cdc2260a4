"""What an exported figure or table says about where it came from.

A :class:`Stamp` is the analysis behind an export in words (the response rule, the arms, the
cohort filters, the interval level, the data file) and in full (the analysis spec as TOML).
Every export carries it twice:

- **visibly**: a caption under each figure (:func:`stamp_figure`), an ``about`` sheet in a
  workbook, ``#`` comment lines above a downloaded CSV;
- **as file metadata**: PNG text chunks (``Title``, ``Description``, ``Software``,
  ``cdasi-outcomes:spec``; and 300 dpi), SVG ``<title>``/``<desc>``/``<metadata>``, PDF document
  information, HTML ``<title>``/``<meta name="description">`` and the spec in a
  ``<script type="application/toml">``, workbook document properties.

The stamp is built by the caller (:meth:`analytics.spec.AnalysisSpec.stamp`), so this module
knows nothing of rules or filters: it only writes text where each format keeps it.
"""

from __future__ import annotations

import html
import io
import textwrap
from dataclasses import dataclass, field
from typing import Mapping

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

__all__ = ["PNG_DPI", "PNG_SCALE", "Stamp", "stamp_figure", "figure_bytes", "render_options", "figure_html",
           "png_with_metadata", "svg_with_metadata", "pdf_with_metadata", "html_with_metadata", "with_metadata",
           "csv_comment", "CAPTION_FONT"]

CAPTION_FONT = dict(size=11, color="#444444")
_CHAR_PX = 6.2  # the mean advance of an 11 px Arial character, for wrapping the caption to the figure's width
_LINE_PX = 15
_GAP = 14


@dataclass(frozen=True)
class Stamp:
    """``lines``: the analysis in words, one line each (shown under figures, above CSVs);
    ``title``: what the file is; ``spec``: the full analysis spec as TOML (file metadata only);
    ``software``: the tool and version."""

    lines: tuple[str, ...]
    title: str = ""
    spec: str = ""
    software: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def description(self) -> str:
        return "\n".join(self.lines)

    def titled(self, title: str) -> "Stamp":
        return Stamp(self.lines, title, self.spec, self.software, self.extra)

    def as_rows(self) -> list[tuple[str, str]]:
        """(item, value) rows for a workbook's ``about`` sheet."""
        rows = [("title", self.title)] if self.title else []
        for line in self.lines:
            key, sep, value = line.partition(": ")
            rows.append((key, value) if sep else ("", line))
        rows += [(k, v) for k, v in self.extra.items()]
        if self.software:
            rows.append(("software", self.software))
        if self.spec:
            rows.append(("analysis spec (TOML)", self.spec))
        return rows


def _margin(fig: go.Figure, side: str, default: int) -> int:
    value = getattr(fig.layout.margin, side)
    if value is None and fig.layout.template is not None and fig.layout.template.layout.margin is not None:
        value = getattr(fig.layout.template.layout.margin, side)
    return int(value if value is not None else default)


def stamp_figure(fig: go.Figure, stamp: Stamp | None) -> go.Figure:
    """A copy of ``fig`` with the stamp's lines as a caption in a band added below it (the plot
    area keeps its size; the figure grows by the band). ``None``: ``fig`` unchanged."""
    if stamp is None or not stamp.lines:
        return fig
    import plotly.graph_objects as go

    out = go.Figure(fig)
    width = out.layout.width or 900
    height = out.layout.height or 560
    left, bottom = _margin(out, "l", 80), _margin(out, "b", 80)
    chars = max(40, int((width - 16) / _CHAR_PX))
    wrapped = [part for line in stamp.lines for part in textwrap.wrap(line, chars) or [""]]
    # _GAP: room for what plotly's automargin adds below the old margin (an axis title a few px lower)
    band = _LINE_PX * len(wrapped) + _GAP + 8
    out.add_annotation(text="<br>".join(html.escape(w) for w in wrapped), xref="paper", yref="paper", x=0, y=0,
                       xanchor="left", yanchor="top", xshift=8 - left, yshift=-bottom - _GAP, showarrow=False,
                       align="left", font=CAPTION_FONT, name="provenance")
    out.update_layout(height=height + band, margin_b=bottom + band)
    legends = [k for k in out.layout if k.startswith("legend")]
    for key in legends:  # a legend placed in the container's coordinates keeps its place above the band
        legend = out.layout[key]
        if legend.yref == "container" and legend.y is not None:
            out.layout[key].y = (legend.y * height + band) / (height + band)
    if out.layout.width is None:
        out.update_layout(width=width)
    return out


# Figures are drawn 900 px wide; PNG downloads and the pack's PNGs render them at PNG_SCALE (1,800 px,
# enough for a slide or a document) and record PNG_DPI, so they print at the same 9 inches (229 mm) as
# the vector PDF and SVG. Print at 300 or 600 dpi for a column width comes from the Journal export.
PNG_SCALE = 2
PNG_DPI = 100 * PNG_SCALE


def render_options(fig: "go.Figure", fmt: str) -> dict:
    """kaleido's options for a figure export in ``fmt``: the figure's own size, PNG at PNG_SCALE."""
    return {"format": fmt, "width": fig.layout.width or 900, "height": fig.layout.height or 560,
            "scale": PNG_SCALE if fmt == "png" else 1}


def png_with_metadata(data: bytes, stamp: Stamp | None, dpi: int = PNG_DPI) -> bytes:
    """The PNG with text chunks (iTXt, UTF-8) for the title, the description, the software and
    the spec, and a pHYs chunk for ``dpi`` (a figure export: PNG_DPI, i.e. 100 px of the figure per inch)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if stamp is not None:
        for key, value in (("Title", stamp.title), ("Description", stamp.description),
                           ("Software", stamp.software), ("cdasi-outcomes:spec", stamp.spec)):
            if value:
                info.add_itxt(key, value)
    with Image.open(io.BytesIO(data)) as img:
        if img.mode == "RGBA" and img.getchannel("A").getextrema() == (255, 255):
            img = img.convert("RGB")  # fully opaque (plotly's white paper): the alpha channel holds nothing
        buf = io.BytesIO()
        img.save(buf, "PNG", pnginfo=info, dpi=(dpi, dpi), compress_level=6)
    return buf.getvalue()


def _xml(text: str) -> str:
    return html.escape(text, quote=False)


def svg_with_metadata(data: bytes | str, stamp: Stamp | None) -> bytes:
    """The SVG with ``<title>``, ``<desc>`` and a ``<metadata>`` element holding the spec, as the
    first children of the root element (where SVG readers and screen readers look for them)."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if stamp is None:
        return text.encode("utf-8")
    start = text.find("<svg")
    end = text.find(">", start)
    if start < 0 or end < 0:
        raise ValueError("not an SVG document: no <svg> element")
    meta = (f"<title>{_xml(stamp.title)}</title><desc>{_xml(stamp.description)}</desc>"
            f'<metadata><cdasi-outcomes xmlns="urn:cdasi-outcomes:analysis" software="{html.escape(stamp.software)}">'
            f"{_xml(stamp.spec)}</cdasi-outcomes></metadata>")
    return (text[:end + 1] + meta + text[end + 1:]).encode("utf-8")


def pdf_with_metadata(data: bytes, stamp: Stamp | None) -> bytes:
    """The PDF with its document information set: Title, Subject (the description), Keywords
    (the spec), Creator (the software)."""
    if stamp is None:
        return data
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.add_metadata({"/Title": stamp.title, "/Subject": stamp.description, "/Keywords": stamp.spec,
                         "/Creator": stamp.software, "/Producer": stamp.software})
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def html_with_metadata(page: str, stamp: Stamp | None) -> str:
    """A full HTML page with ``<title>``, ``<meta name="description">`` and the spec as a
    ``<script type="application/toml" id="cdasi-outcomes-spec">`` in its head."""
    if stamp is None:
        return page
    spec = stamp.spec.replace("</", "<\\/")  # no "</script>" inside the script element
    head = (f"<title>{html.escape(stamp.title)}</title>"
            f'<meta name="description" content="{html.escape(stamp.description)}">'
            f'<meta name="generator" content="{html.escape(stamp.software)}">'
            f'<script type="application/toml" id="cdasi-outcomes-spec">{spec}</script>')
    i = page.find("<head>")
    if i < 0:
        raise ValueError("not a full HTML page: no <head>")
    return page[:i + 6] + head + page[i + 6:]


def figure_html(fig: go.Figure, stamp: Stamp | None) -> str:
    """The figure as a self-contained HTML page (plotly.js embedded), stamped."""
    return html_with_metadata(stamp_figure(fig, stamp).to_html(include_plotlyjs=True, full_html=True), stamp)


def with_metadata(data: bytes, fmt: str, stamp: Stamp | None) -> bytes:
    """Rendered image bytes of format ``fmt`` ("png", "svg", "pdf") with the stamp's metadata."""
    if fmt == "png":
        return png_with_metadata(data, stamp)
    if fmt == "svg":
        return svg_with_metadata(data, stamp)
    if fmt == "pdf":
        return pdf_with_metadata(data, stamp)
    raise ValueError(f"unknown image format {fmt!r}")


def figure_bytes(fig: go.Figure, fmt: str, stamp: Stamp | None, render) -> bytes:
    """The figure, stamped, rendered by ``render(fig, opts)`` (kaleido) and given its metadata."""
    fig = stamp_figure(fig, stamp)
    return with_metadata(render(fig, render_options(fig, fmt)), fmt, stamp)


def csv_comment(stamp: Stamp | None) -> str:
    """``#`` comment lines naming the table and the analysis behind it, for the top of a CSV
    (read it back with ``pandas.read_csv(path, comment="#")`` or R's ``read.csv(comment.char = "#")``)."""
    if stamp is None:
        return ""
    lines = ([stamp.title] if stamp.title else []) + list(stamp.lines) + ([stamp.software] if stamp.software else [])
    return "".join(f"# {line}\n" for line in lines)


def kaleido_render(fig: "go.Figure", opts: dict) -> bytes:
    """The figure rendered by kaleido (a started sync server is reused) into bytes. It writes to
    a named file in a temporary folder: kaleido 1.1's ``calc_fig`` names its own file after the
    figure's title, which fails for a long one (OSError: file name too long)."""
    import os
    import tempfile

    import kaleido

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"figure.{opts['format']}")
        problems = kaleido.write_fig_sync(fig, path=path, opts=opts)  # kaleido 1.5 returns errors, 1.1 raises
        if not os.path.exists(path):
            said = "; ".join(f"{type(p).__name__}: {p}" for p in problems or ()) or "no image was written"
            raise RuntimeError(f"kaleido could not render the {opts.get('format')} image ({said})")
        with open(path, "rb") as fh:
            return fh.read()


KALEIDO_TABS = 2  # browser tabs that render at once (one Chromium): one per core of a small server
KALEIDO_OPTIONS = {"timeout": 120, "mathjax": False}  # no MathJax: kaleido would fetch it from a CDN at run time


def kaleido_render_many(items: list[tuple["go.Figure", dict]], tabs: int = KALEIDO_TABS) -> list[bytes | Exception]:
    """Every (figure, opts) rendered in one Chromium whose ``tabs`` tabs render side by side; a
    result per item, in order: the bytes, or the exception that item met (the rest still render).

    A tab renders one figure after another without reloading plotly.js between them (kaleido
    reloads the page after every image, which cost 0.3 s of the 0.35 s an image took here;
    kaleido's own script purges the plot after each image, and a test holds the images to those
    of a fresh page)."""
    import concurrent.futures
    import os
    import tempfile

    if not items:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, f"figure_{i}.{opts['format']}") for i, (_, opts) in enumerate(items)]
        jobs = [{"fig": fig, "path": path, "opts": opts} for (fig, opts), path in zip(items, paths)]
        stop = _Stop()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # its own event loop, even under a running one
            try:
                pool.submit(_render_jobs, jobs, tabs, stop).result()
            except Exception:  # noqa: BLE001 the batch failed as a whole: each figure is retried alone below
                pass
            except BaseException:  # stopped (Ctrl-C, SIGTERM): close the browser now, not after the last figure
                stop.set()
                raise
        out: list[bytes | Exception] = []
        for (fig, opts), path in zip(items, paths):
            if os.path.exists(path) and os.path.getsize(path) > 0:
                with open(path, "rb") as fh:
                    out.append(fh.read())
                continue
            try:  # a second try alone, which also says what went wrong
                out.append(kaleido_render(fig, opts))
            except Exception as exc:  # noqa: BLE001 reported per figure by the caller
                out.append(exc)
        return out


class _Stop:
    """Stops a batch rendering in another thread's event loop by closing its browser there
    (kaleido's own ``close``: Chromium is asked to quit, and killed if it does not), so that the
    renders fail at once and the thread ends; a batch stopped before its browser opened closes
    it as soon as it has."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._stopped = False
        self._close = None

    def opened(self, loop, browser) -> bool:
        """Called in the loop once the browser is open; False: stopped already, close it now."""
        import asyncio

        def close() -> None:
            if not loop.is_closed():
                asyncio.run_coroutine_threadsafe(browser.close(), loop)

        with self._lock:
            self._close = close
            return not self._stopped

    def set(self) -> None:
        with self._lock:
            self._stopped = True
            if self._close is not None:
                try:
                    self._close()
                except RuntimeError:  # the loop has closed (the batch ended meanwhile): nothing to stop
                    pass


def _render_jobs(jobs: list[dict], tabs: int, stop: _Stop | None = None) -> None:
    import asyncio

    import kaleido

    class TabsKept(kaleido.Kaleido):
        async def _return_kaleido_tab(self, tab) -> None:  # put the tab back as it is: no reload
            await self.tabs_ready.put(tab)

    cls = TabsKept if hasattr(kaleido.Kaleido, "_return_kaleido_tab") else kaleido.Kaleido

    async def run():
        async with cls(n=tabs, **KALEIDO_OPTIONS) as k:
            if stop is None or stop.opened(asyncio.get_running_loop(), k):
                await k.write_fig_from_object(jobs)

    asyncio.run(run())
