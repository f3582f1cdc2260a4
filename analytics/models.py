"""Run every model on a derivation and build the statistics sections of results.json.

>>> from analytics import load, analyze
>>> from analytics.models import ModelOptions, fit_models
>>> prepared, _ = load("sample_data/visits.csv", therapies="sample_data/therapies.csv")
>>> models = fit_models(analyze(prepared).derivation, prepared)    # doctest: +SKIP
>>> models.km.figure(); models.cox_adjusted.summary               # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .adjusted import AdjustedResult, fit_adjusted
from .competing import CIFResult, fit_competing
from .cox import CoxResult, fit_cox
from .derive import Derivation
from .interval import IntervalResult, fit_interval
from .mixed import MixedResult, MixedSpec, fit_mixed
from .options import OptionError
from .results import ADJUSTMENT_SET, analysis_table
from .survival import KMResult, fit_km
from .table1 import Table1, table1
from .validate import Prepared

__all__ = ["ModelOptions", "Models", "fit_models"]


@dataclass(frozen=True)
class ModelOptions:
    """Options of the statistics. ``adjust_for``: the adjustment set of the adjusted Cox model
    and of the propensity model; ``ticks``: the x ticks of the Kaplan-Meier risk table."""

    adjust_for: tuple[str, ...] = ADJUSTMENT_SET
    mixed: MixedSpec = field(default_factory=MixedSpec)
    ticks: tuple[float, ...] = (0.0, 12.0, 24.0, 36.0, 48.0)
    trim: tuple[float, float] = (0.01, 0.99)
    alpha: float = 0.05

    def __post_init__(self):
        if not (0 < self.alpha < 0.5):
            raise OptionError("alpha must be between 0 and 0.5")
        lo, hi = self.trim
        if not (0 <= lo < hi <= 1):
            raise OptionError("trim must be two quantiles, e.g. (0.01, 0.99)")
        if list(self.ticks) != sorted(self.ticks) or not self.ticks or self.ticks[0] != 0:
            raise OptionError("ticks must start at 0 and increase")


@dataclass
class Models:
    arms: list[str]
    km: KMResult
    cox: CoxResult
    cox_adjusted: CoxResult
    competing: CIFResult
    interval: IntervalResult
    mixed: MixedResult
    table1: Table1
    adjusted: AdjustedResult
    timings_s: dict

    @property
    def warnings(self) -> list[str]:
        out = []
        for name in ("km", "cox", "cox_adjusted", "competing", "interval", "mixed", "table1", "adjusted"):
            out += [f"[{name}] {w}" for w in getattr(self, name).warnings]
        return out

    def sections(self) -> dict:
        """The time_to_response and mixed_model sections of results.json, and the rest."""
        km = self.km.to_dict()
        ttr = {"time_unit": "weeks", "arms": km["arms"], "logrank": {k: km["logrank"][k] for k in
                                                                      ("statistic", "df", "p")},
               "logrank_pairwise": km["logrank_pairwise"], "pairwise_adjustment": "holm",
               "risk_table": km["risk_table"], "cox": self.cox.to_dict(), "cox_adjusted": self.cox_adjusted.to_dict(),
               "warnings": km["warnings"]}
        return {"time_to_response": ttr, "mixed_model": self.mixed.to_dict(),
                "competing_risks": self.competing.to_dict(), "interval_censoring": self.interval.to_dict(),
                "table1": self.table1.to_dict(), "adjusted_comparison": self.adjusted.to_dict(),
                "comparison_note": self.adjusted.note}


def fit_models(derivation: Derivation, prepared: Prepared | None = None,
               options: ModelOptions | None = None) -> Models:
    """Fit Kaplan-Meier, Cox (unadjusted and adjusted), competing risks, the interval-censoring
    sensitivity, Table 1, the weighted comparison and the mixed model."""
    options = options or ModelOptions()
    arms = list(derivation.options.arms)
    table = analysis_table(derivation, prepared)
    t0 = time.perf_counter()
    km = fit_km(table, arms, list(options.ticks), alpha=options.alpha)
    cox = fit_cox(table, arms, (), alpha=options.alpha)
    cox_adj = fit_cox(table, arms, options.adjust_for, alpha=options.alpha)
    competing = fit_competing(table, arms, options.alpha)
    interval = fit_interval(table, derivation, arms)
    t1 = time.perf_counter()
    tab1 = table1(table, arms)
    adjusted = fit_adjusted(table, arms, options.adjust_for, options.trim)
    t2 = time.perf_counter()
    mixed = fit_mixed(derivation.trajectories, arms, options.mixed, table)
    t3 = time.perf_counter()
    return Models(arms, km, cox, cox_adj, competing, interval, mixed, tab1, adjusted,
                  {"survival": t1 - t0, "adjusted": t2 - t1, "mixed_model": t3 - t2})
