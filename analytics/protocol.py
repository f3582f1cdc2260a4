"""The result protocol every analysis follows, and the pieces it is built from.

A result is a frozen dataclass that holds:

- ``call``: the :class:`Call` that produced it (function and arguments), so that the
  Reproduce snippet is rendered from what ran, not written by hand;
- ``alpha``: every interval it reports is a ``1 - alpha`` interval;
- ``warnings``: :class:`AnalysisWarning` items, plain strings that keep their ``source``
  (the analysis) and ``category`` (the warning class, or "data" for our own checks);
- ``summary`` (a DataFrame), ``tables()`` (name -> :class:`TableSpec`, which knows which
  columns are counts so that :mod:`analytics.display.suppression` can protect them), ``figures()``
  (name -> :class:`FigureSpec`) and ``to_dict()`` (JSON-safe).

This module imports nothing heavier than the standard library, so that ``import analytics``
stays fast.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["AnalysisWarning", "Call", "FigureSpec", "TableSpec", "ci_label", "recorded", "tag", "z_value"]


def z_value(alpha: float) -> float:
    """The two-sided normal quantile of a ``1 - alpha`` interval (1.959964 for alpha 0.05)."""
    if not (0 < alpha < 1):
        raise ValueError(f"alpha must be between 0 and 1, not {alpha!r}")
    return statistics.NormalDist().inv_cdf(1 - alpha / 2)


def ci_label(alpha: float) -> str:
    """'95% CI' for alpha 0.05, '90% CI' for 0.1, '99.5% CI' for 0.005."""
    return f"{100 * (1 - alpha):.10g}% CI"


class AnalysisWarning(str):
    """A warning that is still a string (so it prints and compares as one) but keeps where it
    came from: ``source`` (the analysis, e.g. "cox_adjusted") and ``category`` ("data" for the
    tool's own checks, else the Python warning class, e.g. "ConvergenceWarning")."""

    source: str
    category: str

    def __new__(cls, message: str, source: str = "", category: str = "data"):
        obj = super().__new__(cls, str(message))
        obj.source = getattr(message, "source", "") or source
        obj.category = getattr(message, "category", category) if isinstance(message, AnalysisWarning) else category
        return obj

    def __reduce__(self):  # keep source and category through pickling (Streamlit's caches copy objects)
        return (AnalysisWarning, (str(self), self.source, self.category))

    def with_source(self, source: str) -> "AnalysisWarning":
        return AnalysisWarning(str(self), self.source or source, self.category)

    def to_dict(self) -> dict:
        return {"message": str(self), "source": self.source, "category": self.category}


def tag(warnings, source: str) -> list[AnalysisWarning]:
    """The warnings of one analysis, each tagged with its source (kept when it has one)."""
    return [w.with_source(source) if isinstance(w, AnalysisWarning) else AnalysisWarning(w, source) for w in warnings]


@dataclass(frozen=True)
class Call:
    """A function call as it ran: ``module.function(**inputs, **kwargs)``.

    ``inputs`` pair each data parameter with the expression a snippet builds it under
    (``("table", "table")``, ``("trajectories", "derivation.trajectories")``); ``kwargs`` are
    literal values whose ``repr`` is valid Python (frozen option objects print so)."""

    module: str
    function: str
    inputs: tuple[tuple[str, str], ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def code(self, target: str = "result") -> str:
        """``from module import function`` and the call, assigned to ``target``."""
        args = [f"{k}={expr}" for k, expr in self.inputs] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"from {self.module} import {self.function}\n{target} = {self.function}({', '.join(args)})\n"

    def to_dict(self) -> dict:
        return {"function": f"{self.module}.{self.function}", "inputs": dict(self.inputs),
                "kwargs": {k: repr(v) for k, v in self.kwargs.items()}}


@dataclass(frozen=True)
class TableSpec:
    """A table of a result, with what small-cell suppression must know about it.

    ``counts``: columns holding counts of lines, patients or events; ``derived``: columns
    computed from the row's group (suppressed with a small count); ``sum_groups``: lists of
    row positions whose ``counts`` values add up to a total that is shown or can be derived,
    so complementary suppression hides one more cell where a hidden one could be recovered;
    ``total_columns``: count columns that are the sum over every row (hidden when any row is);
    ``row_whole``: the counts of a row add up, so one small count hides them all;
    ``column_n``: the number of lines behind each group column (a small one is hidden whole,
    and ``derived_across`` columns with it); ``text_counts``: columns of "n (%)" text cells
    (Table 1); ``patient_level``: the table lists patients or lines (never shared);
    ``private_columns``: columns left out of anything shared; ``in_report``: False for tables
    that go to tables/ and the workbook only (drill-down lists too long for a report).
    ``sum_groups`` items are ``(total_row, (part_rows...))``; the total may be ``None``."""

    frame: "pd.DataFrame"
    title: str = ""
    counts: tuple[str, ...] = ()
    derived: tuple[str, ...] = ()
    sum_groups: tuple[tuple[int | None, tuple[int, ...]], ...] = ()
    row_whole: bool = False
    total_columns: tuple[str, ...] = ()
    column_n: Mapping[str, int] = field(default_factory=dict)
    derived_across: tuple[str, ...] = ()
    text_counts: tuple[str, ...] = ()
    patient_level: bool = False
    private_columns: tuple[str, ...] = ()  # left out when shared (example patient ids, row numbers)
    in_report: bool = True


@dataclass(frozen=True)
class FigureSpec:
    """A figure of a result: ``make(min_cell, hidden_arms)`` draws it, with small-cell
    suppression of its labels when ``min_cell`` is set and without the curves of
    ``hidden_arms`` (arms too small to show); ``caption`` says what it shows."""

    make: Callable[[int | None, tuple[str, ...]], "go.Figure"]
    caption: str
    patient_level: bool = False


def _literal(value):
    """A value as a literal that ``repr`` prints as valid Python (numpy scalars become floats)."""
    if isinstance(value, (list, tuple)):
        return type(value)(_literal(v) for v in value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)) and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def recorded(**inputs: str):
    """Decorate a fit function so that its result records the :class:`Call` that made it.

    ``inputs`` maps the data parameters to the names a snippet builds them under, e.g.
    ``recorded(table="table", trajectories="derivation.trajectories")``; every other argument
    (defaults included) is recorded as a literal keyword argument.

    The function runs with BLAS on one thread (threadpoolctl), wherever it is called from: the
    registry, a worker process, a reproduce snippet or a notebook get the same numbers to the
    last digit (a sum split over threads rounds differently)."""
    import dataclasses
    import functools
    import inspect

    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"):
                result = fn(*args, **kwargs)
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            data, literal = [], {}
            for name, value in bound.arguments.items():
                if name in inputs and value is not None:
                    data.append((name, inputs[name]))
                else:
                    literal[name] = _literal(value)
            return dataclasses.replace(result, call=Call(fn.__module__, fn.__name__, tuple(data), literal))

        return inner

    return wrap
