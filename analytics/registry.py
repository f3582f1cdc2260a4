"""One registry of analyses. ``fit_models``, the dashboard's cached runner, the meeting pack,
``results.json`` and the CLI all iterate over it, so a new model is one :class:`Entry` here
(plus its statistics and figure module), not an edit in each of those places.

>>> from analytics.registry import entries
>>> [e.name for e in entries()][:3]
['cohort', 'table1', 'km']

Each entry says:

- ``name`` and ``title``; ``fit(ctx)``: the analysis on a :class:`FitContext`, returning a
  result that follows :mod:`analytics.protocol`;
- ``results_key``: where its ``to_dict()`` goes in results.json (``("time_to_response",
  "cox")``; empty: nowhere), or ``place`` for anything else;
- ``tables``/``figures``: the pack's names of the result's tables and figures (a name not
  listed becomes ``<entry>_<table>``);
- ``section``: the report section it belongs to; ``methods``: its sentence in the report's
  methods; ``notes``: lines shown under it (report, dashboard); ``cli``: lines ``analyze``
  prints; ``stage``: its timing bucket in ``timings_s``;
- ``whole_export``: it describes care in the whole export, so the cohort filters do not apply
  (quality indicators).
- ``local``: fitted in the calling process even when the others are fitted on several cores
  (:mod:`analytics.parallel`), because its result holds the inputs (the cohort overview).
- ``cost`` and ``memory``: the order of fitting. On several processes the costliest start first
  (``cost``: seconds at 10,000 patients); on one process, the largest intermediates first
  (``memory``: MB the fit adds at 100,000 patients, ``benchmarks/bench_memory.py``), so that they
  come while few results are held. Neither changes a result.
- ``visits``: the columns of the prepared visits it reads, itself or through the analysis table
  (:data:`TABLE_VISIT_COLUMNS`); ``analyze`` on the command line deletes the columns no analysis
  reads before fitting (:func:`visit_columns`). None (the default): it may read any, and then
  none is deleted.

Suppression rules live with the tables (:class:`~analytics.protocol.TableSpec`) and are applied
once by :mod:`analytics.display.suppression`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .heap import trim
from .protocol import FigureSpec, TableSpec, ci_label, tag

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .lines.derive import Derivation
    from .models import ModelOptions
    from .ingest.validate import Prepared

__all__ = ["Entry", "FitContext", "entries", "entry", "figure_names", "fit_entry", "place", "register",
           "table_names", "tables_of", "figures_of", "unregister", "visit_columns"]


@dataclass(frozen=True)
class FitContext:
    """What every analysis is fitted on: the prepared export, the (filtered) derivation, the
    whole-export derivation and the model options of the analysis spec."""

    prepared: "Prepared"
    derivation: "Derivation"
    full: "Derivation"
    options: "ModelOptions"

    @cached_property
    def table(self) -> "pd.DataFrame":
        from .lines.analysis_table import analysis_table

        return analysis_table(self.derivation, self.prepared)

    @property
    def arms(self) -> list[str]:
        return list(self.derivation.options.arms)

    @property
    def alpha(self) -> float:
        return self.options.alpha

    @cached_property
    def lines_by_arm(self) -> dict[str, int]:
        t = self.table
        return {a: int((t["arm"] == a).sum()) for a in self.arms}


def _to_dict(result) -> dict:
    return result.to_dict()


@dataclass(frozen=True)
class Entry:
    name: str
    title: str
    fit: Callable[[FitContext], Any]
    results_key: tuple[str, ...] = ()
    to_results: Callable[[Any], dict] = _to_dict
    place: Callable[[dict, Any], None] | None = None
    tables: dict[str, str] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    section: str = ""
    methods: Callable[[Any, FitContext], str] | None = None
    notes: Callable[[Any], list[str]] | None = None
    cli: Callable[[Any], list[str]] | None = None
    stage: str = "survival"
    whole_export: bool = False
    local: bool = False  # fitted in the calling process even with workers > 1 (its result holds the inputs)
    cost: float = 1.0  # relative time to fit (10,000 patients): on several processes the costliest start first
    # MB the fit adds while it runs (100,000 patients, bench_memory.py): on one process the largest first
    memory: float = 0.0
    # The columns of ctx.prepared.visits it reads, itself or through ctx.table (TABLE_VISIT_COLUMNS);
    # None: any. The command line deletes the columns no analysis reads before fitting (visit_columns).
    visits: tuple[str, ...] | None = None

    @property
    def heading(self) -> str:
        return self.section or self.title


_REGISTRY: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    """Add an analysis (or replace the one of the same name). Returns the entry."""
    if not entry.name.isidentifier():
        raise ValueError(f"an analysis name must be an identifier, not {entry.name!r}")
    _REGISTRY[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def visit_columns(names: Iterable[str] | None = None) -> frozenset[str] | None:
    """The visit columns the analyses (all, or ``names``) read after the lines are derived; None
    when one of them does not say (an analysis registered without ``visits``)."""
    wanted = None if names is None else set(names)
    out: set[str] = set()
    for e in entries():
        if wanted is None or e.name in wanted:
            if e.visits is None:
                return None
            out.update(e.visits)
    return frozenset(out)


def entries() -> list[Entry]:
    _builtins()
    return list(_REGISTRY.values())


def entry(name: str) -> Entry:
    _builtins()
    if name not in _REGISTRY:
        raise KeyError(f"no analysis named {name!r}; registered: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def fit_entry(e: Entry, ctx: FitContext):
    """Fit one analysis; its warnings are tagged with its name. BLAS runs on one thread meanwhile
    (threadpoolctl): the fits' matrices are small or bound by memory bandwidth, so more threads
    only cost (the mixed model at 100,000 patients: 9.8 s on one thread, 11.0 s on two), and the
    numbers then do not depend on how many processes fit at once or on the machine's cores."""
    import dataclasses

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        result = e.fit(ctx)
    if getattr(result, "warnings", None) is not None and not isinstance(type(result).__dict__.get("warnings"),
                                                                          property):
        result = dataclasses.replace(result, warnings=tag(result.warnings, e.name))
    return result


@dataclass
class Rendered:
    """An analysis's result as results.json and ``analyze``'s summary use it, computed where it
    was fitted: its section(s) as :func:`place` puts them into an empty document, its call and
    alpha, its warnings and its command-line lines. A :class:`~analytics.parallel.Helper`'s
    processes send these instead of the results, whose classes (and the lifelines and
    statsmodels objects they hold) would make the receiving process import the modelling
    libraries only to unpickle them: about 1 s of one core while the others fit.
    :meth:`Models.sections` and ``analyze``'s summary take either."""

    name: str
    section: Any  # to_results' output for results_key; with a custom place, the document it writes
    call: dict | None
    alpha: float | None
    warnings: list
    cli: list[str] | None

    @classmethod
    def of(cls, e: Entry, result) -> "Rendered":
        if e.place is not None:
            section: Any = {}
            e.place(section, result)
        else:
            section = e.to_results(result) if e.results_key else None
        call = getattr(result, "call", None)
        return cls(e.name, section, call.to_dict() if call is not None else None, getattr(result, "alpha", None),
                   list(getattr(result, "warnings", None) or []), list(e.cli(result)) if e.cli is not None else None)

    def place(self, doc: dict, e: Entry) -> None:
        """What :func:`place` does with the result: a custom ``place``'s document (the built-in
        one assigns top-level keys) or the section at ``results_key``, merged in the same way."""
        if e.place is not None:
            doc.update(self.section)
        elif e.results_key:
            _put(doc, e.results_key, self.section)


@dataclass
class _Fit:
    """Fit one analysis by name, with progress: what each process of a parallel fit runs (a
    class, not a closure, so that it pickles for a :class:`~analytics.parallel.Helper`).
    ``render``: return its :class:`Rendered` form instead of the result."""

    ctx: FitContext
    progress: Callable[[str], None] | None = None
    render: bool = False

    def __call__(self, name: str):
        e = entry(name)
        if self.progress:
            self.progress(e.title)
        result = fit_entry(e, self.ctx)
        if self.render:
            result = Rendered.of(e, result)  # the result's frames are let go here
        trim()  # its work arrays, back to the system before the next fit, in whichever process fitted it
        return result


def fit_all(ctx: FitContext, names: Iterable[str] | None = None,
            progress: Callable[[str], None] | None = None,
            workers: int | None = 1, helper=None,
            meanwhile: Callable[[], None] | None = None,
            render: bool = False) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit the analyses (all, or ``names``); returns results in registry order and timings by
    stage (each analysis's own seconds, summed). ``workers`` > 1: on that many processes at once
    (:mod:`analytics.parallel`; same results), except entries marked ``local``, the costliest
    first; None: chosen from the cores and the size of the export
    (:func:`~analytics.parallel.usable_workers`). ``helper``: a
    :class:`~analytics.parallel.Helper` started before the data were read, which fits on its
    processes (closed if not used); the results then come back as :class:`Rendered` (what
    results.json and ``analyze``'s summary need), except the ``local`` ones. ``meanwhile``: work
    of the caller's that does not need the results (writing the line tables), run while the other
    processes fit, or first. ``render``: every analysis but the ``local`` ones comes back
    :class:`Rendered` however it is fitted, rendered as soon as it is fitted so that its result's
    frames are let go before the next (a scheme's line table is 60 MB at 100,000 patients)."""
    if workers != 1:
        from .parallel import usable_workers

        workers = usable_workers(workers, len(ctx.prepared.visits))
    wanted = None if names is None else set(names)
    todo = [e for e in entries() if wanted is None or e.name in wanted]
    results, timings = {}, {}
    fit = _Fit(ctx, progress)
    kept = _Fit(ctx, progress, render=render)  # the others: rendered when asked, or when a helper fits (below)

    def timed(e: Entry):
        t0 = time.perf_counter()
        out = (fit if e.local else kept)(e.name)  # which trims the heap after the fit (see analytics.heap)
        return out, time.perf_counter() - t0

    shared = sorted((e for e in todo if not e.local), key=lambda e: -e.cost)
    parallel = workers > 1 and bool(shared)
    if meanwhile is not None and not parallel:
        meanwhile()
        trim()
    # On one process, those with the largest intermediates first (the mixed model's, the quality
    # indicators', the scheme's): they then come while few results are held, which lowers the peak
    # memory (100,000 patients: the largest stage's peak 1.37 -> 1.28 GB ordered by cost, -> 1.22 GB
    # ordered by memory, bench_memory.py). Results are returned in registry order.
    fitted = {e.name: timed(e) for e in sorted(todo, key=lambda e: (not e.local, -e.memory, -e.cost))
              if e.local or not parallel}
    if parallel:
        from .parallel import AUTO_MAX_VISITS, fit_parallel, import_package

        if helper is not None and (any(e is not _BUILTIN.get(e.name) for e in shared)
                                   or len(ctx.prepared.visits) > AUTO_MAX_VISITS):
            # an analysis registered after the helper was forked would be unknown to it; a large
            # export is shared with forked children rather than sent to the helper as a copy
            helper.close()
            helper = None
        ctx.table  # computed once, before the helper gets the data or the children are forked, and shared
        if helper is not None:
            # the helper's processes send the results rendered (Rendered), so that this process,
            # which only writes them, does not import the modelling libraries meanwhile
            kept = _Fit(ctx, progress, render=True)
        done = fit_parallel([e.name for e in shared], kept, workers, helper=helper, meanwhile=meanwhile,
                            # once, before this process forks, rather than once in each child
                            prepare=lambda: import_package(f"{__package__}.stats"))
        fitted |= {e.name: r for e, r in zip(shared, done)}
    elif helper is not None:
        helper.close()
    for e in todo:
        results[e.name], seconds = fitted[e.name]
        timings[e.stage] = timings.get(e.stage, 0.0) + seconds
    return results, timings


def _global(e: Entry, local: str, mapping: dict[str, str]) -> str:
    return mapping.get(local, f"{e.name}_{local}")


def tables_of(e: Entry, result) -> dict[str, TableSpec]:
    """The result's tables under their pack names."""
    return {_global(e, k, e.tables): v for k, v in result.tables().items()}


def figures_of(e: Entry, result) -> dict[str, FigureSpec]:
    """The result's figures under their pack names."""
    return {_global(e, k, e.figures): v for k, v in result.figures().items()}


def table_names() -> tuple[str, ...]:
    """Every table name a pack can hold (``[pack] tables``)."""
    return tuple(n for e in entries() for n in (e.tables.values() or ()))


def figure_names() -> tuple[str, ...]:
    """Every figure name a pack can hold (``[pack] figures``)."""
    return tuple(n for e in entries() for n in (e.figures.values() or ()))


def place(doc: dict, e: Entry, result) -> None:
    """Put the result's section into the results.json document ``doc``."""
    if e.place is not None:
        e.place(doc, result)
    elif e.results_key:
        _put(doc, e.results_key, e.to_results(result))


def _put(doc: dict, path: tuple[str, ...], section) -> None:
    """A section at ``path`` in the document: merged into a section already there (the Cox
    models go into time_to_response), otherwise set."""
    target = doc
    for key in path[:-1]:
        target = target.setdefault(key, {})
    last = path[-1]
    if isinstance(target.get(last), dict) and isinstance(section, dict):
        target[last].update(section)
    else:
        target[last] = section


# ------------------------------------------------------------------ the built-in analyses
def _fmt(x, spec=".1f") -> str:
    return "not reached" if x is None else format(x, spec)


def _km_results(km) -> dict:
    d = km.to_dict()
    return {"time_unit": "weeks", "alpha": km.alpha, "arms": d["arms"],
            "logrank": {k: d["logrank"][k] for k in ("statistic", "df", "p")},
            "logrank_pairwise": d["logrank_pairwise"], "pairwise_adjustment": "holm",
            "risk_table": d["risk_table"], "warnings": d["warnings"]}


def _km_cli(km) -> list[str]:
    d = km.to_dict()
    out = [f"Time to response (Kaplan-Meier median, weeks; {ci_label(km.alpha)}):"]
    for arm, a in d["arms"].items():
        lo, hi = a["median_ci"]
        out.append(f"  {arm:5s} {a['lines']:4d} lines {a['events']:4d} responses  median {_fmt(a['median'])} "
                   f"({_fmt(lo)} to {_fmt(hi)})")
    lr = d["logrank"]
    if lr["statistic"] is not None:
        from .display.tables import p_text

        p = p_text(lr["p"])
        out.append(f"  log-rank chi-square {lr['statistic']:.2f}, df {lr['df']}, p {p if p.startswith('<') else '= ' + p}")
    return out


def _cox_cli(label: str):
    def lines(cox) -> list[str]:
        d = cox.to_dict()
        hrs = ", ".join(f"{arm} {h['hr']:.2f} ({h['ci'][0]:.2f}-{h['ci'][1]:.2f})"
                        for arm, h in d["hazard_ratios"].items() if h["hr"] is not None)
        return [f"  Cox {label}, vs {d['reference_arm']} ({ci_label(cox.alpha)}): {hrs}"] if hrs else []
    return lines


def _mixed_cli(m) -> list[str]:
    if not m.converged:
        return ["Mixed model: not fitted (see the warnings in results.json)"]
    d = m.to_dict()
    slopes = ", ".join(f"{arm} {s['per_12_weeks']:+.1f}" for arm, s in d["slopes_per_week"].items()
                       if s["estimate"] is not None)
    who = f"{d['n_groups']} lines of {d['n_patients']} patients" if m.nested else f"{d['n_groups']} lines"
    return [f"Mixed model ({d['n_obs']} visits, {who}; {m.random_text()}): CDASI change per 12 weeks: {slopes}"
            + (f" [{d['fallback']}]" if d["fallback"] else "")]


def _place_adjusted(doc: dict, adj) -> None:
    doc["adjusted_comparison"] = adj.to_dict()
    doc["comparison_note"] = adj.note


def _cox_methods(cox, ctx) -> str:
    adj = ", ".join(cox.covariates) or "nothing"
    return (f"Cox proportional-hazards model adjusted for {adj}, with Efron ties and robust (sandwich) standard "
            f"errors clustered by patient, {ci_label(cox.alpha)}s; proportional hazards checked with scaled "
            "Schoenfeld residuals.")


def _mixed_notes(m) -> list[str]:
    out = []
    if m.converged and m.nested:
        own = "starting level and rate of change" if m.random_effects.get("patient") == "~weeks" else "starting level"
        out.append(f"Lines nested in patients: each patient has a random {own}, and each of the patient's lines its "
                   "own on top, so arm contrasts that rest on the same patients' lines are not counted as independent "
                   "evidence.")
    if m.converged:
        out.append(m.variance_text())
        if m.df_method.startswith("Satterthwaite"):
            out.append("Intervals and p-values are t-based, on Satterthwaite degrees of freedom (the df columns).")
    if m.fallback:
        out.append(f"Fallback: {m.fallback}")
    return out


def _mixed_methods(m, ctx) -> str:
    inference = (f"t-based {ci_label(m.alpha)}s with Satterthwaite degrees of freedom (as lmerTest)"
                 if m.df_method.startswith("Satterthwaite") else f"Wald {ci_label(m.alpha)}s")
    return (f"Linear mixed model {m.model_formula if m.converged else m.formula} ({m.random_text()}), REML, on the "
            f"first {m.spec.horizon_weeks:g} weeks of each line, {inference}"
            + (f"; fallback: {m.fallback}" if m.fallback else "") + ".")


def _scheme_cli(r) -> list[str]:
    out = [f"Stepwise scheme ({r.scheme.name}), included lines per step:"]
    for row in r.steps.itertuples():
        pct = "" if row.response_pct is None or row.response_pct != row.response_pct else f" ({row.response_pct:.0f}%)"
        out.append(f"  {row.step}. {row.name:<34} {row.lines:6d} lines {row.responses:6d} responses{pct}")
    if len(r.outside):
        out.append("  outside the scheme: " + ", ".join(f"{a} {n}" for a, n in zip(r.outside["agent"], r.outside["lines"])))
    return out


def _scheme_notes(r) -> list[str]:
    from .stats.scheme import PUBLISHED_NOTE, REFRACTORY_CAVEAT, published_series

    published = "; ".join(f"{a}: {text} ({source})" for a, _, _, _, text, source in published_series(r.alpha))
    return [r.scheme.describe() + ".", REFRACTORY_CAVEAT,
            f"Published series drawn beside the refractory lines, not this cohort: {published}. {PUBLISHED_NOTE}"]


def _scheme_methods(r, ctx) -> str:
    s = r.scheme
    return (f"Each line took the step of its agent in the department's scheme ({len(s.steps)} steps); per step, "
            f"responses with Wilson {ci_label(r.alpha)}s and Kaplan-Meier median time to response. Refractory lines "
            "(an earlier included line ended without a response) compared by agent and in a Cox model adjusted as "
            f"above. Adherence: lines judged at {s.assess_weeks:g} weeks (a scored visit within "
            f"{s.assess_window_weeks:g} weeks), escalation within {s.escalate_weeks:g} weeks of a failed assessment, "
            "steps skipped.")


# The visit columns read after derivation (Entry.visits): the analysis table's patient
# characteristics (lines/analysis_table.py), and the quality indicators' visits, scores and dates
# (stats/quality.py). A test fits every analysis on visits cut to these and compares.
TABLE_VISIT_COLUMNS = ("patient_id", "sex", "age_at_onset", "antibody", "ild", "malignancy")
QUALITY_VISIT_COLUMNS = ("patient_id", "row", "day", "visit_date", "cdasi_activity", "antibody",
                         "malignancy_screening_date", "pft_date", "hrct_date", "antibody_panel_date")


def _builtins() -> None:
    if _builtins.done:
        return
    _builtins.done = True
    builtin = [
        Entry("cohort", "Cohort and attrition",
              lambda ctx: _fit("stats.overview", "cohort_overview", ctx.derivation, ctx.prepared, alpha=ctx.alpha),
              tables={"attrition": "attrition", "validation_report": "validation_report", "lines": "lines",
                      "trajectories": "trajectories"},
              figures={"trajectories": "trajectories", "sequences": "sequences", "swimmer": "swimmer"},
              stage="overview", local=True, visits=()),
        Entry("table1", "Table 1: characteristics by arm", lambda ctx: _fit("stats.table1", "table1", ctx.table, ctx.arms, alpha=ctx.alpha),
              results_key=("table1",), tables={"table": "table1"}, stage="adjusted", cost=0.04, memory=89,
              visits=TABLE_VISIT_COLUMNS,
              notes=lambda r: ["SMD: largest absolute pairwise standardised mean difference between arms."]),
        Entry("km", "Time to response (Kaplan-Meier)",
              lambda ctx: _fit("stats.survival", "fit_km", ctx.table, ctx.arms, list(ctx.options.ticks), alpha=ctx.alpha),
              results_key=("time_to_response",), to_results=_km_results,
              tables={"medians": "km_medians", "risk_table": "km_risk_table", "pairwise": "logrank_pairwise"},
              figures={"curves": "km"}, section="Time to response", cli=_km_cli, cost=0.13, memory=125,
              visits=TABLE_VISIT_COLUMNS,
              methods=lambda r, ctx: (f"Kaplan-Meier estimates with {ci_label(r.alpha)}s (log-log); log-rank "
                                      "tests across arms and pairwise with Holm correction.")),
        Entry("cox", "Cox model, unadjusted", lambda ctx: _fit("stats.cox", "fit_cox", ctx.table, ctx.arms, (), alpha=ctx.alpha),
              results_key=("time_to_response", "cox"), tables={"hazard_ratios": "cox_unadjusted"},
              figures={"forest": "cox_unadjusted"}, section="Cox model", cli=_cox_cli("unadjusted"), cost=0.14, memory=132,
              visits=TABLE_VISIT_COLUMNS,
              notes=lambda r: [f"Unadjusted model. Proportional hazards: {r.ph_text}"], methods=_cox_methods),
        Entry("cox_adjusted", "Cox model, adjusted",
              lambda ctx: _fit("stats.cox", "fit_cox", ctx.table, ctx.arms, tuple(ctx.options.adjust_for), alpha=ctx.alpha),
              results_key=("time_to_response", "cox_adjusted"), tables={"hazard_ratios": "cox_adjusted"},
              figures={"forest": "cox_adjusted"}, section="Cox model", cli=_cox_cli("adjusted"), cost=0.19, memory=182,
              visits=TABLE_VISIT_COLUMNS,
              notes=lambda r: [f"Adjusted model. Proportional hazards: {r.ph_text}"], methods=_cox_methods),
        Entry("competing", "Competing risks",
              lambda ctx: _fit("stats.competing", "fit_competing", ctx.table, ctx.arms, alpha=ctx.alpha),
              results_key=("competing_risks",), tables={"summary": "competing_risks"},
              figures={"curves": "competing_risks"}, cost=0.02, memory=11,
              visits=TABLE_VISIT_COLUMNS,
              methods=lambda r, ctx: ("Competing risks (stopping for inefficacy or an adverse event before response) "
                                      f"by the Aalen-Johansen estimator, {ci_label(r.alpha)}s (log-log).")),
        Entry("interval", "Interval-censoring sensitivity",
              lambda ctx: _fit("stats.interval", "fit_interval", ctx.table, ctx.derivation, ctx.arms, alpha=ctx.alpha),
              results_key=("interval_censoring",), tables={"summary": "interval_censoring"},
              figures={"medians": "interval_censoring"}, cost=1.15, memory=251,
              visits=TABLE_VISIT_COLUMNS,
              notes=lambda r: ["Time ratios below 1: faster response than the reference arm (Weibull AFT)."],
              methods=lambda r, ctx: ("Interval-censoring sensitivity: Turnbull NPMLE medians and Weibull AFT time "
                                      f"ratios with {ci_label(r.alpha)}s, interval- against right-censored.")),
        Entry("mixed", "Mixed model",
              lambda ctx: _fit("stats.mixed", "fit_mixed", ctx.derivation.trajectories, ctx.arms, ctx.options.mixed,
                               ctx.table, alpha=ctx.alpha),
              results_key=("mixed_model",), tables={"fixed_effects": "mixed_fixed_effects", "slopes": "mixed_slopes",
                                                    "variance": "mixed_variance"},
              figures={"trajectories": "mixed_model", "diagnostics": "mixed_model_diagnostics"},
              notes=_mixed_notes, cli=_mixed_cli,
              methods=_mixed_methods, stage="mixed_model", cost=0.8, memory=459,
              visits=TABLE_VISIT_COLUMNS),
        Entry("adjusted", "Adjusted comparison (weighted)",
              lambda ctx: _fit("stats.adjusted", "fit_adjusted", ctx.table, ctx.arms, tuple(ctx.options.adjust_for),
                               tuple(ctx.options.trim), alpha=ctx.alpha),
              place=_place_adjusted, tables={"balance": "balance", "cox": "cox_weighted"},
              figures={"balance": "balance", "km": "km_weighted"}, notes=lambda r: [r.note], stage="adjusted", cost=0.27, memory=239,
              visits=TABLE_VISIT_COLUMNS,
              methods=lambda r, ctx: ("Adjusted comparison: stabilised inverse-probability-of-treatment weights from "
                                      "a multinomial propensity model on the common support, truncated at the "
                                      f"{r.trim[0]:.0%} and {r.trim[1]:.0%} percentiles.")),
        Entry("scheme", "Stepwise scheme",
              lambda ctx: _fit("stats.scheme", "fit_scheme", ctx.derivation, ctx.full, ctx.prepared,
                               scheme=ctx.options.scheme, adjust_for=tuple(ctx.options.adjust_for), alpha=ctx.alpha,
                               table=ctx.table),
              results_key=("scheme",),
              tables={"steps": "scheme_steps", "outside": "scheme_outside", "refractory": "scheme_refractory",
                      "refractory_cox": "scheme_refractory_cox", "adherence": "scheme_adherence",
                      "skipped": "scheme_skipped", "not_escalated": "scheme_not_escalated"},
              figures={"ladder": "scheme_ladder", "paths": "scheme_paths", "refractory": "scheme_refractory",
                       "refractory_cox": "scheme_refractory_cox"},
              section="Stepwise scheme", cli=_scheme_cli, notes=_scheme_notes, methods=_scheme_methods,
              stage="scheme", cost=0.7, memory=310,
              visits=TABLE_VISIT_COLUMNS),
        Entry("quality", "Quality indicators",
              lambda ctx: _fit("stats.quality", "compute_quality", ctx.prepared, ctx.full, ctx.options.period,
                               alpha=ctx.alpha, targets=ctx.options.targets, better=ctx.options.better),
              results_key=("quality",), tables={"indicators": "quality_indicators", "by_period": "quality_by_period",
                                                **{f"failing_{k}": f"quality_{k}_failing"
                                                   for k in QUALITY_INDICATOR_KEYS}},
              figures={key: f"quality_{key}" for key in QUALITY_INDICATOR_KEYS},
              notes=lambda q: ["The cohort filters do not apply: the indicators describe care in the whole export.",
                               *q.notes], whole_export=True, stage="quality", cost=0.33, memory=323,
              visits=QUALITY_VISIT_COLUMNS),
    ]
    for e in builtin:
        _REGISTRY.setdefault(e.name, e)
        _BUILTIN[e.name] = e
    # keep the built-ins first, in this order, before anything registered earlier
    extra = {k: v for k, v in _REGISTRY.items() if k not in {e.name for e in builtin}}
    ordered = {e.name: _REGISTRY[e.name] for e in builtin}
    _REGISTRY.clear()
    _REGISTRY.update(ordered | extra)


_builtins.done = False
_BUILTIN: dict[str, Entry] = {}


def _fit(module: str, function: str, *args, **kwargs):
    import importlib

    return getattr(importlib.import_module(f".{module}", __package__), function)(*args, **kwargs)


# The quality indicators' keys (stats/quality.py INDICATORS, kept equal by a test), here so that
# listing the analyses does not import pandas.
QUALITY_INDICATOR_KEYS = ("cdasi_documented", "assessed_by_12w", "no_mcid_by_12w", "escalated_after_no_mcid",
                          "median_visit_interval", "lost_to_follow_up", "cancer_screening_high_risk",
                          "cancer_screening_standard_risk", "ild_screening", "ild_screening_mda5",
                          "antibody_panel_at_baseline")
