"""Render the README's figures from the real figure functions on the sample cohort.

    .venv/bin/pip install kaleido && apt-get install chromium   # once; not needed to run the tool
    .venv/bin/python docs/make_figures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import plotly.io as pio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analytics import DeriveOptions, analyze, load  # noqa: E402

prepared, timings = load(ROOT / "sample_data" / "visits.csv", ROOT / "sample_data" / "therapies.csv")
m = analyze(prepared, DeriveOptions(), timings, models=True).models
out = ROOT / "docs" / "img"
figures = {"km.png": m.km.figure(), "forest_adjusted.png": m.cox_adjusted.figure(),
           "competing.png": m.competing.figure(), "mixed.png": m.mixed.figure(),
           "balance.png": m.adjusted.balance_figure(), "km_weighted.png": m.adjusted.km.figure()}
for name, fig in figures.items():
    pio.write_image(fig, out / name, scale=1)  # write_image honours layout width/height; write_images does not
    print(out / name)
