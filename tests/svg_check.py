"""What a rendered SVG figure draws, measured in Chromium: the bounding box of every text and the
stroke of every shape. Used by tests/test_style.py.

Playwright loads the SVG into a page and asks the browser for each element's box
(``getBoundingClientRect``) and computed stroke, so the check sees what a reader sees, not the
plotly objects behind it."""

from __future__ import annotations

import re
from dataclasses import dataclass

_JS = r"""() => {
  const out = {texts: [], shapes: [], plot: []};
  const svg = document.querySelector('svg');
  const r0 = svg.getBoundingClientRect();
  out.size = [r0.width, r0.height];
  const box = (el) => { const r = el.getBoundingClientRect();
    return [r.left - r0.left, r.top - r0.top, r.width, r.height]; };
  for (const t of svg.querySelectorAll('text')) {
    const s = (t.textContent || '').trim();
    if (!s) continue;
    const cs = getComputedStyle(t);
    if (cs.opacity === '0' || cs.visibility === 'hidden' || cs.display === 'none') continue;
    const cls = [];
    for (let p = t; p && p !== svg; p = p.parentElement) { if (p.getAttribute('class')) cls.push(p.getAttribute('class')); }
    out.texts.push({text: s, box: box(t), classes: cls.join(' ')});
  }
  for (const p of svg.querySelectorAll('.shapelayer path, .layer-above path, .layer-below path')) {
    const cs = getComputedStyle(p);
    out.shapes.push({stroke: cs.stroke, width: parseFloat(cs.strokeWidth), strokeOpacity: parseFloat(cs.strokeOpacity),
                     fill: cs.fill, area: (() => { const b = p.getBBox(); return b.width * b.height; })(),
                     fillOpacity: parseFloat(cs.fillOpacity), opacity: parseFloat(cs.opacity),
                     d: (p.getAttribute('d') || '').slice(0, 60),
                     where: p.closest('g[class]') ? p.closest('g[class]').getAttribute('class') : ''});
  }
  for (const g of svg.querySelectorAll('g.overplot > g')) {  // a subplot's plot area: its translate and its clip rectangle
    const m = /translate\(([-\d.]+),\s*([-\d.]+)\)/.exec(g.getAttribute('transform') || '');
    const c = /url\(['"]?#([^'")]+)/.exec(g.getAttribute('clip-path') || '');
    const rect = c && svg.querySelector('#' + CSS.escape(c[1]) + ' rect');
    if (m && rect) out.plot.push([+m[1], +m[2], +rect.getAttribute('width'), +rect.getAttribute('height')]);
  }
  return out;
}"""


@dataclass(frozen=True)
class Text:
    text: str
    x: float
    y: float
    w: float
    h: float
    classes: str

    def overlap(self, other: "Text", slack: float = 1.0) -> float:
        """The area two boxes share, after shrinking each by ``slack`` px (glyph boxes include
        line spacing that never holds ink)."""
        dx = min(self.x + self.w - slack, other.x + other.w - slack) - max(self.x + slack, other.x + slack)
        dy = min(self.y + self.h - slack, other.y + other.h - slack) - max(self.y + slack, other.y + slack)
        return dx * dy if dx > 0 and dy > 0 else 0.0


def measure(page, svg: str) -> dict:
    """Load ``svg`` into the Playwright ``page``; return its texts (:class:`Text`), its shapes'
    strokes and the plot areas' boxes."""
    page.set_content(f"<html><body style='margin:0'>{svg}</body></html>")
    got = page.evaluate(_JS)
    got["texts"] = [Text(t["text"], *t["box"], t["classes"]) for t in got["texts"]]
    return got


def invisible_shapes(found: dict) -> list[dict]:
    """Shapes that draw nothing: no stroke (none, width 0 or opacity 0) and no visible fill (a
    line's fill covers no area)."""
    bad = []
    for s in found["shapes"]:
        stroked = s["width"] > 0 and s["strokeOpacity"] > 0 and s["stroke"] not in ("none", "rgba(0, 0, 0, 0)")
        segments = len(re.findall(r"[LHVlhv]", s["d"]))  # a rect is drawn with H and V: M x,y H x2 V y2 H x Z
        filled = (s["fill"] not in ("none", "rgba(0, 0, 0, 0)") and s["fillOpacity"] > 0
                  and s["area"] > 1.0 and segments >= 2)
        if s["opacity"] > 0 and not stroked and not filled:
            bad.append(s)
    return bad


def overlapping_texts(found: dict, min_area: float = 4.0) -> list[tuple[str, str, float]]:
    """Pairs of texts whose boxes share more than ``min_area`` px^2."""
    texts = found["texts"]
    out = []
    for i, a in enumerate(texts):
        for b in texts[i + 1:]:
            area = a.overlap(b)
            if area > min_area:
                out.append((a.text, b.text, round(area, 1)))
    return out


OUTSIDE = ("gtitle", "xtitle", "ytitle", "legend")  # texts that must stay off the plot area


def texts_on_plot(found: dict, min_area: float = 4.0) -> list[tuple[str, float]]:
    """Titles, axis titles and legend entries that overlap a plot area (the curves)."""
    out = []
    for t in found["texts"]:
        if not any(c in t.classes.split() for c in OUTSIDE):
            continue
        for x, y, w, h in found["plot"]:
            area = t.overlap(Text("", x, y, w, h, ""))
            if area > min_area:
                out.append((t.text, round(area, 1)))
    return out


def texts_outside(found: dict, slack: float = 2.0) -> list[tuple[str, float, float]]:
    """Texts that reach beyond the figure's edges (cut off in the file), with their box's left
    and right edges."""
    width, height = found["size"]
    return [(t.text, round(t.x, 1), round(t.x + t.w, 1)) for t in found["texts"]
            if t.x < -slack or t.y < -slack or t.x + t.w > width + slack or t.y + t.h > height + slack]
