"""Cohort filters shared by every view: which therapy lines are in the analysis.

A :class:`CohortFilter` is a small frozen object; :func:`apply_filter` returns a new
:class:`~analytics.lines.derive.Derivation` holding only the lines that pass (and their
trajectories), so every model and figure downstream sees the same cohort. A filter on a
characteristic drops the lines where it is unknown (said in :meth:`CohortFilter.describe`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .derive import Derivation, _attrition
from ..errors import OptionError
from ..ingest.validate import Prepared

__all__ = ["CohortFilter", "apply_filter", "line_characteristics", "FilteredCohort", "fit_filter", "options_for"]

_YESNO = ("any", "yes", "no")
SEVERITY = ("any", "mild", "moderate-severe")
MILD_MAX = 14  # CDASI activity <= 14 is mild (Anyanwu, Br J Dermatol 2015)


@dataclass(frozen=True)
class CohortFilter:
    """Empty tuples and "any" mean no restriction."""

    arms: tuple[str, ...] = ()
    line_numbers: tuple[int, int] | None = None
    antibodies: tuple[str, ...] = ()
    ild: str = "any"
    malignancy: str = "any"
    sex: tuple[str, ...] = ()
    age: tuple[float, float] | None = None
    severity: str = "any"
    period: tuple[int, int] | None = None  # calendar years of line start (exports with dates)

    def __post_init__(self):
        for name in ("ild", "malignancy"):
            if getattr(self, name) not in _YESNO:
                raise OptionError(f"{name} must be one of {_YESNO}")
        if self.severity not in SEVERITY:
            raise OptionError(f"severity must be one of {SEVERITY}")
        for name in ("line_numbers", "age", "period"):
            v = getattr(self, name)
            if v is not None and (len(v) != 2 or v[0] > v[1]):
                raise OptionError(f"{name} must be (low, high) with low <= high")
        for name in ("arms", "antibodies", "sex"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def active(self) -> bool:
        return self != CohortFilter()

    def describe(self) -> list[str]:
        """The active filters in words, one per item (empty when nothing is filtered)."""
        out = []
        if self.arms:
            out.append("arms: " + ", ".join(self.arms))
        if self.line_numbers:
            out.append(f"line number {self.line_numbers[0]}-{self.line_numbers[1]}")
        if self.antibodies:
            out.append("antibody: " + " or ".join(self.antibodies))
        if self.ild != "any":
            out.append(f"ILD: {self.ild}")
        if self.malignancy != "any":
            out.append(f"malignancy: {self.malignancy}")
        if self.sex:
            out.append("sex: " + ", ".join(self.sex))
        if self.age:
            out.append(f"age at onset {self.age[0]:g}-{self.age[1]:g}")
        if self.severity != "any":
            out.append(f"baseline {self.severity} (CDASI activity {'<=' if self.severity == 'mild' else '>'} "
                       f"{MILD_MAX})")
        if self.period:
            out.append(f"lines started {self.period[0]}-{self.period[1]}")
        return out


def line_characteristics(derivation: Derivation, prepared: Prepared) -> pd.DataFrame:
    """Every derived line (included or not) with the patient characteristics and the start year."""
    lines = derivation.lines[["patient_id", "line_id", "line_number", "arm", "agent", "start_day",
                              "baseline_cdasi", "included"]].copy()
    v = prepared.visits
    for col in ("sex", "age_at_onset", "antibody", "ild", "malignancy"):
        if col in v.columns:
            lines[col] = lines["patient_id"].map(v.groupby("patient_id")[col].first())
    if prepared.anchors is not None:
        start = lines["patient_id"].map(prepared.anchors) + pd.to_timedelta(lines["start_day"], unit="D")
        lines["start_year"] = start.dt.year
    return lines


@dataclass
class FilteredCohort:
    filter: CohortFilter
    derivation: Derivation
    lines_before: int
    lines_after: int

    @property
    def empty(self) -> bool:
        return int(self.derivation.included()["line_id"].nunique()) == 0


def apply_filter(derivation: Derivation, prepared: Prepared, cohort: CohortFilter) -> FilteredCohort:
    """The derivation restricted to the lines that pass ``cohort`` (never modifies its input)."""
    lines = line_characteristics(derivation, prepared)
    keep = pd.Series(True, index=lines.index)
    if cohort.arms:
        keep &= lines["arm"].isin(cohort.arms)
    if cohort.line_numbers:
        lo, hi = cohort.line_numbers
        keep &= lines["line_number"].between(lo, hi)
    if cohort.antibodies and "antibody" in lines:
        ab = lines["antibody"].fillna("unknown").str.split(";")
        keep &= ab.map(lambda xs: any(a in xs for a in cohort.antibodies))
    for flag in ("ild", "malignancy"):
        want = getattr(cohort, flag)
        if want != "any" and flag in lines:
            keep &= lines[flag].astype("boolean").eq(want == "yes").fillna(False).astype(bool)
    if cohort.sex and "sex" in lines:
        keep &= lines["sex"].isin(cohort.sex)
    if cohort.age and "age_at_onset" in lines:
        keep &= lines["age_at_onset"].between(*cohort.age)
    if cohort.severity != "any":
        b = lines["baseline_cdasi"].astype(float)
        keep &= (b <= MILD_MAX) if cohort.severity == "mild" else (b > MILD_MAX)
    if cohort.period and "start_year" in lines:
        keep &= lines["start_year"].between(*cohort.period)
    ids = set(lines.loc[keep, "line_id"])
    d = derivation
    new_lines = d.lines[d.lines["line_id"].isin(ids)].reset_index(drop=True)
    new_traj = d.trajectories[d.trajectories["line_id"].isin(ids)].reset_index(drop=True)
    filtered = Derivation(new_lines, new_traj, d.episodes, _attrition(prepared, new_lines, d.options), d.options,
                          d.episode_source, dict(d.counts, lines_after_filter=len(new_lines)))
    return FilteredCohort(cohort, filtered, len(d.lines), len(new_lines))


def options_for(derivation: Derivation, prepared: Prepared) -> dict:
    """The values each filter can take in this dataset (for widgets)."""
    lines = line_characteristics(derivation, prepared)
    out = {"arms": list(derivation.options.arms),
           "line_numbers": (int(lines["line_number"].min()), int(lines["line_number"].max())) if len(lines) else (1, 1)}
    if "antibody" in lines:
        out["antibodies"] = sorted({a for x in lines["antibody"].fillna("unknown") for a in x.split(";")})
    if "sex" in lines:
        out["sex"] = sorted(lines["sex"].dropna().unique().tolist())
    if "age_at_onset" in lines and lines["age_at_onset"].notna().any():
        out["age"] = (int(np.floor(lines["age_at_onset"].min())), int(np.ceil(lines["age_at_onset"].max())))
    if "start_year" in lines and lines["start_year"].notna().any():
        out["period"] = (int(lines["start_year"].min()), int(lines["start_year"].max()))
    out["ild"] = "ild" in lines
    out["malignancy"] = "malignancy" in lines
    return out


def fit_filter(filt: CohortFilter, options: dict) -> tuple[CohortFilter, list[str]]:
    """The filter as this dataset can apply it (``options``: :func:`options_for`), and a notice
    for every part dropped or narrowed: values the data does not have, columns it lacks (an
    antibody filter on an export without antibodies, calendar years on a visit_day export) and
    ranges beyond the data's. Never a filter shown as active that is not applied."""
    notes: list[str] = []
    changes: dict = {}
    for name, label in (("arms", "arms"), ("antibodies", "antibody"), ("sex", "sex")):
        chosen = getattr(filt, name)
        if not chosen:
            continue
        known = options.get(name)
        if known is None:
            changes[name] = ()
            notes.append(f"the {label} filter ({', '.join(chosen)}) was dropped: this export has no {label} column")
            continue
        kept = tuple(v for v in chosen if v in known)
        if kept != chosen:
            changes[name] = kept
            gone = [v for v in chosen if v not in known]
            notes.append(f"{label} {', '.join(gone)} dropped from the filter: no such lines in this export"
                         + ("" if kept else f" (the {label} filter is off)"))
    for name in ("ild", "malignancy"):
        if getattr(filt, name) != "any" and not options.get(name):
            changes[name] = "any"
            notes.append(f"the {name.upper() if name == 'ild' else name} filter was dropped: this export has no "
                         f"{name} column")
    for name, label, why in (("line_numbers", "line number", ""), ("age", "age at onset", "no age_at_onset column"),
                             ("period", "calendar years", "the export gives days, not dates")):
        chosen = getattr(filt, name)
        if chosen is None:
            continue
        bounds = options.get(name)
        if bounds is None:
            changes[name] = None
            notes.append(f"the {label} filter was dropped: {why or 'no lines'}")
            continue
        lo, hi = max(chosen[0], bounds[0]), min(chosen[1], bounds[1])
        if (lo, hi) != tuple(chosen):
            fitted = None if lo > hi or (lo, hi) == tuple(bounds) else (lo, hi)
            changes[name] = fitted
            notes.append(f"the {label} filter {chosen[0]:g}-{chosen[1]:g} was "
                         + (f"narrowed to {lo:g}-{hi:g}, the range of this export" if fitted else
                            "dropped: this export's range is " + f"{bounds[0]:g}-{bounds[1]:g}"))
    return (dataclasses.replace(filt, **changes) if changes else filt), notes
