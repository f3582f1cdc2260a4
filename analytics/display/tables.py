"""Tables for people, and the data dictionary of the tables for machines.

Every table a result hands out (:class:`~analytics.protocol.TableSpec`) keeps machine-readable
column names and full precision: that is what the CSVs hold, with the data dictionary
(:func:`dictionary`) saying what each column means. What people read (the dashboard's tables,
the report, the XLSX) goes through :func:`for_people` (text) or :func:`for_sheet` (numbers kept
as numbers, with spreadsheet formats):

- labelled columns with units ("Median (weeks)", "Cumulative response by 12 weeks (%)");
- p-values as "< 0.001", "0.004", "0.44"; counts as integers; never scientific notation;
- dates without times; canonical display names (anti-MDA5, IVIG, "IVIG vs reference");
- no inf/NaN/None: missing values are "–", medians that are not reached say so.

>>> import pandas as pd
>>> for_people(pd.DataFrame({"arm": ["MMF"], "median": [float("inf")], "p": [3e-9]})).iloc[0].tolist()
['MMF', 'not reached', '< 0.001']
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Column", "COLUMNS", "column", "for_people", "for_sheet", "dictionary", "p_text", "number_text",
           "antibody_text", "agent_text", "term_text", "MISSING"]

MISSING = "–"  # an en dash: a value that does not exist or cannot be estimated


@dataclass(frozen=True)
class Column:
    """What a column holds. ``kind`` decides how people see it: count, number, p, proportion
    (0-1, shown as %), percent (0-100), weeks, days, date, boolean, ratio, arm, agent,
    antibody, term, covariate, indicator, by_unit (a quality value in its row's unit), text."""

    label: str
    unit: str = ""
    kind: str = "text"
    digits: int = 2
    description: str = ""

    @property
    def header(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def type(self) -> str:
        return {"count": "integer", "number": "number", "p": "number", "proportion": "number", "percent": "number",
                "weeks": "number", "days": "number", "ratio": "number", "by_unit": "number", "date": "date",
                "boolean": "boolean"}.get(self.kind, "text")


C = Column
_W = "weeks since the line start"
COLUMNS: dict[str, Column] = {
    # identifiers and codes
    "patient_id": C("Patient", kind="text", description="pseudonymous patient identifier from the export"),
    "line_id": C("Line", kind="text", description="therapy line: patient_id and line number"),
    "line_number": C("Line number", kind="count", description="1 for the patient's first systemic agent, 2 for the next, ..."),
    "agent": C("Agent", kind="agent", description="canonical generic name of the systemic agent (analytics.ingest.drugs)"),
    "arm": C("Arm", kind="arm", description="the arm the line's agent belongs to; empty for agents outside the arms"),
    "arm_a": C("Arm", kind="arm", description="first arm of the pair"),
    "arm_b": C("Compared with", kind="arm", description="second arm of the pair"),
    "antibody": C("Antibody", kind="antibody", description="myositis-specific antibodies (canonical codes, ';'-separated)"),
    "term": C("Term", kind="term", description="model term in the formula library's spelling (arm[T.IVIG], weeks:arm[T.IVIG])"),
    "covariate": C("Covariate", kind="covariate", description="covariate of the propensity model"),
    "key": C("Indicator", kind="indicator", description="indicator key (analytics.stats.quality.INDICATORS)"),
    "name": C("Indicator", description="indicator name"),
    "characteristic": C("Characteristic", description="row of Table 1; the unit follows the comma"),
    "step": C("Step", description="step from the rows read to the included lines"),
    "note": C("Note", description="what the step counts, or the arm's responses"),
    "period": C("Period", description="calendar year or quarter (dated exports); 'all' when the export gives days"),
    "unit": C("Unit", description="unit of value: % or days"),
    "better": C("Better", description="direction of improvement: higher or lower"),
    "target": C("Target", kind="by_unit", description="the department's target for the indicator (spec [quality.targets]); empty: none"),
    "meets_target": C("Meets target", kind="boolean", description="the value is on the better side of the target; empty: no target"),
    "time": C("Time (UTC)", description="when it happened, ISO 8601 in UTC"),
    "user": C("User", description="who: the login's email, or the operating-system user on the command line"),
    "action": C("Action", description="import, refused import, open, analyze, pack, compare, delete, ..."),
    "detail": C("Detail", description="what exactly: files and their sha256, output folder, counts"),
    "dataset_id": C("From dataset", description="the library's dataset (export) the period's value comes from"),
    "complete": C("Complete period", kind="boolean", description="the period ended by the export's last visit (a partial period is not compared)"),
    # line derivation
    "start_day": C("Start", "day", "days", description="day of the line start (days since the patient's first record)"),
    "end_day": C("End of follow-up", "day", "days", description="day follow-up ends: agent stopped, another agent started or last visit"),
    "baseline_day": C("Baseline visit", "day", "days", description="day of the baseline visit; empty when the line has none"),
    "baseline_cdasi": C("Baseline CDASI activity", "points", "number", 1, "CDASI activity score at the baseline visit (0-100)"),
    "included": C("Included", kind="boolean", description="1 when the line is analysed (in an arm, with a baseline and follow-up)"),
    "exclusion_reason": C("Excluded because", description="why the line is not analysed; empty when included"),
    "event": C("Response", kind="boolean", description="1 when the response rule was met during follow-up"),
    "time_weeks": C("Time to response or censoring", "weeks", "weeks", 1, "weeks from the line start to the response or the censoring"),
    "censor_reason": C("Censored because", description="why follow-up ended without a response"),
    "stop_reason": C("Stop reason", description="the export's reason for stopping the agent"),
    "end_reason": C("Follow-up ended by", description="what ended follow-up: stopped, added (another agent) or last visit"),
    "n_followup_visits": C("Follow-up visits", kind="count", description="scored visits after the baseline within follow-up"),
    "ongoing": C("Ongoing", kind="boolean", description="the agent had not stopped by the patient's last visit"),
    "visit_day": C("Visit", "day", "days", description="day of the visit (days since the patient's first record)"),
    "weeks": C("Weeks since line start", "weeks", "weeks", 1, _W),
    "cdasi_activity": C("CDASI activity", "points", "number", 1, "CDASI activity score at the visit (0-100)"),
    "cdasi_damage": C("CDASI damage", "points", "number", 1, "CDASI damage score at the visit (0-32)"),
    "visit_date": C("Visit date", kind="date", description="date of the visit"),
    "last_visit": C("Last visit", kind="date", description="date of the patient's last visit"),
    "day": C("Visit", "day", "days", description="day of the visit (days since the patient's first record)"),
    "row": C("Row in the export", kind="count", description="row number in the visits file (1 = first data row)"),
    "days_since_previous_visit": C("Days since previous visit", "days", "days", 0, "gap to the patient's previous visit"),
    # counts
    "n": C("n", kind="count", description="number of rows, visits, patients or lines the row counts"),
    "mean": C("Mean", kind="number", digits=1, description="mean of the arm's values in the bin (CDASI points or %)"),
    "definition": C("Definition", description="numerator / denominator of the indicator"),
    "lines": C("Lines", kind="count", description="number of therapy lines"),
    "events": C("Responses", kind="count", description="number of responses"),
    "responses": C("Responses", kind="count", description="responses before any competing event"),
    "stopped_first": C("Stopped first", kind="count", description="lines stopped for inefficacy or an adverse event before a response (competing event)"),
    "censored": C("Censored", kind="count", description="lines censored without an event"),
    "at_risk": C("At risk", kind="count", description="lines still at risk at the tick"),
    "n_lines": C("Lines", kind="count", description="lines in the model"),
    "n_events": C("Responses", kind="count", description="responses in the model"),
    "numerator": C("Numerator", kind="count", description="count meeting the indicator (empty for a median)"),
    "denominator": C("Denominator", kind="count", description="count the indicator is computed over"),
    "count": C("Count", kind="count", description="number of rows or episodes the finding concerns"),
    "tick": C("Week", "weeks", "weeks", 0, "time point of the risk table"),
    # survival
    "median": C("Median time to response", "weeks", "weeks", 1, "Kaplan-Meier median time to response; empty: not reached"),
    "median_lower": C("Median, lower limit", "weeks", "weeks", 1, "lower limit of the median's confidence interval (log-log); empty: not reached"),
    "median_upper": C("Median, upper limit", "weeks", "weeks", 1, "upper limit of the median's confidence interval; empty: not reached"),
    "km_median": C("Kaplan-Meier median", "weeks", "weeks", 1, "right-censored Kaplan-Meier median; empty: not reached"),
    "npmle_median_low": C("Turnbull median, from", "weeks", "weeks", 1, "start of the interval of Turnbull NPMLE medians"),
    "npmle_median_high": C("Turnbull median, to", "weeks", "weeks", 1, "end of the interval of Turnbull NPMLE medians"),
    "interval_tr": C("Time ratio, interval-censored", kind="ratio", description="Weibull AFT time ratio against the reference arm, interval-censored"),
    "interval_lower": C("Time ratio (interval), lower limit", kind="ratio", description="lower confidence limit"),
    "interval_upper": C("Time ratio (interval), upper limit", kind="ratio", description="upper confidence limit"),
    "right_tr": C("Time ratio, right-censored", kind="ratio", description="Weibull AFT time ratio against the reference arm, right-censored"),
    "right_lower": C("Time ratio (right), lower limit", kind="ratio", description="lower confidence limit"),
    "right_upper": C("Time ratio (right), upper limit", kind="ratio", description="upper confidence limit"),
    "statistic": C("Chi-square", kind="number", description="log-rank test statistic (1 df)"),
    "p": C("p", kind="p", description="two-sided p-value"),
    "p_holm": C("p (Holm)", kind="p", description="p-value with Holm's correction for the pairwise tests"),
    # regression
    "coef": C("log HR", kind="number", digits=3, description="Cox coefficient (log hazard ratio)"),
    "se": C("SE", kind="number", digits=3, description="standard error (robust, clustered by patient, for Cox)"),
    "se_model": C("Model SE", kind="number", digits=3, description="model-based (non-robust) standard error"),
    "hr": C("Hazard ratio", kind="ratio", description="hazard ratio of response against the reference (above 1: faster response)"),
    "lower": C("Lower limit", kind="number", description="lower confidence limit"),
    "upper": C("Upper limit", kind="number", description="upper confidence limit"),
    "estimate": C("Estimate", kind="number", digits=3, description="fixed-effect estimate (CDASI points, per week for weeks terms)"),
    "per_week": C("Slope", "points/week", "number", 3, "CDASI activity change per week"),
    "per_12_weeks": C("Change per 12 weeks", "points", "number", 1, "CDASI activity change per 12 weeks"),
    "diff": C("Slope difference", "points/week", "number", 3, "slope minus the reference arm's slope"),
    "diff_lower": C("Slope difference, lower limit", "points/week", "number", 3, "lower confidence limit"),
    "diff_upper": C("Slope difference, upper limit", "points/week", "number", 3, "upper confidence limit"),
    "diff_p": C("p (slope difference)", kind="p", description="p-value of the slope difference (t with Satterthwaite df; Wald z when no df)"),
    "df": C("df", kind="number", digits=1, description="Satterthwaite degrees of freedom of the t interval and test (as lmerTest); empty: Wald z"),
    "diff_df": C("df (slope difference)", kind="number", digits=1, description="Satterthwaite degrees of freedom of the slope difference"),
    "level": C("Level", description="the level of the mixed model's random effects: patient, line within patient, or visit to visit"),
    "intercept_sd": C("SD of intercepts", "points", "number", 2, "standard deviation of the level's random intercepts (CDASI activity at the line start)"),
    "slope_sd_per_week": C("SD of slopes", "points/week", "number", 3, "standard deviation of the level's random slopes for weeks"),
    "correlation": C("Intercept-slope correlation", kind="number", digits=2, description="correlation of the level's random intercepts and slopes"),
    "residual_sd": C("Residual SD", "points", "number", 2, "visit-to-visit standard deviation around a line's own trajectory"),
    "share_week_0": C("Share of variance at week 0", "%", "percent", 1, "the level's share of the variance of CDASI activity around the arm's mean, at the line start"),
    "share_week_12": C("Share of variance at week 12", "%", "percent", 1, "the level's share of the variance of CDASI activity around the arm's mean, 12 weeks into the line"),
    "smd_before": C("SMD before weighting", kind="number", description="absolute standardised mean difference, unweighted"),
    "smd_after": C("SMD after weighting", kind="number", description="absolute standardised mean difference, IPT-weighted"),
    "SMD": C("SMD", description="largest absolute pairwise standardised mean difference between arms"),
    # quality
    "value": C("Value", kind="by_unit", digits=1, description="the indicator: a percentage, or days for the median interval"),
    # validation report
    "message": C("Finding", description="what is wrong or was changed"),
    "fix": C("How to fix it", description="what to change in the export"),
    "severity": C("Severity", description="error (the file is refused) or warning"),
    "rule": C("Rule", description="the check's name"),
    "file": C("File", description="visits or therapies"),
    "column": C("Column", description="the column concerned"),
    "rows": C("Rows", description="rows concerned (1 = first data row)"),
    "patient_ids": C("Patients", description="patients concerned"),
    # stepwise scheme (spec [scheme]; the scheme tables' own "step" and "name" are in _BY_TABLE)
    "agents": C("Agents", description="the step's agents (canonical names, comma-separated)"),
    "step_name": C("Step name", description="the step's name in the scheme"),
    "response_pct": C("Response", "%", "percent", 1, "included lines of the step with a response during follow-up (%)"),
    "response_lower": C("Response, lower limit", "%", "percent", 1, "lower Wilson confidence limit of the response percentage"),
    "response_upper": C("Response, upper limit", "%", "percent", 1, "upper Wilson confidence limit of the response percentage"),
    "excluded_lines": C("Excluded lines", kind="count", description="derived lines of the step that are not analysed (no baseline or follow-up)"),
    "patients": C("Patients", kind="count", description="number of patients"),
    "median_weeks": C("Median time to response", "weeks", "weeks", 1, "Kaplan-Meier median time to response; empty: not reached"),
    "time_on_step_weeks": C("Median time on step", "weeks", "weeks", 1, "Kaplan-Meier median time from the line start to its end (stopped or changed); lines still on the agent at the last visit are censored"),
    "time_on_step_lower": C("Time on step, lower limit", "weeks", "weeks", 1, "lower confidence limit of the median time on step; empty: not reached"),
    "time_on_step_upper": C("Time on step, upper limit", "weeks", "weeks", 1, "upper confidence limit of the median time on step; empty: not reached"),
    "derived_lines": C("Derived lines", kind="count", description="lines derived from the export, analysed or not"),
    "measure": C("Measure", description="adherence measure (analytics.stats.scheme.ADHERENCE)"),
    "pct": C("Percent", "%", "percent", 1, "numerator / denominator (%); empty when the denominator is 0"),
    "skipped": C("Steps skipped", description="earlier steps the patient had not tried when the line started"),
    "assessment_weeks": C("Assessed at", "weeks", "weeks", 1, "weeks since the line start of the visit that judged the line"),
    "started_in_window": C("Next line started in time", kind="boolean", description="a line of a later step started within the escalation time after the failed assessment"),
    # manifest
    "path": C("File", description="path inside the pack"),
    "sha256": C("SHA-256", description="checksum of the file"),
    "bytes": C("Size", "bytes", "count", description="file size"),
}

_TIMED = [  # columns named after a time point: cum_12w, response_24w_lower, ...
    (re.compile(r"^cum_(\d+(?:\.\d+)?)w$"), "Cumulative response by {t} weeks", "Kaplan-Meier cumulative response (1 - S) by week {t}"),
    (re.compile(r"^response_(\d+(?:\.\d+)?)w$"), "Cumulative incidence of response by {t} weeks",
     "Aalen-Johansen cumulative incidence of response by week {t}, with stopping first as a competing event"),
    (re.compile(r"^stopped_(\d+(?:\.\d+)?)w$"), "Cumulative incidence of stopping first by {t} weeks",
     "Aalen-Johansen cumulative incidence of stopping before response by week {t}"),
]


_BY_TABLE: dict[str, dict[str, Column]] = {  # a column whose meaning depends on the table (by name prefix)
    "scheme": {
        "step": C("Step", description="step of the stepwise scheme (1 = first; spec [scheme]); 'all' for the total over steps"),
        "name": C("Step name", description="the step's name in the scheme"),
    },
}


def column(name: str, table: str = "") -> Column:
    """What the column ``name`` holds (of the table ``table``): from the table's own meanings
    (:data:`_BY_TABLE`), from :data:`COLUMNS`, from its name's pattern (``cum_12w``,
    ``..._lower``), or, for Table 1's arm columns, text."""
    for prefix, cols in _BY_TABLE.items():
        if table.startswith(prefix) and name in cols:
            return cols[name]
    if name in COLUMNS:
        return COLUMNS[name]
    base, limit = name, ""
    for suffix, word in (("_lower", "lower"), ("_upper", "upper")):
        if name.endswith(suffix):
            base, limit = name[: -len(suffix)], word
    for pattern, label, description in _TIMED:
        m = pattern.match(base)
        if m:
            t = m.group(1)
            label, description = label.format(t=t), description.format(t=t)
            if limit:
                return Column(f"{label}, {limit} limit", "%", "proportion", 1,
                              f"{limit} confidence limit of the {label.lower()}")
            return Column(label, "%", "proportion", 1, description)
    if table == "table1":
        return Column(name, description=f"the characteristic in arm {name}: n (%) or mean (SD); median [IQR]")
    return _input_column(name) or Column(name.replace("_", " ").capitalize(), kind="text")


def _input_column(name: str) -> Column | None:
    """An input column (a visit table shown back): its meaning from the data dictionary."""
    from ..ingest.schema import THERAPY_COLUMNS, VISIT_COLUMNS

    for c in VISIT_COLUMNS + THERAPY_COLUMNS:
        if c.name == name:
            kind = {"date": "date", "event_date": "date", "day": "days", "number": "number", "flag": "boolean"}.get(c.kind, "text")
            if name == "antibody":
                kind = "antibody"
            unit = "day" if c.kind == "day" else ""
            return Column(name.replace("_", " ").capitalize(), unit, kind, 1, c.meaning)
    return None


# ------------------------------------------------------------------ values as text
def _finite(v) -> bool:
    try:
        return v is not None and v is not pd.NA and v is not pd.NaT and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _missing(v) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def number_text(x, digits: int = 2, thousands: bool = True) -> str:
    """A number in fixed notation, never scientific: ``digits`` decimals, or as many as two
    significant figures need for a small non-zero value (0.00042, not 4.2e-04)."""
    x = float(x)
    if x == 0:
        return f"{0:.{digits}f}"
    d = digits
    if abs(x) < 10 ** -digits:
        d = min(12, int(math.ceil(-math.log10(abs(x)))) + 1)
    return f"{x:,.{d}f}" if thousands else f"{x:.{d}f}"


def p_text(p) -> str:
    """A p-value as people read it: "< 0.001", "0.004", "0.44", "1.00"."""
    if not _finite(p):
        return MISSING
    p = float(p)
    if p < 0.001:
        return "< 0.001"
    if p < 0.01:
        return f"{p:.3f}"
    return f"{p:.2f}"


_ANTIBODIES = {"mda5": "anti-MDA5", "tif1g": "anti-TIF1-gamma", "nxp2": "anti-NXP2", "sae": "anti-SAE",
               "mi2": "anti-Mi-2", "negative": "antibody negative", "unknown": "unknown"}


def antibody_text(value) -> str:
    """``"mda5;tif1g"`` -> ``"anti-MDA5, anti-TIF1-gamma"``."""
    if _missing(value) or str(value) == "":
        return MISSING
    return ", ".join(_ANTIBODIES.get(a.strip(), a.strip()) for a in str(value).split(";") if a.strip())


def agent_text(value) -> str:
    """``"ivig"`` -> ``"IVIG"``, ``"mycophenolate"`` -> ``"Mycophenolate"``."""
    if _missing(value) or str(value) == "":
        return MISSING
    v = str(value)
    return v.upper() if v in ("ivig",) else v[:1].upper() + v[1:]


def _covariate_text(value) -> str:
    from ..lines.analysis_table import COVARIATE_LABELS

    return COVARIATE_LABELS.get(str(value), str(value).replace("_", " "))


def term_text(value) -> str:
    """A model term for people: ``arm[T.IVIG]`` -> "IVIG vs reference arm", ``weeks:arm[T.JAKi]``
    -> "weeks × JAKi", ``baseline_cdasi`` -> "Baseline CDASI activity (points)"."""
    if _missing(value):
        return MISSING
    parts = []
    for piece in str(value).split(":"):
        m = re.fullmatch(r"arm\[T\.(.+)\]", piece)
        if m:
            parts.append(m.group(1))
        elif piece == "weeks":
            parts.append("weeks")
        else:
            parts.append(_covariate_text(piece))
    if len(parts) == 1 and str(value).startswith("arm[T."):
        return f"{parts[0]} vs reference arm"
    if parts[0] == "weeks" and len(parts) == 2:
        return f"weeks × {parts[1]} (slope difference)"
    return " × ".join(parts)


def _value_text(v, col: Column, row: pd.Series | None = None) -> str:
    if isinstance(v, str):  # suppressed cells ("<5") and text pass through, canonicalised by kind
        if col.kind == "antibody":
            return antibody_text(v)
        if col.kind == "agent":
            return agent_text(v)
        if col.kind == "term":
            return term_text(v)
        if col.kind == "covariate":
            return _covariate_text(v)
        if col.kind == "arm":
            return v or "(no arm)"
        return v
    if _missing(v):
        return "" if col.type == "text" else MISSING
    if col.kind == "boolean":
        return "yes" if bool(v) else "no"
    if col.kind == "date":
        return pd.Timestamp(v).date().isoformat()
    if isinstance(v, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(v).date().isoformat()
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if not isinstance(v, (int, float, np.integer, np.floating)):
        return str(v)
    if not math.isfinite(float(v)):
        if col.kind == "weeks":
            return "not reached"
        return "not estimable"
    if col.kind == "p":
        return p_text(v)
    if col.kind == "count":
        return f"{int(round(float(v))):,}"
    if col.kind == "proportion":
        pct = 100 * float(v)
        return f"{number_text(pct, col.digits)}%" if math.isfinite(pct) else "not estimable"
    if col.kind == "percent":
        return f"{number_text(v, col.digits)}%"
    if col.kind == "by_unit":
        unit = str(row.get("unit", "")) if row is not None else ""
        if unit == "%":
            return f"{number_text(v, 1)}%"
        return f"{number_text(v, 0 if float(v).is_integer() else 1)}" + (f" {unit}" if unit else "")
    if col.kind in ("days",):
        return number_text(v, 0 if float(v).is_integer() else 1)
    if col.kind == "weeks":
        return number_text(v, col.digits)
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    return number_text(v, col.digits)


def _people_columns(df: pd.DataFrame, table: str) -> list[str]:
    """The columns people see: the machine key is dropped where a name says the same."""
    cols = list(df.columns)
    if "key" in cols and "name" in cols:
        cols.remove("key")
    if "unit" in cols and "value" in cols:  # the value carries its unit
        cols.remove("unit")
    return cols


def _headers(cols: list[str], table: str) -> list[str]:
    out, seen = [], {}
    for c in cols:
        h = column(str(c), table).header
        seen[h] = seen.get(h, 0) + 1
        out.append(h if seen[h] == 1 else f"{h} [{c}]")
    return out


def for_people(df: pd.DataFrame, table: str = "") -> pd.DataFrame:
    """The table as text people read: labelled columns with units, formatted values, canonical
    names, no inf/NaN/None. ``table``: the table's name (Table 1's arm columns are text)."""
    cols = _people_columns(df, table)
    specs = {c: column(str(c), table) for c in cols}
    out = {}
    frame = df.reset_index(drop=True)
    for c in cols:
        spec = specs[c]
        if spec.kind == "by_unit":
            out[c] = [_value_text(v, spec, r) for v, (_, r) in zip(frame[c], frame.iterrows())]
        else:
            out[c] = [_value_text(v, spec) for v in frame[c]]
    result = pd.DataFrame(out, columns=cols)
    result.columns = _headers(cols, table)
    return result


# ------------------------------------------------------------------ values for a spreadsheet
_EXCEL = {"count": "#,##0", "proportion": "0.0%", "percent": '0.0"%"', "weeks": "0.0", "days": "0",
          "p": '[<0.001]"< 0.001";0.000', "ratio": "0.00", "date": "yyyy-mm-dd"}


def for_sheet(df: pd.DataFrame, table: str = "") -> tuple[pd.DataFrame, dict[str, str]]:
    """The table for a spreadsheet: labelled columns, canonical names, numbers kept as numbers
    (with the number format of each column, by header), dates as dates, missing cells empty
    and infinite values as text ("not reached")."""
    cols = _people_columns(df, table)
    frame = df.reset_index(drop=True)
    out, formats = {}, {}
    headers = _headers(cols, table)
    for c, h in zip(cols, headers):
        spec = column(str(c), table)
        s = frame[c]
        numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        if spec.kind == "boolean" or pd.api.types.is_bool_dtype(s):
            out[h] = [("yes" if bool(v) else "no") if not _missing(v) else None for v in s]
        elif spec.kind == "date" or pd.api.types.is_datetime64_any_dtype(s):
            out[h] = [None if _missing(v) else pd.Timestamp(v).date() for v in s]
            formats[h] = _EXCEL["date"]
        elif numeric:
            vals = []
            for v in s:
                if _missing(v):
                    vals.append(None)
                elif not math.isfinite(float(v)):
                    vals.append("not reached" if spec.kind == "weeks" else "not estimable")
                elif spec.kind == "count":
                    vals.append(int(round(float(v))))
                else:
                    vals.append(float(v))
            out[h] = vals
            if spec.kind == "by_unit":
                formats[h] = "0.0"
            else:
                formats[h] = _EXCEL.get(spec.kind, "#,##0" if pd.api.types.is_integer_dtype(s) else "0.00"
                                        if spec.digits <= 2 else "0." + "0" * spec.digits)
        else:
            out[h] = [None if (_missing(v) or v == "") and spec.type != "text" else
                      ("" if _missing(v) else _value_text(v, spec)) for v in s]
    return pd.DataFrame(out, columns=headers), formats


# ------------------------------------------------------------------ the data dictionary
def dictionary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per column of every table: table, column (the CSV header), label, unit, type,
    description. Written next to the CSVs (``tables/data_dictionary.csv``)."""
    rows = []
    for name, df in tables.items():
        for c in df.columns:
            spec = column(str(c), name)
            kind = spec.type
            if kind == "text" and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]):
                kind = "number"
            rows.append({"table": name, "column": str(c), "label": spec.label, "unit": spec.unit, "type": kind,
                         "description": spec.description})
    return pd.DataFrame(rows, columns=["table", "column", "label", "unit", "type", "description"])
