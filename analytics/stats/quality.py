"""Quality-meeting indicators, per period, with definitions, numerators, denominators and the
lines or patients that fail each one (for drill-down).

No validated indicator set exists for dermatomyositis; these follow guidelines and practice
(shared/domain.md). Periods (quarter or year) are calendar periods, so they need dated
exports; with ``visit_day`` exports every indicator is computed over the whole export and the
by-period view is a single "all" period.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..lines.derive import Derivation, followup_visits, patient_codes
from ..errors import OptionError
from ..protocol import Call, FigureSpec, TableSpec, recorded, tag
from ..display.style import base_layout, count_text, figure_width
from ..ingest.validate import Prepared, first_of_patient, sort_by_patient_and_day, sorted_by_patient_and_day

__all__ = ["INDICATORS", "Indicator", "QualityResult", "compute_quality", "HIGH_RISK_ANTIBODIES"]

MCID = 4  # points (Anyanwu 2015)
WEEK12 = 84  # days
HIGH_RISK_ANTIBODIES = ("tif1g", "nxp2")  # cancer-associated (IMACS 2023)


@dataclass(frozen=True)
class Indicator:
    key: str
    name: str
    unit: str  # visits | lines | patients | days
    numerator: str
    denominator: str
    needs: str = ""  # the optional columns it needs
    higher_is_better: bool = True


INDICATORS: tuple[Indicator, ...] = (
    Indicator("cdasi_documented", "CDASI activity documented", "visits",
              "visits with a CDASI activity score", "all visits"),
    Indicator("assessed_by_12w", "Lines assessed by 12 weeks", "lines",
              "lines with a scored follow-up visit within 12 weeks (84 days) of the start",
              "lines with a baseline whose follow-up window reaches 12 weeks"),
    Indicator("no_mcid_by_12w", "Lines with no MCID by 12 weeks", "lines",
              f"lines with no fall of at least {MCID} points from baseline at any scored visit within 12 weeks",
              "lines with a baseline whose follow-up window reaches 12 weeks", higher_is_better=False),
    Indicator("escalated_after_no_mcid", "Escalated within 4 weeks after no MCID at 12 weeks", "lines",
              "lines without an MCID by 12 weeks after which a new systemic agent started within the next 4 weeks "
              "(days 85-112)", "lines with no MCID by 12 weeks"),
    Indicator("median_visit_interval", "Median interval between visits", "days",
              "median number of days between consecutive visits of a patient", "pairs of consecutive visits",
              higher_is_better=False),
    Indicator("lost_to_follow_up", "Patients with no visit in the last 12 months", "patients",
              "patients whose last visit is more than 365 days before the export's last visit",
              "patients (dated exports only)", higher_is_better=False),
    Indicator("cancer_screening_high_risk", "Yearly cancer screening, high risk (anti-TIF1-gamma or anti-NXP2)",
              "patients", "high-risk patients screened in every completed year of follow-up within the first 3 "
              "years", "high-risk patients with at least 1 year of follow-up", "malignancy_screening_date"),
    Indicator("cancer_screening_standard_risk", "Cancer screening in the first 3 years, standard risk", "patients",
              "other patients screened at least once within the first 3 years",
              "other patients with at least 1 year of follow-up", "malignancy_screening_date"),
    Indicator("ild_screening", "ILD screening with lung function and HRCT", "patients",
              "patients with both a PFT and an HRCT within the first year", "patients with at least 1 year of "
              "follow-up", "pft_date, hrct_date"),
    Indicator("ild_screening_mda5", "ILD screening with lung function and HRCT, anti-MDA5", "patients",
              "anti-MDA5 patients with both a PFT and an HRCT within the first year",
              "anti-MDA5 patients with at least 1 year of follow-up", "pft_date, hrct_date"),
    Indicator("antibody_panel_at_baseline", "Myositis antibody panel at baseline", "patients",
              "patients with an antibody panel from 1 year before to 90 days after the first visit "
              "(without antibody_panel_date: an antibody result other than unknown)", "patients"),
)
_BY_KEY = {i.key: i for i in INDICATORS}


@dataclass(frozen=True)
class QualityResult:
    period: str
    summary: pd.DataFrame  # key, name, numerator, denominator, value, unit
    by_period: pd.DataFrame  # key, period, numerator, denominator, value
    failing: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)
    cdasi_documented_pct: float | None = None
    call: Call | None = field(default=None, compare=False)
    alpha: float = 0.05  # the protocol's; the indicators carry no interval
    targets: dict = field(default_factory=dict)  # key -> target (% or days), the spec's [quality.targets]
    better: dict = field(default_factory=dict)  # key -> "higher" | "lower", every indicator

    def higher_is_better(self, key: str) -> bool:
        return self.better.get(key, "higher" if _BY_KEY[key].higher_is_better else "lower") == "higher"

    @property
    def warnings(self) -> list[str]:
        """The notes (indicators the export does not allow, and why) as warnings of this analysis."""
        return tag(self.notes, "quality")

    def tables(self) -> dict[str, TableSpec]:
        """The indicators, the indicators by period and, per indicator, the lines, visits or
        patients that fail it (patient-level: internal packs only, not in the report)."""
        out = {"indicators": TableSpec(self.summary, "Quality indicators (whole export; the cohort filters do not apply)",
                                       counts=("numerator", "denominator"), derived=("value", "meets_target")),
               "by_period": TableSpec(self.by_period, f"Quality indicators by {self.period}",
                                      counts=("numerator", "denominator"), derived=("value",))}
        for key, frame in self.failing.items():
            out[f"failing_{key}"] = TableSpec(frame, f"What fails: {_BY_KEY[key].name}", patient_level=True,
                                              in_report=False)
        return out

    def figures(self) -> dict[str, FigureSpec]:
        out = {}
        for key in self.summary["key"]:
            out[key] = FigureSpec(lambda mc, hidden, key=key: self.figure(key, mc),
                                  f"Quality indicator by {self.period}: {_BY_KEY[key].name} (control chart)")
        return out

    def to_dict(self, min_cell: int | None = None) -> dict:
        out = {"cdasi_documented_pct": self.cdasi_documented_pct, "period": self.period, "indicators": {},
               "notes": list(self.notes)}
        for r in self.summary.itertuples():
            ind = _BY_KEY[r.key]
            periods = self.by_period[self.by_period["key"] == r.key]
            out["indicators"][r.key] = {
                "name": ind.name, "unit": ind.unit, "numerator_definition": ind.numerator,
                "denominator_definition": ind.denominator, "numerator": _count(r.numerator, min_cell),
                "denominator": _count(r.denominator, min_cell), "value": _value(r, min_cell),
                "better": r.better, "target": self.targets.get(r.key),
                "meets_target": None if r.key not in self.targets or _value(r, min_cell) is None else bool(r.meets_target),
                "by_period": [{"period": p.period, "numerator": _count(p.numerator, min_cell),
                               "denominator": _count(p.denominator, min_cell), "value": _value(p, min_cell)}
                              for p in periods.itertuples()]}
        return out

    def figure(self, key: str, min_cell: int | None = None) -> go.Figure:
        return run_chart(self, key, min_cell)


def _count(x, min_cell):
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return None
    return count_text(x, min_cell) if min_cell and 0 < int(x) < min_cell else int(x)


def _value(r, min_cell):
    v = r.value
    if v is None or not np.isfinite(v):
        return None
    if min_cell and (0 < r.numerator < min_cell or 0 < r.denominator < min_cell):
        return None
    return float(v)


def _periods(dates: pd.Series, period: str) -> pd.Series:
    if period == "all" or dates is None:
        return pd.Series("all", index=dates.index if dates is not None else None)
    # each distinct date once: a million visits share a few thousand dates (and their labels)
    codes, uniques = pd.factorize(dates, use_na_sentinel=False)
    labels = pd.Series(pd.DatetimeIndex(uniques)).dt.to_period("Q" if period == "quarter" else "Y").astype(str)
    labels = labels.where(pd.notna(uniques), "unknown").to_numpy(dtype=object)
    return pd.Series(labels[codes], index=dates.index, dtype=object)


def _complete(periods: pd.Series, last_date, period: str) -> pd.Series:
    """Whether each period ended by the export's last visit (the latest period is usually
    partial: its indicator covers only part of it and is not compared with the others)."""
    if last_date is None or pd.isna(last_date) or period == "all":
        return pd.Series(True, index=periods.index, dtype=bool)
    freq = "Q" if period == "quarter" else "Y"

    def ended(label: str) -> bool:
        try:
            return pd.Period(label, freq=freq).end_time.normalize() <= pd.Timestamp(last_date).normalize()
        except (ValueError, TypeError):  # "unknown", "all"
            return True

    return periods.map(ended).astype(bool)


def _rate(df: pd.DataFrame, key: str, num: str, period_col: str = "period") -> tuple[dict, pd.DataFrame]:
    """Overall and per-period numerator, denominator and percentage from a 0/1 column."""
    overall = {"key": key, "numerator": int(df[num].sum()), "denominator": len(df),
               "value": 100.0 * df[num].mean() if len(df) else np.nan}
    g = df.groupby(period_col)[num].agg(["sum", "size"]).reset_index()
    per = pd.DataFrame({"key": key, "period": g[period_col].astype(str), "numerator": g["sum"].astype(int),
                        "denominator": g["size"].astype(int), "value": 100.0 * g["sum"] / g["size"]})
    return overall, per


def _lost_by_period(v: pd.DataFrame, period: str, end) -> pd.DataFrame:
    """'No visit in the last 12 months' as it stood at the end of each period (the latest,
    partial period at the export's last visit): of the patients first seen by then, those whose
    latest visit by then was more than 365 days earlier. At the export's end this is the overall
    indicator."""
    dates = v[["patient_id", "visit_date"]].dropna()
    labels = sorted(set(_periods(pd.Series(dates["visit_date"].unique()), period)) - {"unknown"})
    if not labels:
        return pd.DataFrame(columns=["key", "period", "numerator", "denominator", "value"])
    freq = "Q" if period == "quarter" else "Y"
    ends = pd.DatetimeIndex([min(pd.Period(label, freq=freq).end_time.normalize(), pd.Timestamp(end).normalize())
                             for label in labels])
    # each visit falls in the first period that ends on or after it; a patient's latest visit by the
    # end of period k is the latest of periods 0..k (patients x periods, carried forward)
    day = dates["visit_date"].values.astype("datetime64[ns]").view("int64")
    k = np.searchsorted(ends.values.astype("datetime64[ns]").view("int64"), day, side="left")
    keep = k < len(ends)
    patient = pd.factorize(dates["patient_id"].to_numpy())[0]
    # patients x periods (integers, not a grouped table of a million visits): the latest visit in
    # each period, then carried forward, which is the latest by each period's end (visits of a
    # later period are later than any of an earlier one)
    none = np.iinfo(np.int64).min
    grid = np.full((int(patient.max(initial=-1)) + 1, len(ends)), none, dtype=np.int64)
    np.maximum.at(grid, (patient[keep], k[keep]), day[keep])
    grid = np.maximum.accumulate(grid, axis=1)
    seen = grid != none
    cutoff = (ends - pd.Timedelta(days=365)).values.astype("datetime64[ns]").view("int64")
    lost = seen & (grid < cutoff[None, :])
    out = []
    for i, label in enumerate(labels):
        n, m = int(seen[:, i].sum()), int(lost[:, i].sum())
        out.append({"key": "lost_to_follow_up", "period": label, "numerator": m, "denominator": n,
                    "value": 100.0 * m / n if n else np.nan})
    return pd.DataFrame(out, columns=["key", "period", "numerator", "denominator", "value"])


def _by_antibody(antibody: pd.Series, test) -> pd.Series:
    """``test`` of each patient's list of antibodies ("tif1g;nxp2"), judged once per distinct value."""
    codes, uniques = pd.factorize(antibody.fillna(""))
    judged = np.array([bool(test(u.split(";"))) for u in uniques], dtype=bool)  # no missing code: filled
    return pd.Series(judged[codes], index=antibody.index)


class _ByPatient:
    """Per-patient reductions of visit columns, grouped on integer codes made once (each patient's
    number in patient_id order): a groupby on a million patient_id strings hashes them every time
    (about 0.1 s each at 100,000 patients). Sorted visits (Prepared's contract) give the codes from
    their runs (``first``: each visit's being its patient's first; None for unsorted visits);
    otherwise a sorted factorize. Results are indexed by patient_id, sorted, as
    ``v.groupby("patient_id")`` would give them."""

    def __init__(self, v: pd.DataFrame, is_sorted: bool):
        pid = v["patient_id"].to_numpy()
        self.first = first_of_patient(pid) if is_sorted else None
        if is_sorted:
            self.codes, ids = np.cumsum(self.first) - 1, pid[self.first]
        else:
            self.codes, ids = pd.factorize(pid, sort=True)
        self.index = pd.Index(ids, name="patient_id")
        self.v = v

    def __call__(self, column: str, how: str) -> pd.Series:
        values = self.v[column].to_numpy() if self.first is not None and how in ("min", "max") else None
        if values is not None and len(values) and values.dtype.kind in "Mfi":
            # each patient's visits are one run: reduced run by run, missing values skipped as
            # groupby skips them (a patient with none gets a missing value)
            starts = np.flatnonzero(self.first)
            if values.dtype.kind == "M":
                ints = values.view(np.int64)
                nat = np.iinfo(np.int64).min  # NaT; the smallest integer, which max already skips
                if how == "min":
                    ints = np.where(ints == nat, np.iinfo(np.int64).max, ints)
                    reduced = np.minimum.reduceat(ints, starts)
                    reduced[reduced == np.iinfo(np.int64).max] = nat
                else:
                    reduced = np.maximum.reduceat(ints, starts)
                reduced = reduced.view(values.dtype)
            else:
                reduced = (np.fmin if how == "min" else np.fmax).reduceat(values, starts)
            return pd.Series(reduced, index=self.index, name=column)
        out = self.v[column].groupby(self.codes, sort=True).agg(how)
        out.index = self.index[out.index.to_numpy()]
        return out


@recorded(prepared="prepared", derivation="full")
def compute_quality(prepared: Prepared, derivation: Derivation, period: str = "year",
                    alpha: float = 0.05, targets=(), better=()) -> QualityResult:
    """Compute every indicator the export allows; the others are listed in ``notes`` with why.

    ``targets``: (key, target) pairs or a dict, in the indicator's unit (% or days);
    ``better``: (key, "higher" | "lower") pairs that override an indicator's direction."""
    if period not in ("quarter", "year"):
        raise OptionError("period must be 'quarter' or 'year'")
    targets, better = dict(targets), dict(better)
    unknown = sorted((set(targets) | set(better)) - set(_BY_KEY))
    if unknown:
        raise OptionError(f"unknown quality indicators {unknown}; choose from {', '.join(_BY_KEY)}")
    direction = {i.key: better.get(i.key, "higher" if i.higher_is_better else "lower") for i in INDICATORS}
    v = prepared.visits
    dated = prepared.time_basis == "date" and "visit_date" in v.columns
    eff_period = period if dated else "all"
    notes = [] if dated else ["the export gives days, not dates: indicators are computed over the whole export "
                              "(no calendar periods), and 'no visit in the last 12 months' is not available"]
    rows, per, failing = [], [], {}
    is_sorted = sorted_by_patient_and_day(v)
    by_patient = _ByPatient(v, is_sorted)
    first_date = by_patient("visit_date", "min") if dated else None

    # 1. CDASI documented (visits)
    vv = pd.DataFrame({"patient_id": v["patient_id"], "row": v["row"], "day": v["day"],
                       "ok": v["cdasi_activity"].notna().astype(int),
                       "period": _periods(v["visit_date"], eff_period) if dated else "all"})
    o, p = _rate(vv, "cdasi_documented", "ok")
    rows.append(o)
    per.append(p)
    failing["cdasi_documented"] = vv.loc[vv["ok"] == 0, ["patient_id", "row", "day", "period"]]
    del vv  # a row per visit: let go (a million visits at 100,000 patients) before the next indicator

    # 2-4. Lines: assessed by 12 weeks, no MCID by 12 weeks, escalation afterwards
    ln = derivation.lines
    scored = v.loc[v["cdasi_activity"].notna(), ["patient_id", "day", "cdasi_activity"]]
    base = ln[ln["baseline_day"].notna()].copy()
    base["end_day"] = base["end_day"].astype(float)
    reach = base[base["end_day"] >= base["start_day"] + WEEK12].copy()
    del base
    if dated:
        start_date = reach["patient_id"].map(prepared.anchors) + pd.to_timedelta(reach["start_day"], unit="D")
        reach["period"] = _periods(start_date, eff_period).to_numpy()
    else:
        reach["period"] = "all"
    # the scored visits after the baseline and the start, up to 12 weeks and the end of the line (a range join)
    window = reach[["line_id", "patient_id", "start_day", "baseline_day", "baseline_cdasi"]].assign(
        end_day=np.fmin(reach["end_day"].to_numpy(float), reach["start_day"].to_numpy(float) + WEEK12))
    line_pc, visit_pc = patient_codes(window["patient_id"], scored["patient_id"])
    m = followup_visits(window, scored, line_pc, visit_pc)
    # distinct ids as arrays: isin() hashes an array at once, a Python set is first copied element by element
    assessed_ids = m["line_id"].unique()
    mcid_ids = m.loc[m["baseline_cdasi"] - m["cdasi_activity"] >= MCID, "line_id"].unique()
    del m, window, scored
    reach["assessed"] = reach["line_id"].isin(assessed_ids).astype(int)
    reach["no_mcid"] = (~reach["line_id"].isin(mcid_ids)).astype(int)
    cols = ["patient_id", "line_id", "agent", "arm", "start_day", "baseline_cdasi", "period"]
    for key, col, fail_value in (("assessed_by_12w", "assessed", 0), ("no_mcid_by_12w", "no_mcid", 1)):
        o, p = _rate(reach, key, col)
        rows.append(o)
        per.append(p)
        failing[key] = reach.loc[reach[col] == fail_value, cols]
    nomcid = reach[reach["no_mcid"] == 1].copy()
    starts = ln[["patient_id", "start_day"]].rename(columns={"start_day": "next_start"})
    esc = nomcid[["line_id", "patient_id", "start_day"]].merge(starts, on="patient_id")
    esc = esc[(esc["next_start"] > esc["start_day"] + WEEK12) & (esc["next_start"] <= esc["start_day"] + WEEK12 + 28)]
    nomcid["escalated"] = nomcid["line_id"].isin(esc["line_id"].unique()).astype(int)
    o, p = _rate(nomcid, "escalated_after_no_mcid", "escalated")
    rows.append(o)
    per.append(p)
    failing["escalated_after_no_mcid"] = nomcid.loc[nomcid["escalated"] == 0, cols]

    # 5. Median interval between visits (days), by the period of the later visit
    # Prepared visits are sorted by patient and day (Prepared's contract; a narrow copy is sorted otherwise),
    # so a visit's gap is to the row before it when that row is the same patient's: no groupby of a million
    # patient ids (70 MB of hash table and codes at 100,000 patients), and no frame of every gap (building
    # one stacks its columns into new blocks): a Series of gaps, one of periods, and the long gaps' rows.
    vs = v if is_sorted else sort_by_patient_and_day(
        v[["patient_id", "day", "visit_date"] if dated else ["patient_id", "day"]])
    pid, day = vs["patient_id"].to_numpy(), vs["day"].to_numpy()
    # visits after an earlier one of the patient's (the runs of the sorted visits, found once)
    later = np.flatnonzero(~(by_patient.first if is_sorted else first_of_patient(pid)))
    gap = pd.Series((day[later] - day[later - 1]).astype(float), index=vs.index[later], name="gap")
    gap_period = (_periods(vs["visit_date"].iloc[later], eff_period) if dated
                  else pd.Series("all", index=gap.index, dtype=object)).rename("period")
    rows.append({"key": "median_visit_interval", "numerator": np.nan, "denominator": len(gap),
                 "value": float(gap.median()) if len(gap) else np.nan})
    g = gap.groupby(gap_period).agg(["median", "size"]).reset_index()
    per.append(pd.DataFrame({"key": "median_visit_interval", "period": g["period"].astype(str), "numerator": np.nan,
                             "denominator": g["size"], "value": g["median"]}))
    long = (gap > 182).to_numpy()
    failing["median_visit_interval"] = pd.DataFrame(
        {"patient_id": pid[later[long]], "days_since_previous_visit": gap[long], "period": gap_period[long]})
    del vs, pid, day, later, gap, gap_period, long

    pats = pd.DataFrame(index=by_patient.index)
    if dated:
        last = by_patient("visit_date", "max")
        end = v["visit_date"].max()
        pats["follow_up_days"] = (last - first_date).dt.days
        pats["period"] = _periods(first_date, eff_period)
        lost = pd.DataFrame({"lost": (last < end - pd.Timedelta(days=365)).astype(int), "period": "all"})
        o, _ = _rate(lost, "lost_to_follow_up", "lost")
        rows.append(o)
        per.append(_lost_by_period(v, eff_period, end))
        failing["lost_to_follow_up"] = pd.DataFrame({"patient_id": last.index[lost["lost"] == 1],
                                                     "last_visit": last[lost["lost"] == 1].dt.date.astype(str)})
    else:
        pats["follow_up_days"] = by_patient("day", "max") - by_patient("day", "min")
        pats["period"] = "all"
    ab = by_patient("antibody", "first") if "antibody" in v.columns else pd.Series(dtype=object)
    pats["antibody"] = ab.reindex(pats.index)

    def events(col: str) -> pd.DataFrame:
        has = v[col].notna().to_numpy()
        e = v.loc[has, ["patient_id", col]].copy()
        # each visit's patient's first date through its code (first_date is in code order), not by
        # looking every patient id up again
        first = pd.Series(first_date.to_numpy()[by_patient.codes[has]], index=e.index)
        e["offset"] = (e[col] - first).dt.days
        return e

    def add_patient_indicator(key: str, mask: pd.Series, ok: pd.Series) -> None:
        d = pd.DataFrame({"ok": ok[mask].astype(int), "period": pats.loc[mask, "period"]})
        o, p = _rate(d, key, "ok")
        rows.append(o)
        per.append(p)
        failing[key] = pd.DataFrame({"patient_id": d.index[d["ok"] == 0],
                                     "antibody": pats.loc[d.index[d["ok"] == 0], "antibody"].to_numpy()})

    has_year = pats["follow_up_days"] >= 365
    high = _by_antibody(pats["antibody"], lambda xs: any(a in xs for a in HIGH_RISK_ANTIBODIES))
    if dated and "malignancy_screening_date" in v.columns:
        e = events("malignancy_screening_date")
        years_done = e[(e["offset"] >= 0) & (e["offset"] < 3 * 365)].assign(year=lambda x: x["offset"] // 365)
        needed = (pats["follow_up_days"].clip(upper=3 * 365) // 365).astype(int)
        # yearly: a screening in every one of the patient's first `needed` years (none needed: met)
        done = years_done[["patient_id", "year"]].drop_duplicates()
        done = done[done["year"] < done["patient_id"].map(needed)]
        yearly = done.groupby("patient_id").size().reindex(pats.index, fill_value=0).eq(needed)
        once = pats.index.isin(years_done["patient_id"])
        add_patient_indicator("cancer_screening_high_risk", has_year & high, yearly)
        add_patient_indicator("cancer_screening_standard_risk", has_year & ~high, pd.Series(once, index=pats.index))
    else:
        notes.append("cancer screening indicators need a dated export with malignancy_screening_date")
    if dated and "pft_date" in v.columns and "hrct_date" in v.columns:
        first_year = {}
        for col in ("pft_date", "hrct_date"):
            e = events(col)
            first_year[col] = set(e.loc[(e["offset"] >= -90) & (e["offset"] <= 365), "patient_id"])
        both = pd.Series(pats.index.isin(first_year["pft_date"] & first_year["hrct_date"]), index=pats.index)
        mda5 = _by_antibody(pats["antibody"], lambda xs: "mda5" in xs)
        add_patient_indicator("ild_screening", has_year, both)
        add_patient_indicator("ild_screening_mda5", has_year & mda5, both)
    else:
        notes.append("ILD screening indicators need a dated export with pft_date and hrct_date")
    if dated and "antibody_panel_date" in v.columns:
        e = events("antibody_panel_date")
        ok = pd.Series(pats.index.isin(e.loc[(e["offset"] >= -365) & (e["offset"] <= 90), "patient_id"].unique()),
                       index=pats.index)
        add_patient_indicator("antibody_panel_at_baseline", pd.Series(True, index=pats.index), ok)
    elif "antibody" in v.columns:
        ok = pats["antibody"].notna() & (pats["antibody"] != "unknown")
        add_patient_indicator("antibody_panel_at_baseline", pd.Series(True, index=pats.index), ok)
        notes.append("antibody panel at baseline: no antibody_panel_date, so a recorded antibody result is used "
                     "as the proxy")
    else:
        notes.append("antibody panel at baseline needs antibody_panel_date or an antibody column")

    summary = pd.DataFrame(rows)
    summary.insert(1, "name", summary["key"].map(lambda k: _BY_KEY[k].name))
    summary["unit"] = summary["key"].map(lambda k: "%" if _BY_KEY[k].unit != "days" else "days")
    summary["better"] = summary["key"].map(direction)
    summary["target"] = summary["key"].map(lambda k: targets.get(k, np.nan)).astype(float)
    higher = summary["better"] == "higher"
    meets = np.where(higher, summary["value"] >= summary["target"], summary["value"] <= summary["target"])
    summary["meets_target"] = pd.Series(meets, index=summary.index).where(summary["target"].notna()
                                                                          & summary["value"].notna())
    by_period = pd.concat(per, ignore_index=True) if per else pd.DataFrame(
        columns=["key", "period", "numerator", "denominator", "value"])
    by_period.insert(1, "name", by_period["key"].map(lambda k: _BY_KEY[k].name))
    by_period["unit"] = by_period["key"].map(lambda k: "%" if _BY_KEY[k].unit != "days" else "days")
    by_period["complete"] = _complete(by_period["period"], v["visit_date"].max() if dated else None, eff_period)
    documented = float(summary.loc[summary["key"] == "cdasi_documented", "value"].iloc[0]) if len(v) else None
    return QualityResult(eff_period, summary, by_period, {k: f.reset_index(drop=True) for k, f in failing.items()},
                         notes, documented, alpha=alpha, targets=targets, better=direction)


SHIFT_RUN = 8  # points in a row on one side of the centre line: a shift (special cause)


def control_limits(d: pd.DataFrame, percent: bool) -> pd.DataFrame:
    """Centre line, 3-sigma limits and special causes of an indicator's complete periods.

    Proportions: a p-chart (centre: pooled proportion; limits: p +- 3 sqrt(p (1 - p) / n_i) for
    each period's denominator, clipped to 0-100%). Days (a median interval): an XmR chart
    (centre: mean; limits: mean +- 2.66 x the mean moving range). Special causes (Provost &
    Murray): a point outside the limits, or a run of ``SHIFT_RUN`` or more points on one side
    of the centre line. Returns ``d`` with centre, lower, upper, special (str) columns."""
    d = d.copy()
    d["centre"] = d["lower"] = d["upper"] = np.nan
    d["special"] = ""
    ok = d["complete"].to_numpy(bool) & d["value"].notna().to_numpy()
    c = d[ok]
    if percent and len(c) and c["denominator"].sum() > 0:
        p = c["numerator"].sum() / c["denominator"].sum()
        sigma = np.sqrt(p * (1 - p) / d["denominator"].clip(lower=1).astype(float))
        d["centre"] = 100 * p
        d["lower"] = (100 * (p - 3 * sigma)).clip(lower=0)
        d["upper"] = (100 * (p + 3 * sigma)).clip(upper=100)
    elif not percent and len(c) >= 2:
        mean, mr = c["value"].mean(), c["value"].diff().abs().mean()
        d["centre"], d["lower"], d["upper"] = mean, max(0.0, mean - 2.66 * mr), mean + 2.66 * mr
    elif len(c):
        d["centre"] = c["value"].median()
    outside = ok & ((d["value"] > d["upper"] + 1e-9) | (d["value"] < d["lower"] - 1e-9)).to_numpy()
    d.loc[outside, "special"] = "outside the limits"
    side = np.sign((d["value"] - d["centre"]).to_numpy(float))
    idx = np.flatnonzero(ok)
    run: list[int] = []
    for j in list(idx) + [None]:
        if j is not None and run and side[j] == side[run[-1]] and side[j] != 0:
            run.append(j)
            continue
        if len(run) >= SHIFT_RUN:
            pos = d.index[run]
            d.loc[pos, "special"] = d.loc[pos, "special"].where(d.loc[pos, "special"] != "",
                                                                f"shift ({len(run)} on one side)")
        run = [j] if j is not None and side[j] != 0 else []
    return d


def _latest(d: pd.DataFrame, unit: str, min_cell) -> str:
    c = d[d["complete"] & d["value"].notna()]
    if len(c) < 2:
        return ""
    last, prev = c.iloc[-1], c.iloc[-2]

    def one(r):
        frac = "" if unit == "days" or pd.isna(r["numerator"]) else \
            f" ({count_text(r['numerator'], min_cell)}/{count_text(r['denominator'], min_cell)})"
        return f"{r['period']}: {r['value']:.1f}{' days' if unit == 'days' else '%'}{frac}"

    return f"latest complete {one(last)} vs {one(prev)}"


def run_chart(result: QualityResult, key: str, min_cell: int | None = None) -> go.Figure:
    """A control chart of the indicator by period: the value of each complete period with its
    denominator under the axis, the centre line and 3-sigma limits (p-chart for proportions, XmR
    for days), special causes marked, the latest partial period shown hollow and left out of the
    limits, the direction (higher or lower is better) and the latest complete period against the
    previous one in the subtitle."""
    import textwrap

    from ..display.style import legend_below

    ind = _BY_KEY[key]
    d = result.by_period[(result.by_period["key"] == key) & (result.by_period["period"] != "unknown")]
    if "complete" not in d:
        d = d.assign(complete=True)
    d = d.sort_values("period").reset_index(drop=True)
    if min_cell:
        d = d[(d["denominator"] >= min_cell) & ~((d["numerator"] > 0) & (d["numerator"] < min_cell))]
    percent = ind.unit != "days"
    unit = "%" if percent else "days"
    d = control_limits(d, percent)
    fig = go.Figure()
    x = d["period"].tolist()
    # quarters over years, or a narrow figure: the labels turn and keep only the denominator
    many = len(d) > 12 or len(d) * 64 > figure_width() - 120
    ticks = [f"{p} (n = {count_text(dn, min_cell)})" if many else
             f"{p}<br>{'n = ' + count_text(dn, min_cell) if not percent else f'{count_text(n, min_cell)}/{count_text(dn, min_cell)}'}"
             for p, n, dn in zip(d["period"], d["numerator"], d["denominator"])]
    if d["upper"].notna().any():
        for col, name in (("upper", "3-sigma limits"), ("lower", None)):
            fig.add_trace(go.Scatter(x=x, y=d[col], mode="lines", line=dict(color="#777777", width=1.5, dash="dot",
                                                                              shape="hvh"),
                                     name=name or "lower limit", showlegend=name is not None, legendgroup="limits",
                                     hovertemplate="%{x}: " + col + " limit %{y:.1f}<extra></extra>"))
    if d["centre"].notna().any():
        chart = ("p-chart" if percent else "XmR chart") if d["upper"].notna().any() else "run chart"
        fig.add_trace(go.Scatter(x=x, y=d["centre"], mode="lines", line=dict(color="#444444", width=1.5),
                                 name=f"centre line ({d['centre'].dropna().iloc[0]:.1f}{'' if percent else ' days'})",
                                 hovertemplate="centre %{y:.1f}<extra></extra>"))
    else:
        chart = "run chart"
    hover = [f"{count_text(n, min_cell) if pd.notna(n) else ''}/{count_text(dn, min_cell)}"
             for n, dn in zip(d["numerator"], d["denominator"])]
    full = d["complete"].to_numpy(bool)
    fig.add_trace(go.Scatter(x=x, y=d["value"].where(full), mode="lines+markers", name="indicator, complete periods",
                             line=dict(color="#0072B2", width=2), marker=dict(size=8, color="#0072B2"),
                             customdata=hover, hovertemplate="%{x}: %{y:.1f}" + (" days" if unit == "days" else "%")
                                                             + " (%{customdata})<extra></extra>"))
    sc = d[d["special"] != ""]
    if len(sc):
        fig.add_trace(go.Scatter(x=sc["period"], y=sc["value"], mode="markers", name="special cause",
                                 marker=dict(size=13, color="#D55E00", symbol="diamond-open", line=dict(width=2.5)),
                                 customdata=sc["special"], hovertemplate="%{x}: special cause, %{customdata}"
                                                                         "<extra></extra>"))
    if (~full).any():
        fig.add_trace(go.Scatter(x=d.loc[~full, "period"], y=d.loc[~full, "value"], mode="markers",
                                 name="partial period (not in the limits)",
                                 marker=dict(size=9, color="white", line=dict(color="#0072B2", width=2))))
    what = "denominator" if many else "numerator/denominator" if percent else "visit gaps"
    fig.update_xaxes(title_text=f"Period ({result.period}); under each: {what}", type="category", tickvals=x,
                     ticktext=ticks, tickfont=dict(size=10 if many else 12), tickangle=-90 if many else 0)
    fig.update_yaxes(title_text=f"% of {ind.unit}" if percent else "Days", rangemode="tozero",
                     range=[0, 105] if percent else None)
    better = "higher is better" if result.higher_is_better(key) else "lower is better"
    target = result.targets.get(key)
    if target is not None:
        fig.add_trace(go.Scatter(x=x, y=[target] * len(x), mode="lines", name=f"target ({target:g}{'%' if percent else ' days'})",
                                 line=dict(color="#009E73", width=2, dash="dash"),
                                 hovertemplate=f"target {target:g}<extra></extra>"))
        better += f"; target {target:g}{'%' if percent else ' days'}"
    latest = _latest(d, unit, min_cell)
    lines = textwrap.wrap(f"{ind.numerator} / {ind.denominator}", 120)
    lines.append(f"{chart}; {better}" + (f"; {latest}" if latest else ""))
    base_layout(fig, f"{ind.name}<br><sup>" + "<br>".join(lines) + "</sup>", height=440)
    fig.update_layout(margin=dict(t=66 + 26 * len(lines), b=90))
    return legend_below(fig, plot_height=260, entry_px=300, axis_px=150 if many else 86)
