"""Fit every registered analysis (:mod:`analytics.registry`) on a derivation.

>>> from analytics import load, analyze
>>> from analytics.models import ModelOptions, fit_models
>>> prepared, _ = load("sample_data/visits.csv", therapies="sample_data/therapies.csv")
>>> models = fit_models(analyze(prepared).derivation, prepared)    # doctest: +SKIP
>>> models.km.figure(); models.cox_adjusted.summary               # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .errors import OptionError
from .lines.analysis_table import ADJUSTMENT_SET
from .lines.options import MixedSpec
from .lines.scheme import Scheme

__all__ = ["ModelOptions", "Models", "fit_models"]


@dataclass(frozen=True)
class ModelOptions:
    """Options of the statistics (the analysis spec's ``[models]``, ``[mixed]`` and
    ``[quality]``). ``adjust_for``: the adjustment set of the adjusted Cox model and of the
    propensity model; ``ticks``: the x ticks of the Kaplan-Meier risk table; ``alpha``: every
    interval of every model and figure is ``1 - alpha``; ``period``: of the quality indicators;
    ``targets``: the department's target per quality indicator ((key, value) pairs, in the
    indicator's unit: % or days); ``better``: (key, "higher" | "lower") pairs that override an
    indicator's direction of improvement; ``scheme``: the department's stepwise scheme
    (``--scheme FILE``, the spec's ``[scheme]``; contract section 6)."""

    adjust_for: tuple[str, ...] = ADJUSTMENT_SET
    mixed: MixedSpec = field(default_factory=MixedSpec)
    ticks: tuple[float, ...] = (0.0, 12.0, 24.0, 36.0, 48.0)
    trim: tuple[float, float] = (0.01, 0.99)
    alpha: float = 0.05
    period: str = "year"
    targets: tuple[tuple[str, float], ...] = ()
    better: tuple[tuple[str, str], ...] = ()
    scheme: Scheme = field(default_factory=Scheme.default)

    def __post_init__(self):
        if not (0 < self.alpha < 0.5):
            raise OptionError("alpha must be between 0 and 0.5")
        lo, hi = self.trim
        if not (0 <= lo < hi <= 1):
            raise OptionError("trim must be two quantiles, e.g. (0.01, 0.99)")
        if list(self.ticks) != sorted(self.ticks) or not self.ticks or self.ticks[0] != 0:
            raise OptionError("ticks must start at 0 and increase")
        if self.period not in ("year", "quarter"):
            raise OptionError("period must be 'year' or 'quarter'")
        for name in ("adjust_for", "ticks", "trim"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        from .registry import QUALITY_INDICATOR_KEYS

        for name, check, what in (("targets", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                                   and v == v and abs(v) != float("inf"), "a number"),
                                  ("better", lambda v: v in ("higher", "lower"), '"higher" or "lower"')):
            pairs = getattr(self, name)
            pairs = dict(pairs.items() if isinstance(pairs, dict) else pairs)
            unknown = sorted(set(pairs) - set(QUALITY_INDICATOR_KEYS))
            if unknown:
                raise OptionError(f"quality {name}: unknown indicators {unknown}; choose from "
                                  f"{', '.join(QUALITY_INDICATOR_KEYS)}")
            bad = {k: v for k, v in pairs.items() if not check(v)}
            if bad:
                raise OptionError(f"quality {name}: {bad} must be {what}")
            object.__setattr__(self, name, tuple(sorted((k, float(v) if name == "targets" else v)
                                                        for k, v in pairs.items())))


@dataclass
class Models:
    """The fitted analyses by registry name (``models.km``, ``models["mixed"]``). Fitted by a
    :class:`~analytics.parallel.Helper` (the ``analyze`` command), all but the ``local`` ones are
    :class:`~analytics.registry.Rendered`: their results.json sections, not the result objects."""

    arms: list[str]
    results: dict[str, Any]
    timings_s: dict
    options: ModelOptions = field(default_factory=ModelOptions)

    def __getattr__(self, name: str):
        results = self.__dict__.get("results", {})
        if name in results:
            return results[name]
        raise AttributeError(name)

    def __getitem__(self, name: str):
        return self.results[name]

    def __contains__(self, name: str) -> bool:
        return name in self.results

    @property
    def warnings(self) -> list[str]:
        """Every analysis's warnings as text, each prefixed with its analysis's name."""
        return [f"[{w.source}] {w}" for w in self.warning_items]

    @property
    def warning_items(self) -> list:
        from .protocol import tag

        return [w for name, r in self.results.items() for w in tag(getattr(r, "warnings", []) or [], name)]

    def sections(self) -> dict:
        """The statistics sections of results.json, from the registry."""
        from .registry import Rendered, entry, place

        doc: dict = {}
        for name, result in self.results.items():
            if isinstance(result, Rendered):
                result.place(doc, entry(name))
            else:
                place(doc, entry(name), result)
        doc["analyses"] = {name: {"call": r.call if isinstance(r, Rendered)
                                  else (r.call.to_dict() if getattr(r, "call", None) else None),
                                  "alpha": getattr(r, "alpha", None)} for name, r in self.results.items()}
        return doc


def fit_models(derivation, prepared=None, options: ModelOptions | None = None, full=None,
               names: Iterable[str] | None = None, progress: Callable[[str], None] | None = None,
               workers: int | None = 1, helper=None, meanwhile: Callable[[], None] | None = None,
               render: bool = False) -> Models:
    """Fit the registered analyses (all, or ``names``) on ``derivation``. ``full``: the
    whole-export derivation for analyses that ignore the cohort filters (quality); defaults
    to ``derivation``. ``workers`` > 1: fit on that many processes (forked; the same results;
    see :mod:`analytics.parallel`); None: as many as suit the machine and the export. ``helper``:
    a :class:`~analytics.parallel.Helper` forked before the data were read, which then fits;
    ``meanwhile``: the caller's work that does not need the models, run while they are fitted
    (:func:`~analytics.registry.fit_all`); ``render``: keep each analysis only
    :class:`~analytics.registry.Rendered` (what results.json and the summary need)."""
    from .registry import FitContext, fit_all

    if prepared is None:
        raise OptionError("fit_models needs the prepared export (covariates and the quality indicators use it)")
    options = options or ModelOptions()
    ctx = FitContext(prepared, derivation, full if full is not None else derivation, options)
    results, timings = fit_all(ctx, names, progress, workers, helper, meanwhile, render)
    return Models(list(derivation.options.arms), results, timings, options)
