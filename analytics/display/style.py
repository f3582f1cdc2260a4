"""One look for every figure: colour-blind-safe arm colours (Okabe & Ito 2008) that stay the
same on every page and in every export, labelled axes with units, a clean template."""

from __future__ import annotations

import contextlib
import contextvars
import functools

import plotly.graph_objects as go

from .suppression import count_text  # noqa: F401  (figure labels use it)

__all__ = ["ARM_COLORS", "arm_color", "base_layout", "legend_below", "WEEKS_AXIS", "CDASI_AXIS", "count_text",
           "figure_width", "laid_out_at", "DESIGN_WIDTH"]

# Okabe-Ito palette. MMF blue, IVIG orange, JAKi bluish green; other arms take the rest in order.
ARM_COLORS = {"MMF": "#0072B2", "IVIG": "#E69F00", "JAKi": "#009E73"}
_OTHER = ("#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
WEEKS_AXIS = "Weeks since line start"
CDASI_AXIS = "CDASI activity (points, 0-100)"
FONT = dict(family="Arial, Helvetica, sans-serif", size=14, color="#222222")


@functools.cache
def template() -> go.layout.Template:
    """plotly's simple_white with visible reference lines: simple_white gives every shape a line
    width of 0 and an opacity of 0.3, so add_hline/add_vline (MCID, medians, the balance
    threshold, a run chart's centre line) drew nothing."""
    import plotly.io as pio

    t = go.layout.Template(pio.templates["simple_white"])
    t.layout.shapedefaults = dict(line=dict(width=1.5, color="#666666"), opacity=1, fillcolor="rgba(0,0,0,0.08)")
    return t


DESIGN_WIDTH = 900  # px: every figure is designed at this width (screen, pack, slides)
_WIDTH = contextvars.ContextVar("figure_width", default=DESIGN_WIDTH)


def figure_width() -> int:
    """The width (px) figures are being laid out at: DESIGN_WIDTH, or a journal column's
    (:func:`laid_out_at`). Builders that place text by width (ticks, risk tables) read it."""
    return _WIDTH.get()


@contextlib.contextmanager
def laid_out_at(width: int):
    """Build figures inside this block at ``width`` px (a journal column)."""
    token = _WIDTH.set(int(width))
    try:
        yield
    finally:
        _WIDTH.reset(token)


def needs_width(fig: go.Figure, px: int) -> go.Figure:
    """Record that ``fig`` cannot be laid out narrower than ``px`` at the design font (a journal
    export at a narrower width asks for a wider column or a smaller font instead)."""
    meta = dict(fig.layout.meta) if isinstance(fig.layout.meta, dict) else {}
    meta["min_width_px"] = int(px)
    fig.update_layout(meta=meta)
    return fig


def arm_color(arm: str, arms: tuple[str, ...] | list[str] = ()) -> str:
    if arm in ARM_COLORS:
        return ARM_COLORS[arm]
    others = [a for a in arms if a not in ARM_COLORS]
    i = others.index(arm) if arm in others else abs(hash(arm))
    return _OTHER[i % len(_OTHER)]


def base_layout(fig: go.Figure, title: str, x_title: str | None = None, y_title: str | None = None,
                height: int = 520) -> go.Figure:
    fig.update_layout(template=template(), font=FONT, title=dict(text=title, x=0.0, xanchor="left"),
                      height=height, width=figure_width(), margin=dict(l=90, r=30, t=70, b=60),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    if x_title:
        fig.update_xaxes(title_text=x_title, row=None)
    if y_title:
        fig.update_yaxes(title_text=y_title)
    return fig


AXIS_BELOW_PX = 72  # tick labels and the x-axis title under the plot area (14 px ticks, 17 px title)
LEGEND_ROW_PX = 24
_SYMBOL_PX = 60  # an entry's symbol and padding, besides its text (entrywidth)


def legend_below(fig: go.Figure, plot_height: int = 360, entry_px: int = 290,
                 axis_px: int = AXIS_BELOW_PX) -> go.Figure:
    """Put the legend under the x-axis title, in rows of fixed-width entries, and size the bottom
    margin and the figure to hold it: the layout is fixed in pixels, so plotly never has to push
    the margins (and a caption added under the figure cannot meet the legend).

    ``plot_height``: the plot area's height in px; ``entry_px``: the width of one legend entry;
    ``axis_px``: the room the x axis takes under the plot (tick labels and title)."""
    width = fig.layout.width or 900
    margin = fig.layout.margin
    left, right, top = margin.l if margin.l is not None else 80, margin.r if margin.r is not None else 80, \
        margin.t if margin.t is not None else 100
    entries = sum(1 for t in fig.data if t.showlegend is not False and t.name)
    per_row = max(1, int((width - left) // entry_px))  # the legend starts at the plot's left edge
    rows = max(1, -(-entries // per_row))
    bottom = axis_px + rows * LEGEND_ROW_PX + 12
    height = top + plot_height + bottom
    meta = dict(fig.layout.meta) if isinstance(fig.layout.meta, dict) else {}
    meta["legend_below"] = {"plot_height": plot_height, "entry_px": entry_px, "axis_px": axis_px}
    fig.update_layout(height=height, margin_b=bottom, meta=meta,  # kept so that a new width can lay it out again
                      legend=dict(orientation="h", traceorder="normal", entrywidth=entry_px - _SYMBOL_PX,
                                  entrywidthmode="pixels", yref="container", y=(bottom - axis_px) / height,
                                  yanchor="top", x=0, xanchor="left", xref="paper"))
    return fig
