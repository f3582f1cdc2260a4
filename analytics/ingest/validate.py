"""Validation and cleaning: from text tables to typed visits and therapy episodes.

:func:`prepare` checks every rule, collects the problems into one
:class:`~analytics.ingest.validation_report.ValidationReport`, and returns the cleaned tables. Rows with an
error are left out of the cleaned tables, but a report with an error stops the analysis
(``Prepared.raise_if_invalid``), so nothing is silently dropped.

Rules (``Finding.rule``):

=========================  ========  ==========================================================
rule                       severity  when
=========================  ========  ==========================================================
empty_file                 error     the file has no header or no data rows
duplicate_column           error     two headers match the same column
missing_column             error     a required column is absent
identifier_column          error     a header looks like names, MRNs, dates of birth, addresses... (8 languages)
identifier_value           error     national numbers with a valid check; emails, phones, SSNs, record numbers in text
identifier_birth_date      error     dates one per patient, decades before the first visit
identifier_person_name     error     capitalised names, one per patient, many distinct
identifier_patient_id      error     patient ids look like record numbers or national ids
patient_id_override        info      the mapping file waived the patient-id rule, with its reason
age_over_89                error     an age over 89 not written as "90+"
missing_patient_id         error     patient_id is blank
missing_visit_time         error     visit_date / visit_day is blank
bad_date                   error     a date cannot be read (YYYY-MM-DD, or dd.mm.yyyy / mm/dd/yyyy)
ambiguous_date             error     day-first or month-first cannot be told: set date_format
bad_day                    error     a day is not an integer
not_numeric                error     a score or dose is not a number
out_of_range               error     a score is outside its range (activity 0-100, damage 0-32...)
duplicate_visit_conflict   error     two rows for the same patient and day disagree
duplicate_visit_merged     warning   two rows for the same patient and day agree: merged into one
varies_within_patient      error     a patient-level column (sex, antibody...) varies within a patient
unknown_value              warning   a sex/antibody/flag/stop_reason value is not recognised
unknown_drug               warning   a drug name is not recognised: it forms no line
no_therapy_information     warning   neither systemic_therapy nor a therapies file: no lines
time_basis_mismatch        error     visits use dates and therapies days, or the other way round
stop_before_start          error     an episode stops before it starts
episode_overlap            error     two episodes of the same agent overlap
episodes_merged            warning   an episode starts the day the previous one of the agent stops
patient_not_in_visits      warning   a therapies row for a patient with no visit: ignored
mapping_unknown_agent      error     the mapping file maps a drug to an unknown agent
both_time_columns          info      visit_date and visit_day both present: visit_date used
systemic_therapy_ignored   info      the therapies file wins over the systemic_therapy column
not_a_line                 info      glucocorticoids and topicals are recognised but never lines
visits_without_activity    info      visits with a blank activity score
=========================  ========  ==========================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .deid import mask_patient_ids, scan_identifiers
from .distinct import distinct, share, shared_factorization
from .drugs import AGENTS, DrugNormaliser, split_therapy
from ..errors import InvalidDataError
from .io import ColumnMapping, RawTable
from .validation_report import ValidationReport
from .schema import (ANTIBODIES, ANTIBODY_ALIASES, BLANK_TOKENS, FLAG_VALUES, PATIENT_LEVEL, SEX_VALUES,
                     STOP_REASON_ALIASES, STOP_REASONS, VISIT_COLUMNS, normalise_header)

__all__ = ["Prepared", "prepare", "RULES"]

RULES = tuple(re.findall(r"^([a-z_0-9]+)\s+(?:error|warning|info)\s", __doc__, flags=re.M))
_NUMERIC = {c.name: c for c in VISIT_COLUMNS if c.kind == "number"}
_EVENT_DATES = tuple(c.name for c in VISIT_COLUMNS if c.kind == "event_date")
_MAX_TOKEN_FINDINGS = 25


@dataclass
class Prepared:
    """Cleaned, typed input. ``visits``: one row per visit, sorted by patient and day, with the
    columns of the schema that were present plus ``day``, ``row`` (spreadsheet row) and
    ``agents`` (tuple of systemic agents at the visit). ``therapies``: episodes from the
    therapies file (patient_id, agent, start_day, stop_day, ongoing, stop_reason, row) or None."""

    visits: pd.DataFrame
    therapies: pd.DataFrame | None
    report: ValidationReport
    time_basis: str = "day"
    anchors: pd.Series | None = None
    counts: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)

    def raise_if_invalid(self) -> None:
        if not self.report.ok:
            raise InvalidDataError(self.report)


# ---------------------------------------------------------------- parsing helpers
def _per_unique(fn):
    """Apply a vectorised parser to each distinct value once and map back (exports repeat values a lot)."""
    def wrapper(s: pd.Series, *args) -> pd.Series:
        codes, uniques = distinct(s)
        parsed = fn(pd.Series(uniques, dtype=object), *args)
        values = parsed.to_numpy()[codes]
        if values.dtype == object:
            # A derived text column (stripped, lower-cased): its distinct values follow from the input's,
            # and the next parser of it (a blank check, numbers) need not factorise it again (80 ms for a
            # column of 1.6 million visits).
            share(values, codes, parsed.to_numpy())
        return pd.Series(values, index=s.index, dtype=parsed.dtype)
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _map_unique(s: pd.Series, fn) -> pd.Series:
    """``s.map(fn)`` with ``fn`` called once per distinct value, not once per row, and its results
    taken by the distinct values' codes, not looked up row by row (an object column)."""
    codes, uniques = distinct(s)
    table = np.empty(len(uniques), dtype=object)
    table[:] = [fn(v) for v in uniques]
    return pd.Series(table[codes], index=s.index, dtype=object)


@_per_unique
def _strip(s: pd.Series) -> pd.Series:
    return s.str.strip()


@_per_unique
def _strip_lower(s: pd.Series) -> pd.Series:
    return s.str.strip().str.lower()


@_per_unique
def _ninety_plus(s: pd.Series) -> pd.Series:
    """Ages written "90+", ">89", "≥90" or ">=90" read as 90 (the de-identified top category)."""
    return s.str.replace(r"^\s*(?:90\s*\+|>\s*89|≥\s*90|>=\s*90)\s*$", "90", regex=True)


@_per_unique
def _is_blank(s: pd.Series) -> pd.Series:
    return s.str.strip().str.lower().isin(BLANK_TOKENS)


@_per_unique
def _to_number(s: pd.Series) -> pd.Series:
    text = s.str.strip().str.replace(r"^([+-]?\d+),(\d+)$", r"\1.\2", regex=True)  # decimal comma
    return pd.to_numeric(text, errors="coerce").astype(float)


# Day-first (dd.mm.yyyy, dd/mm/yyyy, dd-mm-yyyy: European Excel exports) or month-first dates.
_DAY_MONTH = r"^\s*(\d{1,2})[./-](\d{1,2})[./-](\d{4})\s*$"
_DATE_FIX = ("write dates as YYYY-MM-DD (in Excel: Format Cells > Custom > yyyy-mm-dd); day-first dates "
             "(dd.mm.yyyy) are read when a day above 12 shows the order, or with date_format = \"dmy\" in the "
             "mapping file (--date-format dmy)")


@_per_unique
def _to_date(s: pd.Series, order: str = "ymd") -> pd.Series:
    """ISO dates (a time part is ignored), and with ``order`` "dmy" or "mdy" also day-first or
    month-first dates with '.', '/' or '-'."""
    d = pd.to_datetime(s, format="%Y-%m-%d", errors="coerce")
    rest = d.isna() & s.str.match(r"^\d{4}-\d{2}-\d{2}[T ]").fillna(False).astype(bool)
    if rest.any():
        d.loc[rest] = pd.to_datetime(s[rest].str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    if order in ("dmy", "mdy"):
        parts = s.str.extract(_DAY_MONTH)
        other = d.isna() & parts[0].notna()
        if other.any():
            day, month = (parts[0], parts[1]) if order == "dmy" else (parts[1], parts[0])
            iso = parts.loc[other, 2] + "-" + month[other].str.zfill(2) + "-" + day[other].str.zfill(2)
            d.loc[other] = pd.to_datetime(iso, format="%Y-%m-%d", errors="coerce")
    return d


def date_order(tables: list[tuple[RawTable, tuple[str, ...]]], setting: str = "auto") -> str:
    """The order of the export's non-ISO dates: ``setting`` unless "auto"; else "dmy" when some
    first number is above 12 and no second one is, "mdy" the other way round, "ymd" when every
    date is ISO, and "ambiguous" when the values cannot tell (every number at most 12, or both)."""
    if setting != "auto":
        return setting
    first = second = seen = False
    for raw, columns in tables:
        for col in columns:
            if raw is None or col not in raw.data.columns:
                continue
            parts = pd.Series(distinct(raw.data[col])[1], dtype=object).astype(str).str.extract(_DAY_MONTH).dropna()
            if len(parts):
                seen = True
                first |= bool((parts[0].astype(int) > 12).any())
                second |= bool((parts[1].astype(int) > 12).any())
    if not seen:
        return "ymd"
    if first != second:
        return "dmy" if first else "mdy"
    return "ambiguous"


def _dates(raw: RawTable, rep: ValidationReport, col: str, order: str, blank: pd.Series,
           message: str = "{n} value(s) cannot be read as dates, e.g. ") -> tuple[pd.Series, pd.Series]:
    """Parse one date column; report unreadable values (bad_date) and, when the order of day and
    month cannot be told, the day/month dates (ambiguous_date). Returns (dates, unreadable)."""
    text = raw.data[col]
    parsed = _to_date(text, order)
    wrong = parsed.isna() & ~blank
    other = wrong
    if order == "ambiguous":
        shaped = wrong & text.str.match(_DAY_MONTH).fillna(False).astype(bool)
        _row_problem(rep, raw, shaped, "ambiguous_date", col,
                     "{n} date(s) such as " + repr(text[shaped].head(1).tolist()) + " could be day-first or "
                     "month-first, and no value settles it (a day above 12)",
                     'say which in the mapping file: date_format = "dmy" (dd.mm.yyyy) or "mdy" (mm/dd/yyyy); '
                     "or --date-format dmy|mdy on the command line")
        other = wrong & ~shaped
    _row_problem(rep, raw, other, "bad_date", col, message + repr(text[other].head(2).tolist()), _DATE_FIX)
    return parsed, wrong


def _to_day(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    num = _to_number(s)
    ok = num.notna() & np.isfinite(num) & (num == np.round(num)) & (num.abs() < 1e7)
    return num.where(ok), ~ok


# ---------------------------------------------------------------- the visits file
def _check_columns(raw: RawTable, rep: ValidationReport, required: list[tuple[str, ...]]) -> bool:
    for target, headers in raw.duplicate_headers.items():
        rep.add("duplicate_column", "error", f"headers {headers} all match column {target!r}",
                fix="keep one of them (or map the others to other names in the mapping file's [columns])",
                column=target, file=raw.kind)
    ok = True
    for options in required:
        if not any(o in raw.data.columns for o in options):
            ok = False
            alt = " or ".join(repr(o) for o in options)
            rep.add("missing_column", "error", f"required column {alt} is missing "
                    f"(columns found: {', '.join(map(str, raw.data.columns[:15]))})",
                    fix=f"rename the header to {options[0]!r}, or map it in the mapping file: "
                        f'[columns] "Your header" = "{options[0]}"', column=options[0], file=raw.kind)
    return ok


def _row_problem(rep, raw, mask, rule, column, message, fix, severity="error"):
    if mask.any():
        ids = raw.data.loc[mask, "patient_id"].head(20) if "patient_id" in raw.data.columns else []
        rep.add(rule, severity, message.replace("{n}", str(int(mask.sum()))), fix=fix, column=column, file=raw.kind,
                rows=raw.rows(mask), patient_ids=ids)


def _parse_visits(raw: RawTable, rep: ValidationReport,
                  order: str = "ymd") -> tuple[pd.DataFrame, pd.Series, str]:
    d = raw.data
    bad = pd.Series(False, index=d.index)
    out = pd.DataFrame(index=d.index)
    out["row"] = d.index.to_numpy() + 2
    pid = _strip(d["patient_id"])
    blank_pid = pid.eq("") | _is_blank(pid)
    _row_problem(rep, raw, blank_pid, "missing_patient_id", "patient_id", "{n} row(s) have no patient_id",
                 "fill in the patient's de-identified code, or delete the row")
    bad |= blank_pid
    out["patient_id"] = pid

    basis = "date" if "visit_date" in d.columns else "day"
    if "visit_date" in d.columns and "visit_day" in d.columns:
        rep.add("both_time_columns", "info", "both visit_date and visit_day are present; visit_date is used",
                column="visit_date")
    col = "visit_date" if basis == "date" else "visit_day"
    text = d[col]
    blank = _is_blank(text)
    _row_problem(rep, raw, blank & ~blank_pid, "missing_visit_time", col, "{n} visit(s) have no " + col,
                 f"fill in {col} or delete the row")
    if basis == "date":
        parsed, wrong = _dates(raw, rep, col, order, blank)
        out["visit_date"] = parsed
    else:
        parsed, wrong = _to_day(text)
        wrong &= ~blank
        _row_problem(rep, raw, wrong, "bad_day", col,
                     "{n} value(s) are not whole numbers of days, e.g. " + repr(text[wrong].head(1).tolist()),
                     "write visit_day as an integer number of days from the patient's anchor")
        out["day"] = parsed
    bad |= blank | wrong

    for name in _EVENT_DATES:  # optional dates of screenings, for the quality indicators
        if name not in d.columns:
            continue
        parsed_dates, wrong = _dates(raw, rep, name, order, _is_blank(d[name]))
        bad |= wrong
        out[name] = parsed_dates

    for name, c in _NUMERIC.items():
        if name not in d.columns:
            continue
        text = d[name]
        if name == "age_at_onset":
            text = _ninety_plus(text)
        blank = _is_blank(text)
        num = _to_number(text)
        wrong = num.isna() & ~blank
        _row_problem(rep, raw, wrong, "not_numeric", name,
                     "{n} value(s) are not numbers, e.g. " + repr(d[name][wrong].head(3).tolist()),
                     f"write {name} as a number (or leave it blank when not assessed)")
        high = c.high if name != "age_at_onset" else None  # ages over 89: the de-identification guard
        outside = num.notna() & ((num < c.low) | ((num > high) if high is not None else False))
        _row_problem(rep, raw, outside, "out_of_range", name,
                     "{n} value(s) are outside " + c.range_text + ", e.g. " + repr(d[name][outside].head(3).tolist()),
                     f"correct the value (the {name} scale runs {c.range_text})")
        bad |= wrong | outside
        out[name] = num
    return out, bad, basis


def _parse_categories(raw: RawTable, rep: ValidationReport, out: pd.DataFrame) -> None:
    d = raw.data
    if "sex" in d.columns:
        key = _strip_lower(d["sex"])
        blank = _is_blank(key)
        mapped = _map_unique(key, lambda v: SEX_VALUES.get(v, np.nan))
        unknown = mapped.isna() & ~blank
        _row_problem(rep, raw, unknown, "unknown_value", "sex",
                     "{n} sex value(s) are not recognised, e.g. " + repr(d["sex"][unknown].head(3).tolist())
                     + "; they are treated as 'unknown'",
                     "use female, male, other or unknown (F/M accepted)", severity="warning")
        sex = mapped.astype(object)
        sex[unknown] = "unknown"
        out["sex"] = sex
    if "antibody" in d.columns:
        uniq = d["antibody"].unique()
        parsed: dict[str, str | None] = {}
        bad_tokens: dict[str, str] = {}
        for cell in uniq:
            if _is_blank(pd.Series([cell])).iloc[0]:
                parsed[cell] = None
                continue
            tokens = [t for t in re.split(r"[;,/+&]|\band\b", cell) if t.strip()]
            vals = []
            for t in tokens:
                v = ANTIBODY_ALIASES.get(normalise_header(t).removeprefix("anti") or "x",
                                         ANTIBODY_ALIASES.get(normalise_header(t)))
                if v is None:
                    bad_tokens[cell] = t.strip()
                    v = "unknown"
                vals.append(v)
            vals = sorted(set(vals))
            if len(vals) > 1:
                vals = [v for v in vals if v not in ("negative", "unknown")] or vals
            parsed[cell] = ";".join(vals)
        if bad_tokens:
            mask = d["antibody"].isin(bad_tokens)
            _row_problem(rep, raw, mask, "unknown_value", "antibody",
                         "{n} antibody value(s) are not recognised, e.g. " + repr(sorted(set(bad_tokens.values()))[:5])
                         + "; they are treated as 'unknown'",
                         f"use {', '.join(ANTIBODIES[:-1])} or {ANTIBODIES[-1]} (several separated by ';')",
                         severity="warning")
        out["antibody"] = _map_unique(d["antibody"], parsed.get)
    for name in ("ild", "malignancy"):
        if name not in d.columns:
            continue
        key = _strip_lower(d[name])
        blank = _is_blank(key)
        mapped = _map_unique(key, lambda v: FLAG_VALUES.get(v, np.nan))
        unknown = mapped.isna() & ~blank
        _row_problem(rep, raw, unknown, "unknown_value", name,
                     "{n} value(s) are not yes/no, e.g. " + repr(d[name][unknown].head(3).tolist())
                     + "; they are treated as missing", "write yes or no (1/0, true/false)", severity="warning")
        out[name] = mapped.astype("boolean")


def sorted_by_patient_and_day(v: pd.DataFrame) -> bool:
    """Whether the visits are sorted by patient_id and, within a patient, by day."""
    if not v["patient_id"].is_monotonic_increasing:
        return False
    pid, day = v["patient_id"].to_numpy(), v["day"].to_numpy()
    same_patient = pid[1:] == pid[:-1]  # each visit and the one before it
    return bool(np.all(np.diff(day)[same_patient] >= 0))


def first_of_patient(pid: np.ndarray) -> np.ndarray:
    """Per visit of visits sorted by patient: whether it is its patient's first (a run's start)."""
    return np.r_[True, pid[1:] != pid[:-1]] if len(pid) else np.zeros(0, bool)


def order_by_group_and_day(group: np.ndarray, day: np.ndarray) -> np.ndarray:
    """The stable order of rows by an integer group code, then day. Where the days are integers
    and (group, day) fits in one 62-bit key, that key is argsorted (an adaptive sort, fast on rows
    that come in runs of a group: 0.16 s against lexsort's 0.25 s for 1.6 million visits); lexsort
    otherwise."""
    if day.dtype.kind in "iu" and len(day):
        low, base = int(day.min()), int(group.min())
        span = int(day.max()) - low + 1
        if (int(group.max()) - base + 1) * span < 2 ** 62:
            return np.argsort((group.astype(np.int64) - base) * span + (day - low), kind="stable")
    return np.lexsort((day, group))  # lexsort is stable


def sort_by_patient_and_day(v: pd.DataFrame, in_place: bool = False) -> pd.DataFrame:
    """``v`` sorted by patient_id, then day, stably, its index kept; ``v`` itself when it is
    sorted already (a check of one pass, where sorting a million visits takes most of a second).
    ``in_place``: sort ``v`` itself, a column at a time, instead of a sorted copy of it (a frame
    the caller owns: a copy of every column at once is 260 MB at 100,000 patients)."""
    if sorted_by_patient_and_day(v):
        return v
    codes = pd.factorize(v["patient_id"].to_numpy(), sort=True)[0]
    order = order_by_group_and_day(codes, v["day"].to_numpy())
    if not in_place:
        return v.take(order)
    for i in range(v.shape[1]):
        v.isetitem(i, v.iloc[:, i]._values.take(order))  # ndarray or extension array: its dtype kept
    v.index = v.index.take(order)
    return v


def _merge_duplicates(raw: RawTable, rep: ValidationReport, v: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Merge rows that repeat a patient's visit day with the same values; report those that
    disagree. ``v`` is sorted by patient and day (:func:`sort_by_patient_and_day`), and so is
    what it returns."""
    pid, day = v["patient_id"].to_numpy(), v["day"].to_numpy()
    same = (pid[1:] == pid[:-1]) & (day[1:] == day[:-1])  # a row and the one before it: one visit
    if not same.any():
        return v, 0
    dup = np.zeros(len(v), bool)
    dup[1:] |= same
    dup[:-1] |= same
    dup = pd.Series(dup, index=v.index)
    sub = v[dup]
    compare = [c for c in v.columns if c not in ("row", "patient_id", "day", "visit_date")]
    nun = sub.groupby(["patient_id", "day"], sort=False)[compare].nunique(dropna=True)
    conflict_cols = nun.columns[(nun > 1).any()].tolist()
    conflict_keys = nun.index[(nun > 1).any(axis=1)]
    key = pd.MultiIndex.from_frame(sub[["patient_id", "day"]])
    in_conflict = pd.Series(key.isin(conflict_keys), index=sub.index)
    if in_conflict.any():
        rows = sub.index[in_conflict]
        rep.add("duplicate_visit_conflict", "error",
                f"{int(in_conflict.sum())} rows share a patient and visit day but disagree "
                f"(in {', '.join(conflict_cols)})",
                fix="keep one row per patient and visit day, or correct the visit date", file=raw.kind,
                column=", ".join(conflict_cols), rows=(rows + 2).tolist(), patient_ids=sub.loc[rows, "patient_id"])
    agree = sub[~in_conflict]
    n_merged = int(len(agree) - agree.groupby(["patient_id", "day"]).ngroups)
    if n_merged:
        rep.add("duplicate_visit_merged", "warning",
                f"{n_merged} row(s) repeat another row for the same patient and visit day with the same values; "
                "each group was merged into one visit", fix="remove the repeated rows from the export",
                file=raw.kind, rows=(agree.index + 2).tolist(), patient_ids=agree["patient_id"])
    first = sub.groupby(["patient_id", "day"], sort=False, as_index=False).first()
    v = sort_by_patient_and_day(pd.concat([v[~dup], first], ignore_index=True), in_place=True)
    return v, len(sub) - len(first)


def _patient_level(raw: RawTable, rep: ValidationReport, v: pd.DataFrame) -> pd.DataFrame:
    """Columns that describe the patient (sex, antibody, ...): an error where one takes two values
    within a patient, and each patient's first value given to all of its visits. ``v`` is sorted
    by patient (each patient's visits one run), so everything is a pass over arrays."""
    names = [name for name in PATIENT_LEVEL if name in v.columns]
    if not names or not len(v):
        return v
    pid = v["patient_id"].to_numpy()
    run = first_of_patient(pid)
    starts = np.flatnonzero(run)
    patient = np.cumsum(run) - 1  # per visit: its patient's number
    for name in names:
        values = v[name].array  # a numpy or a nullable (boolean, Int64) array: its type kept
        codes = pd.factorize(v[name])[0]  # -1: missing
        known = np.flatnonzero(codes >= 0)
        kp = patient[known]
        first_known = np.diff(kp, prepend=-1) != 0  # the first known value of each patient
        first = starts.copy()  # per patient: the row of its first value (its first row when it has none)
        first[kp[first_known]] = known[first_known]
        fill = first[patient]  # per visit: the row of its patient's first value
        differs = codes != codes[fill]  # a missing value, or another value than the patient's first
        varying_codes = np.unique(patient[differs & (codes >= 0)])
        if len(varying_codes):
            varying = pd.Index(np.sort(pid[starts[varying_codes]]))
            mask = np.isin(patient, varying_codes)
            rep.add("varies_within_patient", "error",
                    f"{name} takes more than one value within {len(varying)} patient(s)",
                    fix=f"{name} describes the patient, not the visit: give it one value per patient",
                    column=name, file=raw.kind, rows=sorted(v.loc[mask, "row"].tolist()),
                    patient_ids=list(varying[:5]))
        if differs.any():  # otherwise every visit has its patient's value already
            v[name] = values.take(fill)
    return v


def _therapy_from_visits(raw: RawTable, rep: ValidationReport, v: pd.DataFrame, norm: DrugNormaliser) -> None:
    cells = v["systemic_therapy"].fillna("")
    parsed = {c: norm.parse_cell(c) for c in cells.unique()}
    v["agents"] = cells.map(pd.Series([p[0] for p in parsed.values()], index=list(parsed), dtype=object))
    unknown: dict[str, list[str]] = {}
    for cell, (_, toks) in parsed.items():
        for t in toks:
            unknown.setdefault(t, []).append(cell)
    _report_unknown_drugs(raw, rep, {t: v["systemic_therapy"].isin(cs) for t, cs in unknown.items()}, v)
    _report_not_lines(rep, raw, cells, norm)


def _report_not_lines(rep, raw, cells: pd.Series, norm: DrugNormaliser) -> None:
    counts: dict[str, int] = {}
    for cell, n in cells.value_counts().items():
        for t in split_therapy(cell):
            a = norm.lookup(t)
            if a is not None and a.kind != "systemic":
                counts[a.kind] = counts.get(a.kind, 0) + int(n)
    if counts:
        what = ", ".join(f"{k}s in {n} row(s)" for k, n in sorted(counts.items()))
        rep.add("not_a_line", "info", f"recognised {what}; glucocorticoids and topicals never form therapy lines",
                file=raw.kind, count=sum(counts.values()))


def _report_unknown_drugs(raw, rep, masks: dict[str, pd.Series], frame: pd.DataFrame) -> None:
    ordered = sorted(masks.items(), key=lambda kv: -int(kv[1].sum()))
    for token, mask in ordered[:_MAX_TOKEN_FINDINGS]:
        rows = frame.loc[mask, "row"].tolist()
        rep.add("unknown_drug", "warning",
                f"drug {token!r} is not recognised, so it forms no therapy line", column="systemic_therapy"
                if raw.kind == "visits" else "drug", file=raw.kind, rows=rows,
                patient_ids=frame.loc[mask, "patient_id"].head(20),
                fix=f'map it in the mapping file\'s [drugs] table, e.g. "{token}" = "mycophenolate" '
                    "(or the agent it is); glucocorticoids and topicals map to 'prednisone' and 'topical'")
    if len(ordered) > _MAX_TOKEN_FINDINGS:
        rest = ordered[_MAX_TOKEN_FINDINGS:]
        rep.add("unknown_drug", "warning", f"{len(rest)} more unrecognised drug names, e.g. "
                f"{[t for t, _ in rest[:5]]}", file=raw.kind, count=int(sum(int(m.sum()) for _, m in rest)),
                fix="map them in the mapping file's [drugs] table")


# ---------------------------------------------------------------- the therapies file
def _parse_therapies(raw: RawTable, rep: ValidationReport, order: str, basis: str, anchors: pd.Series | None,
                     patients: set, norm: DrugNormaliser, override: str | None = None,
                     judged: dict | None = None) -> pd.DataFrame | None:
    d = raw.data
    if d.shape[1] == 0 or len(d) == 0:
        rep.add("empty_file", "error", "the therapies file has no rows", file="therapies",
                fix="give a therapies file with one row per episode, or leave --therapies out")
        return None
    if not _check_columns(raw, rep, [("patient_id",), ("drug",), ("start_date", "start_day")]):
        return None
    rep.extend(scan_identifiers(raw, override, norm, judged))
    need = "start_date" if basis == "date" else "start_day"
    if need not in d.columns:
        rep.add("time_basis_mismatch", "error",
                f"the visits use {'dates' if basis == 'date' else 'days'} but the therapies file has no {need}",
                fix=f"give start_{basis} and stop_{basis} in the therapies file, on the same basis as the visits",
                column=need, file="therapies")
        return None
    out = pd.DataFrame(index=d.index)
    out["row"] = d.index.to_numpy() + 2
    out["patient_id"] = _strip(d["patient_id"])
    bad = out["patient_id"].eq("") | _is_blank(out["patient_id"])
    _row_problem(rep, raw, bad, "missing_patient_id", "patient_id", "{n} row(s) have no patient_id",
                 "fill in the patient's code or delete the row")
    for which in ("start", "stop"):
        col = f"{which}_{basis}"
        if col not in d.columns:
            out[f"{which}_day"] = np.nan
            continue
        blank = _is_blank(d[col])
        if basis == "date":
            date, wrong = _dates(raw, rep, col, order, blank)
            day = (date - out["patient_id"].map(anchors)).dt.days.astype(float)
        else:
            day, wrong = _to_day(d[col])
            wrong &= ~blank
            _row_problem(rep, raw, wrong, "bad_day", col, "{n} value(s) cannot be read, e.g. "
                         + repr(d[col][wrong].head(2).tolist()), f"write {col} as an integer number of days")
        if which == "start":
            _row_problem(rep, raw, blank, "missing_visit_time", col, "{n} episode(s) have no start",
                         f"fill in {col}")
            bad |= blank
        bad |= wrong
        out[f"{which}_day"] = day
    wrong = out["stop_day"] < out["start_day"]
    _row_problem(rep, raw, wrong, "stop_before_start", f"stop_{basis}", "{n} episode(s) stop before they start",
                 "correct the start or stop of these episodes")
    bad |= wrong

    drugs = _strip(d["drug"])
    agents = {t: norm.lookup(t) if t and not norm.is_none(t) else None for t in drugs.unique()}
    out["agent"] = drugs.map({t: a.name if a is not None and a.kind == "systemic" else None for t, a in agents.items()})
    unknown = [t for t, a in agents.items() if a is None and t and not norm.is_none(t)]
    _report_unknown_drugs(raw, rep, {t: drugs.eq(t) for t in unknown}, out)
    _report_not_lines(rep, raw, drugs, norm)
    blank_drug = drugs.eq("") | _map_unique(drugs, norm.is_none).astype(bool)
    _row_problem(rep, raw, blank_drug, "unknown_drug", "drug", "{n} row(s) name no drug; they are ignored",
                 "fill in the drug or delete the row", severity="warning")

    if "stop_reason" in d.columns:
        reason = _map_unique(d["stop_reason"], lambda x: STOP_REASON_ALIASES.get(normalise_header(x)))
        unknown_reason = reason.isna()
        _row_problem(rep, raw, unknown_reason, "unknown_value", "stop_reason",
                     "{n} stop_reason value(s) are not recognised, e.g. "
                     + repr(d["stop_reason"][unknown_reason].head(3).tolist()) + "; they are treated as 'other'",
                     f"use {', '.join(STOP_REASONS[:-1])} or {STOP_REASONS[-1]}",
                     severity="warning")
        reason = reason.fillna("other")
    else:
        reason = pd.Series("unknown", index=d.index)
    out["ongoing"] = out["stop_day"].isna()
    out["stop_reason"] = reason.where(~out["ongoing"], "")

    stranger = ~out["patient_id"].isin(patients) & ~bad
    _row_problem(rep, raw, stranger, "patient_not_in_visits", "patient_id",
                 "{n} episode(s) belong to patients with no visit in the visits file; they are ignored",
                 "check the patient ids match between the two files", severity="warning")
    keep = ~bad & out["agent"].notna() & ~stranger
    ep = out[keep].copy()
    return _merge_episodes(raw, rep, ep)


def _merge_episodes(raw: RawTable, rep: ValidationReport, ep: pd.DataFrame) -> pd.DataFrame:
    # sorted by patient, agent, start and row through integer codes of the two text keys (their
    # sorted order, as sort_values orders strings): each (patient, agent) pair is then one run,
    # found by comparing codes, not strings, and grouped by its run number
    patient = pd.factorize(ep["patient_id"].to_numpy(), sort=True)[0]
    agent = pd.factorize(ep["agent"].to_numpy(), sort=True)[0]
    order = np.lexsort((ep["row"].to_numpy(), ep["start_day"].to_numpy(), agent, patient))
    ep = ep.take(order).reset_index(drop=True)
    patient, agent = patient[order], agent[order]
    same_pair = np.zeros(len(ep), dtype=bool)  # each episode and the one before it: the same pair
    same_pair[1:] = (patient[1:] == patient[:-1]) & (agent[1:] == agent[:-1])
    same = pd.Series(same_pair, index=ep.index)
    stop = ep["stop_day"].fillna(np.inf)
    prev_stop = stop.groupby(np.cumsum(~same_pair)).cummax().shift()
    overlap = same & (ep["start_day"] < prev_stop)
    touch = same & (ep["start_day"] == prev_stop)
    if overlap.any():
        rep.add("episode_overlap", "error", f"{int(overlap.sum())} episode(s) start while the same agent's previous "
                "episode is still running", fix="merge the overlapping episodes into one, or correct their dates",
                column="drug", file="therapies", rows=ep.loc[overlap, "row"].tolist(),
                patient_ids=ep.loc[overlap, "patient_id"])
    if touch.any():
        rep.add("episodes_merged", "warning", f"{int(touch.sum())} episode(s) start on the day the same agent's "
                "previous episode stops; each pair was merged into one continuous episode (one line)",
                fix="if the agent really was stopped and restarted, give the restart a later start date",
                column="drug", file="therapies", rows=ep.loc[touch, "row"].tolist(),
                patient_ids=ep.loc[touch, "patient_id"])
    block = (~(overlap | touch)).cumsum()
    g = ep.groupby(block, sort=False)
    merged = pd.DataFrame({
        "patient_id": g["patient_id"].first(), "agent": g["agent"].first(), "start_day": g["start_day"].min(),
        "stop_day": g["stop_day"].max(), "ongoing": g["ongoing"].any(), "stop_reason": g["stop_reason"].last(),
        "row": g["row"].first()})
    merged.loc[merged["ongoing"], ["stop_day"]] = np.nan
    merged.loc[merged["ongoing"], "stop_reason"] = ""
    return merged.reset_index(drop=True)


# ---------------------------------------------------------------- entry point
def prepare(visits: RawTable, therapies: RawTable | None = None,
            mapping: ColumnMapping | None = None) -> Prepared:
    """Validate and clean a visits table (and optionally a therapies table)."""
    frames = [t.data for t in (visits, therapies) if t is not None]
    with shared_factorization(*frames):  # each column's distinct values found once
        return _prepare(visits, therapies, mapping)


def _prepare(visits: RawTable, therapies: RawTable | None, mapping: ColumnMapping | None) -> Prepared:
    mapping = mapping or ColumnMapping()
    rep = ValidationReport()
    sources = {"visits": {"name": visits.name, "sha256": visits.sha256, "format": visits.fmt,
                          "rows": visits.n_rows, "sheet": visits.sheet}}
    if therapies is not None:
        sources["therapies"] = {"name": therapies.name, "sha256": therapies.sha256, "format": therapies.fmt,
                                "rows": therapies.n_rows, "sheet": therapies.sheet}
    empty = _empty_visits()
    norm = DrugNormaliser(mapping.drugs)
    for raw_name, target in norm.bad_synonyms.items():
        rep.add("mapping_unknown_agent", "error", f"the mapping file maps drug {raw_name!r} to {target!r}, "
                "which is not a known agent", fix="map it to a generic name such as "
                + ", ".join(a.name for a in AGENTS[:6]) + ", ...", file="mapping")
    if visits.data.shape[1] == 0 or visits.n_rows == 0:
        rep.add("empty_file", "error", "the visits file has no " + ("rows" if visits.data.shape[1] else "header"),
                fix="export one row per visit with a header row (patient_id, visit_date, cdasi_activity, ...)")
        return Prepared(empty, None, rep, counts={"rows_read": visits.n_rows}, sources=sources)
    if not _check_columns(visits, rep, [("patient_id",), ("visit_date", "visit_day"), ("cdasi_activity",)]):
        rep.extend(scan_identifiers(visits, mapping.patient_id_override, norm))
        _guarded(rep, sources, mapping.patient_id_override)
        return Prepared(empty, None, rep, counts={"rows_read": visits.n_rows}, sources=sources)
    judged: dict = {}  # each distinct patient id is judged once, though both files list it
    rep.extend(scan_identifiers(visits, mapping.patient_id_override, norm, judged))

    order = date_order([(visits, ("visit_date", *_EVENT_DATES)), (therapies, ("start_date", "stop_date"))],
                       mapping.date_format)
    v, bad, basis = _parse_visits(visits, rep, order)
    _parse_categories(visits, rep, v)
    if "systemic_therapy" in visits.data.columns:
        v["systemic_therapy"] = visits.data["systemic_therapy"].where(~_is_blank(visits.data["systemic_therapy"]), "")
    v = v[~bad].copy() if bad.any() else v  # a new frame either way: _parse_visits built it
    anchors = None
    if basis == "date":
        anchors = v.groupby("patient_id")["visit_date"].min()
        v["day"] = (v["visit_date"] - v["patient_id"].map(anchors)).dt.days
    v["day"] = v["day"].astype("int64")
    # Sorted first (the index, the rows' positions in the file, kept for the findings): duplicates are
    # then neighbours, and a patient's visits are one run. Most exports are in this order already.
    v = sort_by_patient_and_day(v, in_place=True)
    v, n_dupes = _merge_duplicates(visits, rep, v)
    v = _patient_level(visits, rep, v)
    v.index = pd.RangeIndex(len(v))  # not reset_index(): that copies (and consolidates) every column

    episodes = None
    if therapies is not None:
        if "systemic_therapy" in v.columns:
            rep.add("systemic_therapy_ignored", "info", "a therapies file was given, so the visits' "
                    "systemic_therapy column is not used for therapy lines", column="systemic_therapy")
        episodes = _parse_therapies(therapies, rep, order, basis, anchors, set(v["patient_id"]), norm,
                                    mapping.patient_id_override, judged)
        v["agents"] = _no_agents(len(v))
    elif "systemic_therapy" in v.columns:
        _therapy_from_visits(visits, rep, v, norm)
    else:
        v["agents"] = _no_agents(len(v))
        rep.add("no_therapy_information", "warning", "there is no systemic_therapy column and no therapies file, "
                "so no therapy lines can be derived", fix="add a systemic_therapy column or give --therapies FILE",
                column="systemic_therapy")
    no_act = v["cdasi_activity"].isna()
    if no_act.any():
        rep.add("visits_without_activity", "info", f"{int(no_act.sum())} visit(s) have no cdasi_activity; they "
                "count only towards the patient's last visit", column="cdasi_activity",
                rows=v.loc[no_act, "row"].tolist(), patient_ids=v.loc[no_act, "patient_id"])
    counts = {"rows_read": visits.n_rows, "rows_with_errors": int(bad.sum()), "duplicate_rows_merged": n_dupes,
              "visits": len(v), "patients": int(v["patient_id"].nunique()),
              "visits_with_activity": int((~no_act).sum())}
    _guarded(rep, sources, mapping.patient_id_override)
    return Prepared(v, episodes, rep, basis, anchors, counts, sources)


def _no_agents(n: int) -> np.ndarray:
    """An agents column of empty tuples (one object shared: a list of a million made pandas infer
    its type for a third of a second)."""
    out = np.empty(n, dtype=object)
    out.fill(())
    return out


def _guarded(rep: ValidationReport, sources: dict, override: str | None) -> None:
    """After the guard: no finding repeats a patient id refused as an identifier, and an override of
    the patient-id rule is recorded with the sources (results.json, manifest.json)."""
    if any(f.rule == "identifier_patient_id" or (f.rule == "identifier_value" and f.column == "patient_id")
           for f in rep.findings):  # the ids are identifiers (record numbers, emails): no finding repeats one
        mask_patient_ids(rep)
    waived = [f for f in rep.findings if f.rule == "patient_id_override"]
    if waived:
        sources["deidentification"] = {"patient_id_override": {
            "reason": override, "files": [f.file for f in waived], "patient_ids_flagged": max(f.count for f in waived),
            "rule_waived": "identifier_patient_id"}}


def _empty_visits() -> pd.DataFrame:
    return pd.DataFrame({"row": pd.Series(dtype="int64"), "patient_id": pd.Series(dtype=str),
                         "day": pd.Series(dtype="int64"), "cdasi_activity": pd.Series(dtype=float),
                         "agents": pd.Series(dtype=object)})
