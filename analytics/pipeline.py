"""Load, validate, derive and write: the one path the CLI, the dashboard and a notebook share.

>>> from analytics.pipeline import load, analyze
>>> prepared, timings = load("sample_data/visits.csv", therapies="sample_data/therapies.csv")
>>> result = analyze(prepared)                      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .lines.derive import EXCLUSION_REASONS, Derivation, derive
from .display.export import write_csv, write_json
from .ingest.io import DATE_FORMATS, ColumnMapping, load_mapping, mapping_from_bytes, read_bytes, read_table
from .lines.cohort import CohortFilter
from .models import ModelOptions, Models, fit_models
from .errors import OptionError
from .heap import trim
from .protocol import AnalysisWarning
from .lines.options import DeriveOptions
from .ingest.validate import Prepared, prepare

__all__ = ["load", "load_bytes", "analyze", "Analysis", "write_outputs", "write_tables",
           "release_unread_visit_columns"]


def load(visits: str | Path, therapies: str | Path | None = None,
         mapping: str | Path | ColumnMapping | None = None, date_format: str | None = None) -> tuple[Prepared, dict]:
    """Read and validate the export. Returns the prepared data (with its report) and timings.
    ``date_format`` ("auto", "ymd", "dmy", "mdy") overrides the mapping file's."""
    t0 = time.perf_counter()
    m = mapping if isinstance(mapping, ColumnMapping) else load_mapping(mapping)
    if date_format is not None:
        if date_format not in DATE_FORMATS:
            raise OptionError(f"date format {date_format!r}: use one of {', '.join(DATE_FORMATS)}")
        m = dataclasses.replace(m, date_format=date_format)
    raw_v = read_table(visits, "visits", m)
    raw_t = read_table(therapies, "therapies", m) if therapies is not None else None
    t1 = time.perf_counter()
    prepared = prepare(raw_v, raw_t, m)
    del raw_v, raw_t
    trim()  # the raw text columns and validation's temporaries: back to the system before the lines
    if m.source:
        prepared.sources["mapping"] = {"name": Path(m.source).name}
    t2 = time.perf_counter()
    return prepared, {"load": t1 - t0, "validate": t2 - t1}


def load_bytes(visits: tuple[bytes, str], therapies: tuple[bytes, str] | None = None,
               mapping: tuple[bytes, str] | None = None) -> tuple[Prepared, dict]:
    """:func:`load` for uploads: each file as (bytes, file name)."""
    t0 = time.perf_counter()
    m = mapping_from_bytes(*mapping) if mapping is not None else ColumnMapping()
    raw_v = read_bytes(visits[0], visits[1], "visits", m)
    raw_t = read_bytes(therapies[0], therapies[1], "therapies", m) if therapies is not None else None
    t1 = time.perf_counter()
    prepared = prepare(raw_v, raw_t, m)
    del raw_v, raw_t
    trim()
    if m.source:
        prepared.sources["mapping"] = {"name": m.source}
    return prepared, {"load": t1 - t0, "validate": time.perf_counter() - t1}


@dataclass
class Analysis:
    """One analysis: the prepared export, the derivation of the whole export (``full``), the
    derivation of the cohort (``derivation``: ``full`` with the cohort filters applied) and
    the fitted models."""

    prepared: Prepared
    derivation: Derivation
    timings_s: dict = field(default_factory=dict)
    models: Models | None = None
    full: Derivation | None = None
    cohort: CohortFilter | None = None
    model_options: ModelOptions = field(default_factory=ModelOptions)
    notes: list[AnalysisWarning] = field(default_factory=list)  # about the analysis itself (the spec's data)
    pack: Any = None  # the spec's [pack] choices, when the analysis came from a spec
    _quality: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.full is None:
            self.full = self.derivation

    @property
    def period(self) -> str:
        return self.model_options.period

    def spec(self, pack=None):
        """The resolved :class:`~analytics.spec.AnalysisSpec` of this analysis, for this export
        (``[data] sha256`` is the visits file's); ``pack``: the pack's choices, if any."""
        from .spec import AnalysisSpec, PackChoices

        return AnalysisSpec(self.derivation.options, self.cohort or CohortFilter(), self.model_options,
                            pack or self.pack or PackChoices(), self.prepared.sources["visits"]["sha256"])

    def quality(self):
        """The quality indicators (:mod:`analytics.stats.quality`) of the whole export: the cohort
        filters do not apply, because the indicators describe care."""
        if self.models is not None and "quality" in self.models:
            return self.models["quality"]
        from .stats.quality import compute_quality

        key = (self.period, id(self.full))
        if key not in self._quality:
            self._quality[key] = compute_quality(self.prepared, self.full, self.period)
        return self._quality[key]

    def results(self) -> dict:
        """The results.json document (contract.md section 3)."""
        p, d, o = self.prepared, self.derivation, self.derivation.options
        n_visits = len(p.visits)
        stats = self.models.sections() if self.models is not None else {}
        model_warnings = list(self.notes) + (self.models.warning_items if self.models is not None else [])
        data_warnings = [AnalysisWarning(f.message, "validation", f.rule) for f in p.report.warnings]
        if "quality" not in stats:
            stats["quality"] = self.quality().to_dict()
        return {
            "tool": {"name": "cdasi-outcomes", "version": __version__},
            "input": {"sha256": p.sources["visits"]["sha256"], "file": p.sources["visits"]["name"],
                      "patients": p.counts.get("patients", 0), "visits": n_visits,
                      "rows_read": p.counts.get("rows_read", 0), "time_basis": p.time_basis,
                      "sources": p.sources},
            "definitions": {"response": str(o.response), "response_text": o.response.describe(),
                            "confirm": o.confirm, "baseline_window_days": list(o.baseline_window_days),
                            "arms": list(o.arms), "episode_source": d.episode_source,
                            "exclusion_reasons": list(EXCLUSION_REASONS), "alpha": self.model_options.alpha},
            "spec": self.spec().to_dict(),
            "cohort": {"filters": (self.cohort or CohortFilter()).describe(),
                       "lines_in_export": int(len(self.full.lines)), "lines_in_cohort": int(len(d.lines))},
            "lines": d.to_dict(),
            "attrition": d.attrition.to_dict(orient="records"),
            **stats,
            "timings_s": self.timings_s,
            "warnings": [f"[{w.category}] {w}" for w in data_warnings] + [f"[{w.source}] {w}" for w in model_warnings],
            "warnings_detail": [w.to_dict() for w in data_warnings + model_warnings],
            "validation": {"errors": len(p.report.errors), "warnings": len(p.report.warnings)},
        }


def analyze(prepared: Prepared, options: DeriveOptions | None = None, timings: dict | None = None,
            models: ModelOptions | bool | None = None, cohort: CohortFilter | None = None,
            progress: Callable[[str], None] | None = None, spec=None, workers: int | None = 1,
            helper=None, meanwhile: Callable[[Derivation], None] | None = None,
            lean: bool = False) -> Analysis:
    """Derive lines from validated data, restrict them to ``cohort`` (the dashboard's cohort
    filters), and fit the registered analyses when ``models`` is True or a
    :class:`ModelOptions`. ``spec``: an :class:`~analytics.spec.AnalysisSpec` instead of
    ``options``, ``models`` and ``cohort`` (the models are then fitted). ``workers`` > 1: the
    models are fitted on that many processes (:mod:`analytics.parallel`; None: chosen);
    ``helper``: a :class:`~analytics.parallel.Helper` forked before the data were read, which
    then fits them with its forks (the caller closes it) and sends them back rendered
    (:class:`~analytics.registry.Rendered`: what results.json and the command line need).
    ``meanwhile(derivation)``: the caller's work on the cohort's derivation that does not need
    the models (writing its tables), run while they are fitted. ``lean``: the caller writes
    only results.json, the line tables and the summary (the command line's ``analyze``), so
    less is held while the models are fitted: once the lines are derived, the visit columns no
    analysis reads are deleted from ``prepared.visits`` (:func:`release_unread_visit_columns`),
    and each analysis is kept :class:`~analytics.registry.Rendered` as soon as it is fitted
    (as a helper process sends them). Raises InvalidDataError when the report has errors."""
    prepared.raise_if_invalid()
    notes = []
    if spec is not None:
        options, models, cohort = spec.derive, spec.models, spec.cohort
        warning = spec.data_warning(prepared.sources["visits"]["sha256"])
        notes = [AnalysisWarning(warning, "spec")] if warning else []
    t0 = time.perf_counter()
    full = derive(prepared, options)
    derivation = full
    if cohort is not None and cohort.active:
        from .lines.cohort import apply_filter

        derivation = apply_filter(full, prepared, cohort).derivation
    timings = dict(timings or {})
    timings["derive"] = time.perf_counter() - t0
    model_options = models if isinstance(models, ModelOptions) else ModelOptions()
    fitted = None
    if models:
        if lean:
            release_unread_visit_columns(prepared)
        trim()  # derivation's temporaries (and the deleted columns): each fit starts from what is held
        fitted = fit_models(derivation, prepared, model_options, full=full, progress=progress, workers=workers,
                            helper=helper, meanwhile=meanwhile and (lambda: meanwhile(derivation)), render=lean)
        timings |= fitted.timings_s
    elif meanwhile is not None:
        meanwhile(derivation)
    return Analysis(prepared, derivation, timings, fitted, full, cohort, model_options, notes,
                    spec.pack if spec is not None else None)


def release_unread_visit_columns(prepared: Prepared, names=None) -> list[str]:
    """Delete from ``prepared.visits``, in place, the columns that none of the analyses (all, or
    ``names``) reads once the lines are derived (:func:`analytics.registry.visit_columns`: the
    secondary scores, the therapy text, ...); returns their names. Nothing is deleted when an
    analysis does not say what it reads. The rows, the counts and the report are untouched, so
    results.json is the same; at 100,000 patients this frees about 110 MB before the models are
    fitted."""
    from .registry import visit_columns

    keep = visit_columns(names)
    if keep is None:
        return []
    v = prepared.visits
    gone = [c for c in v.columns if c not in keep]
    for c in gone:
        del v[c]  # a column in a block of its own (as validation builds them) is freed at once
    return gone


def write_tables(derivation: Derivation, out: str | Path) -> dict[str, Path]:
    """Write lines.csv, trajectories.csv and attrition.csv of ``derivation`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return {"lines": write_csv(derivation.lines, out / "lines.csv"),
            "trajectories": write_csv(derivation.trajectories, out / "trajectories.csv"),
            "attrition": write_csv(derivation.attrition, out / "attrition.csv")}


# the name of a staging folder inside --out (with the process id or a random tail): `analyze`'s
# line tables and `report`'s whole pack are written there and moved into place when complete
PARTIAL_PREFIX = ".cdasi-partial-"


def write_outputs(analysis: Analysis, out: str | Path, tables: str | Path | None = None) -> dict[str, Path]:
    """Write results.json, lines.csv, trajectories.csv and attrition.csv into ``out``.
    ``tables``: a folder where :func:`write_tables` already wrote the three CSVs of this
    analysis (while its models were fitted); they are moved into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if tables is None:
        paths = write_tables(analysis.derivation, out)
    else:
        paths = {}
        for name in ("lines", "trajectories", "attrition"):
            paths[name] = out / f"{name}.csv"
            os.replace(Path(tables) / f"{name}.csv", paths[name])
    analysis.timings_s.setdefault("total", sum(v for k, v in analysis.timings_s.items() if k != "total"))
    paths["results"] = write_json(analysis.results(), out / "results.json")
    return paths
