"""Figures for a journal: a column width in mm, 300 or 600 dpi, PNG, TIFF or PDF, a font size in
points, and the title and axis labels as the author wants them.

The figure keeps its design (every text at the style's sizes, legends in fixed pixels); what
changes is the width it is laid out at, chosen so that at the printed width the base font is
exactly ``font_pt``:

    layout width (px) = base font (px) x 72 x width (mm) / (font_pt x 25.4)

so a single column (85 mm) at 8 pt is laid out 422 px wide, a double column (174 mm) 863 px.
PNG and TIFF are then rendered at ``dpi`` for that width (a 85 mm PNG at 300 dpi is 1004 px
wide, with its dpi recorded); a PDF's page is scaled to the width in points, so its text is
``font_pt`` on paper. Journal figures have no title by default (the caption goes in the paper)
and no provenance band; the file's metadata still names the analysis.

>>> Journal("single", font_pt=8).layout_width
422
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import OptionError

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

__all__ = ["Journal", "COLUMN_MM", "journal_figure", "journal_bytes", "axis_titles", "check_fits", "JOURNAL_FORMATS"]

COLUMN_MM = {"single": 85.0, "double": 174.0}  # the usual single and double column widths (84-90, 170-183 mm)
JOURNAL_FORMATS = {"png": "image/png", "tiff": "image/tiff", "pdf": "application/pdf"}
DPI = (300, 600)
BASE_FONT_PX = 14  # the style's base font (style.FONT)
MIN_LAYOUT_PX = 380  # below this the fixed margins leave no plot


@dataclass(frozen=True)
class Journal:
    """One journal export: ``width`` ("single", "double" or a width in mm), ``dpi`` (300 or
    600), ``fmt`` ("png", "tiff", "pdf"), ``font_pt`` (the base font on paper), ``title`` (None
    or "": no title), ``x_title``/``y_title`` (None: the figure's own)."""

    width: str | float = "single"
    dpi: int = 300
    fmt: str = "png"
    font_pt: float = 8.0
    title: str | None = None
    x_title: str | None = None
    y_title: str | None = None

    def __post_init__(self):
        if isinstance(self.width, str) and self.width not in COLUMN_MM:
            raise OptionError(f"journal width {self.width!r}: choose single, double or a width in mm")
        if not isinstance(self.width, str) and not (40 <= float(self.width) <= 250):
            raise OptionError(f"journal width {self.width} mm: choose from 40 to 250 mm")
        if self.dpi not in DPI:
            raise OptionError(f"journal dpi {self.dpi}: choose 300 or 600")
        if self.fmt not in JOURNAL_FORMATS:
            raise OptionError(f"journal format {self.fmt!r}: choose {', '.join(JOURNAL_FORMATS)}")
        if not (5 <= float(self.font_pt) <= 14):
            raise OptionError(f"journal font {self.font_pt} pt: choose from 5 to 14 pt")
        if self.layout_width < MIN_LAYOUT_PX:
            raise OptionError(f"{self.width_mm:g} mm at {self.font_pt:g} pt leaves too little room for the figure: "
                              f"choose a smaller font (at most {self.max_font_pt:.1f} pt) or a wider figure")

    @property
    def width_mm(self) -> float:
        return COLUMN_MM[self.width] if isinstance(self.width, str) else float(self.width)

    @property
    def layout_width(self) -> int:
        """The width (px) the figure is laid out at, so that its base font prints at ``font_pt``."""
        return round(BASE_FONT_PX * 72 * self.width_mm / (float(self.font_pt) * 25.4))

    @property
    def max_font_pt(self) -> float:
        return BASE_FONT_PX * 72 * self.width_mm / (MIN_LAYOUT_PX * 25.4)

    @property
    def pixel_width(self) -> int:
        return round(self.width_mm / 25.4 * self.dpi)

    def describe(self, fig: "go.Figure | None" = None) -> str:
        size = f"{self.width_mm:g} mm"
        if fig is not None:
            f = journal_figure(fig, self)
            size += f" x {f.layout.height / f.layout.width * self.width_mm:.0f} mm"
        return f"{size}, {self.font_pt:g} pt, {self.dpi} dpi {self.fmt.upper()}"


def axis_titles(fig: "go.Figure") -> tuple[str, str]:
    """The figure's first titled x and y axes' titles ("" when none)."""
    def first(prefix: str) -> str:
        for key in sorted(k for k in fig.layout if k.startswith(prefix)):
            t = fig.layout[key].title
            if t is not None and t.text:
                return t.text
        return ""

    return first("xaxis"), first("yaxis")


def _retitle(fig: "go.Figure", prefix: str, text: str) -> None:
    for key in sorted(k for k in fig.layout if k.startswith(prefix)):
        t = fig.layout[key].title
        if t is not None and t.text:
            fig.layout[key].title.text = text
            return


def check_fits(fig: "go.Figure", j: Journal) -> None:
    """Raise OptionError, naming the width or font that would do, when ``fig`` (built at any
    width: the minimum it records depends on its labels, not on its width) cannot be laid out
    at ``j``'s width."""
    meta = fig.layout.meta if isinstance(fig.layout.meta, dict) else {}
    need = meta.get("min_width_px")
    if need and j.layout_width < need:
        mm = need * float(j.font_pt) * 25.4 / (BASE_FONT_PX * 72)
        pt = BASE_FONT_PX * 72 * j.width_mm / (need * 25.4)
        raise OptionError(f"this figure needs at least {mm:.0f} mm at {j.font_pt:g} pt: choose a wider column "
                          f"(double is {COLUMN_MM['double']:g} mm) or a font of at most {pt:.1f} pt")


def journal_figure(fig, j: Journal) -> "go.Figure":
    """``fig`` laid out for ``j``: a figure, or a function that makes one (it is then built at
    the journal's width, so that builders choose ticks and labels for it). The title (or none)
    and the axis titles are set, axis titles longer than their axis are wrapped, and a legend
    under the axis is laid out again for the new width. Raises OptionError when the figure
    cannot be laid out that narrow (say, a forest plot's labels and HR column)."""
    import plotly.graph_objects as go

    from .style import laid_out_at, legend_below

    if callable(fig):
        with laid_out_at(j.layout_width):
            out = go.Figure(fig())
    else:
        out = go.Figure(fig)
    meta = dict(out.layout.meta) if isinstance(out.layout.meta, dict) else {}
    check_fits(out, j)
    old_title = out.layout.title.text if out.layout.title is not None else None
    lines = (old_title.count("<br>") + 1) if old_title else 0
    top = out.layout.margin.t if out.layout.margin.t is not None else 100
    height = out.layout.height or 560
    legend_above = (out.layout.legend.y is not None and out.layout.legend.y >= 1
                    and out.layout.legend.yref in (None, "paper"))
    new_lines = (j.title.count("\n") + 1) if j.title else 0
    new_top = max(44 if legend_above else 20, top - 24 * lines + 26 * new_lines)
    out.update_layout(width=j.layout_width, height=height - (top - new_top), margin_t=new_top,
                      title=dict(text=(j.title or "").replace("\n", "<br>"), y=1, yref="container", yanchor="top",
                                 x=0, xanchor="left", pad=dict(t=8, l=6)))
    if j.x_title is not None:
        _retitle(out, "xaxis", j.x_title)
    if j.y_title is not None:
        _retitle(out, "yaxis", j.y_title)
    extra = _wrap_axis_titles(out)
    if extra:
        out.update_layout(height=out.layout.height + extra, margin_b=(out.layout.margin.b or 60) + extra)
    if "legend_below" in meta:
        args = dict(meta["legend_below"])
        args["axis_px"] += extra
        legend_below(out, **args)
    return out


_CHAR_PX = 0.56  # the mean advance of an Arial character, per px of font size


def _wrap_axis_titles(fig: "go.Figure") -> int:
    """Wrap every axis title longer than its axis onto more lines; returns the px the x-axis
    titles grew by (the bottom margin must hold them)."""
    import textwrap

    width = fig.layout.width or 900
    height = fig.layout.height or 560
    m = fig.layout.margin
    plot_w = width - (m.l if m.l is not None else 80) - (m.r if m.r is not None else 80)
    plot_h = height - (m.t if m.t is not None else 100) - (m.b if m.b is not None else 80)
    grew = 0
    for key in [k for k in fig.layout if k.startswith(("xaxis", "yaxis"))]:
        axis = fig.layout[key]
        text = axis.title.text if axis.title is not None else None
        if not text or "<br>" in text:
            continue
        dom = axis.domain or (0, 1)
        room = (plot_w if key.startswith("x") else plot_h) * (dom[1] - dom[0])
        size = (axis.title.font.size if axis.title.font and axis.title.font.size else 14)
        if key.startswith("x"):  # automargin may have narrowed the plot for long tick labels
            room = min(room, 0.42 * width)
        chars = max(12, int(room / (size * _CHAR_PX)))
        parts = textwrap.wrap(text, chars)
        if len(parts) > 1:
            axis.title.text = "<br>".join(parts)
            if key.startswith("x"):
                grew = max(grew, int(size * 1.3) * (len(parts) - 1))
    return grew


def journal_bytes(fig: "go.Figure", j: Journal, render, stamp=None) -> bytes:
    """The figure for ``j``, rendered by ``render(fig, opts)`` (kaleido), with the stamp's
    metadata (no caption band): PNG and TIFF at ``j.dpi`` for ``j.width_mm``, PDF with its page
    scaled to ``j.width_mm``."""
    from .provenance import pdf_with_metadata, png_with_metadata

    f = journal_figure(fig, j)  # a figure, or a function that makes one
    w, h = f.layout.width, f.layout.height
    if j.fmt in ("png", "tiff"):
        png = render(f, {"format": "png", "width": w, "height": h, "scale": j.pixel_width / w})
        png = png_with_metadata(png, stamp, dpi=j.dpi)
        if j.fmt == "png":
            return png
        return _tiff(png, j.dpi, stamp)
    pdf = render(f, {"format": "pdf", "width": w, "height": h, "scale": 1})
    return pdf_with_metadata(_scale_pdf(pdf, j.width_mm / 25.4 * 72), stamp)


def _tiff(png: bytes, dpi: int, stamp) -> bytes:
    """A PNG as an LZW-compressed RGB TIFF with its resolution (and the stamp's description)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        rgb = img.convert("RGB")
        buf = io.BytesIO()
        extra = {}
        if stamp is not None:
            extra["description"] = f"{stamp.title}\n{stamp.description}"
        rgb.save(buf, "TIFF", compression="tiff_lzw", dpi=(dpi, dpi), software=getattr(stamp, "software", None)
                 or "cdasi-outcomes", **extra)
    return buf.getvalue()


def _scale_pdf(data: bytes, width_pt: float) -> bytes:
    """Every page of the PDF scaled so that its width is ``width_pt`` points."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    for page in writer.pages:
        page.scale_by(width_pt / float(page.mediabox.width))
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()
