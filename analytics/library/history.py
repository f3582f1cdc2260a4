"""Quality indicators over every stored export: one run chart per indicator whose periods come
from all the exports of the library, so a quarterly meeting sees years of history even when
each export holds only the recent data.

Each period's value comes from the latest export (by import time) in which that period is
complete; a period complete in no export comes from the latest export that has it (drawn as
partial). The ``dataset_id`` column says which export each period is from.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from . import Library

__all__ = ["quality_history", "combine_periods"]


def combine_periods(by_dataset: list[tuple[int, pd.DataFrame]]) -> pd.DataFrame:
    """``by_dataset``: (dataset id, quality ``by_period`` table), oldest export first. Returns one
    row per (key, period): from the latest export where the period is complete, else the latest
    that has it; with a ``dataset_id`` column."""
    frames = [df.assign(dataset_id=ds, _order=i) for i, (ds, df) in enumerate(by_dataset) if len(df)]
    if not frames:
        return pd.DataFrame(columns=["key", "name", "period", "numerator", "denominator", "value", "unit", "complete",
                                     "dataset_id"])
    allp = pd.concat(frames, ignore_index=True)
    allp = allp[allp["period"] != "unknown"]
    allp = allp.sort_values(["key", "period", "complete", "_order"])  # complete last, then the latest export
    best = allp.groupby(["key", "period"], sort=False).tail(1)
    return best.sort_values(["key", "period"]).drop(columns="_order").reset_index(drop=True)


def quality_history(library: Library, period: str = "year", spec=None, cache: dict | None = None):
    """The quality indicators of the library's latest export, with ``by_period`` drawn from every
    stored export (:func:`combine_periods`). ``cache``: {(visits sha256, period, spec repr):
    by_period} to reuse across calls. Returns None when the library holds no dataset."""
    from ..lines.derive import derive
    from ..pipeline import load
    from ..spec import AnalysisSpec
    from ..stats.quality import compute_quality

    stored = sorted(library.datasets(), key=lambda d: (d.imported_at, d.id))
    if not stored:
        return None
    spec = spec or AnalysisSpec()
    m = spec.models
    cache = {} if cache is None else cache
    parts, latest = [], None
    for ds in stored:
        key = (ds.sha256, ds.id, period, repr(spec.derive), repr(m.targets), repr(m.better))
        if key not in cache:
            with library.checked_out(ds.id) as paths:
                prepared, _ = load(paths["visits"], paths.get("therapies"), paths.get("mapping"),
                                   library.date_format(ds.id))
            cache[key] = compute_quality(prepared, derive(prepared, spec.derive), period, m.alpha, m.targets,
                                         m.better)
        q = cache[key]
        parts.append((ds.id, q.by_period))
        latest = q
    return dataclasses.replace(latest, by_period=combine_periods(parts))
