"""Small-cell suppression: what anything meant to be shared may show.

Applied once, to every table a result declares (:class:`~analytics.protocol.TableSpec`) and to
figure labels (through :func:`count_text`), with ``min_cell`` from the analysis spec
(``[pack] min_cell``; 5 or 11 are usual; ``None`` = internal use, nothing suppressed).

The rules, in the order they apply to a table:

1. A count from 1 to ``min_cell - 1`` shows as ``<min_cell`` (0 and larger counts show as
   they are: a zero reveals nobody).
2. ``row_whole``: the counts of one row add up (at risk, events and censored of a risk-table
   tick; lines = responses + stopped + censored), so a row with one small count loses all of
   its counts.
3. Complementary suppression over ``sum_groups`` (a total row and the rows that add up to it):
   where exactly one cell of a group is hidden, or the hidden parts add up to a small number
   that the shown total would reveal by subtraction, the smallest shown part is hidden too
   ("suppressed"); this repeats until no group gives anything away.
4. ``total_columns`` (totals over every arm, such as the lines of a Cox model) are hidden when
   any arm is small: they would give the small arm away by subtraction.
5. ``column_n``: a column describing a group of fewer than ``min_cell`` (an arm of Table 1) is
   hidden whole; ``text_counts`` cells such as "3 (8%)" are suppressed with their percentage.
6. ``derived`` columns (a median, a proportion of the row's group) are suppressed wherever a
   count of their row is hidden.
7. ``patient_level`` tables are left out of anything suppressed, and so are
   ``private_columns`` (example patient ids, spreadsheet row numbers).
"""

from __future__ import annotations

import math
from typing import Iterable

import pandas as pd

from ..protocol import TableSpec

__all__ = ["count_text", "is_small", "small_groups", "suppress", "suppress_text_count", "SUPPRESSED"]

SUPPRESSED = "suppressed"


def is_small(x, min_cell: int | None) -> bool:
    """True for a whole number from 1 to min_cell - 1 (a small cell)."""
    if not min_cell:
        return False
    try:
        v = float(x)
    except (TypeError, ValueError):
        return False
    return math.isfinite(v) and v == int(v) and 0 < v < min_cell


def count_text(n, min_cell: int | None = None) -> str:
    """A count as shown in anything shared: counts from 1 to min_cell - 1 become "<min_cell"
    (small-cell suppression, OHDSI style); 0 and larger counts show as they are."""
    n = int(n)
    if min_cell and 0 < n < min_cell:
        return f"<{min_cell}"
    return str(n)


def suppress_text_count(text, min_cell: int | None) -> str:
    """Cells that start with a count, such as '3 (8%)' (Table 1) or '3 responses': the count
    becomes "<min_cell" and a percentage in brackets goes with it."""
    s = str(text)
    if not min_cell:
        return s
    head, _, rest = s.partition(" ")
    if head.isdigit() and is_small(head, min_cell):
        return f"<{min_cell}" + (f" ({SUPPRESSED})" if "(" in rest else (f" {rest}" if rest else ""))
    return s


def small_groups(lines_by_group: dict, min_cell: int | None) -> list[str]:
    """The groups (arms) with 1 to min_cell - 1 lines: their curves and columns would reveal counts."""
    return [g for g, n in lines_by_group.items() if is_small(n, min_cell)]


def _complementary(values: list[float], hidden: list[bool], groups: Iterable[tuple[int, tuple[int, ...]]],
                   min_cell: int) -> list[bool]:
    """Hide more parts until no group reveals a hidden cell, or a small sum of hidden cells, by subtraction."""
    hidden = list(hidden)
    groups = [(t, tuple(p for p in parts if 0 <= p < len(values))) for t, parts in groups]
    changed = True
    while changed:
        changed = False
        for total, parts in groups:
            cells = parts + ((total,) if total is not None and 0 <= total < len(values) else ())
            n_hidden = sum(hidden[i] for i in cells)
            if n_hidden == 0:
                continue
            hidden_parts = [i for i in parts if hidden[i]]
            total_shown = total is not None and 0 <= total < len(values) and not hidden[total]
            revealing = n_hidden == 1 or (total_shown and len(hidden_parts) >= 2
                                          and 0 < sum(values[i] for i in hidden_parts) < min_cell)
            shown = [i for i in parts if not hidden[i] and values[i] > 0]
            if revealing and shown:
                hidden[min(shown, key=lambda i: values[i])] = True
                changed = True
    return hidden


def suppress(spec: TableSpec, min_cell: int | None, small_arms: Iterable[str] = ()) -> pd.DataFrame | None:
    """The table as it may be shared with ``min_cell``; ``None`` for a patient-level table.
    ``small_arms``: arms with fewer than ``min_cell`` lines anywhere in the analysis."""
    df = spec.frame
    if not min_cell:
        return df
    if spec.patient_level:
        return None
    if df.empty:
        return df
    small_arms = list(small_arms)
    df = df.drop(columns=[c for c in spec.private_columns if c in df.columns])
    out = df.astype(object).copy()
    n_rows = len(df)
    row_hidden = [False] * n_rows
    for c in [c for c in spec.counts if c in df.columns]:
        values = [float(v) if is_small(v, 10**9) else 0.0 for v in df[c]]
        small = [is_small(v, min_cell) for v in df[c]]
        hidden = _complementary(values, small, spec.sum_groups, min_cell) if spec.sum_groups else small
        for i in range(n_rows):
            if hidden[i]:
                out.iat[i, df.columns.get_loc(c)] = f"<{min_cell}" if small[i] else SUPPRESSED
                row_hidden[i] = True
    counts = [c for c in spec.counts if c in df.columns]
    if spec.row_whole:
        for i in range(n_rows):
            if row_hidden[i]:
                for c in counts:
                    j = df.columns.get_loc(c)
                    if not str(out.iat[i, j]).startswith(("<", SUPPRESSED)):
                        out.iat[i, j] = SUPPRESSED
    if spec.total_columns and (small_arms or any(row_hidden)):
        for c in spec.total_columns:
            if c in out.columns:
                out[c] = SUPPRESSED
    for c in spec.text_counts:
        if c in out.columns:
            out[c] = out[c].map(lambda v: suppress_text_count(v, min_cell))
    hidden_columns = [c for c, n in spec.column_n.items() if c in out.columns and is_small(n, min_cell)]
    for c in hidden_columns:  # every statistic of a small group would describe a handful of patients
        out[c] = [f"<{min_cell}"] + [SUPPRESSED] * (n_rows - 1)
    if hidden_columns:
        for c in spec.derived_across:
            if c in out.columns:
                out[c] = SUPPRESSED
    for c in spec.derived:
        if c in out.columns:
            for i in range(n_rows):
                if row_hidden[i]:
                    out.iat[i, out.columns.get_loc(c)] = SUPPRESSED
    return out

