"""One look for every figure: colour-blind-safe arm colours (Okabe & Ito 2008) that stay the
same on every page and in every export, labelled axes with units, a clean template."""

from __future__ import annotations

import plotly.graph_objects as go

from .suppression import count_text  # noqa: F401  (figure labels use it)

__all__ = ["ARM_COLORS", "arm_color", "base_layout", "WEEKS_AXIS", "CDASI_AXIS", "count_text"]

# Okabe-Ito palette. MMF blue, IVIG orange, JAKi bluish green; other arms take the rest in order.
ARM_COLORS = {"MMF": "#0072B2", "IVIG": "#E69F00", "JAKi": "#009E73"}
_OTHER = ("#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
WEEKS_AXIS = "Weeks since line start"
CDASI_AXIS = "CDASI activity (points, 0-100)"
FONT = dict(family="Arial, Helvetica, sans-serif", size=14, color="#222222")


def arm_color(arm: str, arms: tuple[str, ...] | list[str] = ()) -> str:
    if arm in ARM_COLORS:
        return ARM_COLORS[arm]
    others = [a for a in arms if a not in ARM_COLORS]
    i = others.index(arm) if arm in others else abs(hash(arm))
    return _OTHER[i % len(_OTHER)]


def base_layout(fig: go.Figure, title: str, x_title: str | None = None, y_title: str | None = None,
                height: int = 520) -> go.Figure:
    fig.update_layout(template="simple_white", font=FONT, title=dict(text=title, x=0.0, xanchor="left"),
                      height=height, width=900, margin=dict(l=90, r=30, t=70, b=60),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    if x_title:
        fig.update_xaxes(title_text=x_title, row=None)
    if y_title:
        fig.update_yaxes(title_text=y_title)
    return fig
