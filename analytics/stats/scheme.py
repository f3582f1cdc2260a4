"""The department's stepwise scheme as a view of its own data: outcomes per step, refractory
lines by agent, and adherence to the ladder (contract section 6).

Definitions (each is tested on a hand-worked fixture in tests/test_scheme.py):

- **Step** of a line: the step of its agent in the scheme; agents in no step are "outside the
  scheme", counted and named, never dropped.
- **Refractory line**: an included line of a patient in whom an earlier included line (lower
  ``line_number``) ended without a response event. An excluded earlier line does not count, and
  an earlier responder does not make a line refractory. History is the patient's whole export,
  also when the cohort filters show only some of the lines.
- **Judged at the assessment time**: a line that reached the assessment window (its follow-up
  window lasts at least ``assess_weeks - assess_window_weeks``) has a scored follow-up visit
  within ``assess_window_weeks`` of ``assess_weeks``. The visit closest to ``assess_weeks`` is
  the assessment (the earlier one on a tie).
- **Failed assessment**: a judged line without a response event by its assessment visit. It is
  **escalated** when a line of a later step starts from the assessment visit's day to
  ``escalate_weeks`` after it; lines of the top step have nothing to escalate to and are
  counted apart.
- **Skipped step**: a step j that a patient's first line in step k > j jumped over: no earlier
  line (any status) of step j. Each skipped step counts once per patient, at the jump (HCQ
  never tried, then MMF, then IVIG: step 1 skipped once, at MMF).
- **Time on step**: weeks from a line's start to the end of its follow-up window (stop, switch or
  add); lines still going at the patient's last visit are censored (Kaplan-Meier median).
"""

from __future__ import annotations

import textwrap

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..display.style import arm_color, base_layout, count_text, figure_width, needs_width
from ..ingest.validate import Prepared
from ..lines.analysis_table import analysis_table
from ..lines.derive import Derivation
from ..lines.scheme import Scheme
from ..protocol import Call, FigureSpec, TableSpec, ci_label, recorded, z_value
from .cox import CoxResult, fit_cox

__all__ = ["SchemeResult", "fit_scheme", "PUBLISHED", "published_series", "ladder_figure", "paths_figure", "refractory_figure"]

# Published response proportions in refractory cutaneous dermatomyositis (shared/domain.md), drawn
# beside this cohort's and always labelled as published: (agent, responders, patients, range %,
# text, source). A single series (MMF) is drawn with its Wilson interval at the analysis' level;
# IVIG: the range across two series, not an interval.
PUBLISHED = (
    ("MMF", 10, 12, None, "10 of 12 improved (83%)", "Edge et al., Arch Dermatol 2006"),
    ("IVIG", None, None, (70.0, 87.0), "70-87% improved (range of two series)",
     "Galimberti et al. 2018; Bounfour et al. 2014"),
)


def published_series(alpha: float = 0.05) -> list[tuple[str, float, float, float, str, str]]:
    """The published series as drawn: (agent, point %, low %, high %, text, source); a single
    series' interval is its Wilson interval at ``1 - alpha`` (MMF at 95%: 55.2-95.3%)."""
    out = []
    for agent, k, n, rng, text, source in PUBLISHED:
        if rng is None:
            lo, hi = wilson(k, n, alpha)
            out.append((agent, 100.0 * k / n, lo, hi, f"{text[:-1]}; Wilson {ci_label(alpha)} {lo:.0f}-{hi:.0f}%)",
                        source))
        else:
            out.append((agent, (rng[0] + rng[1]) / 2, rng[0], rng[1], text, source))
    return out


PUBLISHED_NOTE = ("JAK inhibitors: tofacitinib in 10 refractory patients, CDASI activity 28 -> 9.5 at 12 weeks "
                  "(Paik et al., Arthritis Rheumatol 2021): a mean change, not a proportion, so not drawn.")
REFRACTORY_CAVEAT = ("Refractory lines are defined by a failed earlier line: an observational comparison, "
                     "confounded by indication (later agents go to harder disease). Read it beside the "
                     "adjusted Cox model, not as an effect of the agents.")


def _pct(num: int, den: int) -> float | None:
    return 100.0 * num / den if den else None


def wilson(num: int, den: int, alpha: float = 0.05) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion, in % (statsmodels' ``proportion_confint``)."""
    if not den:
        return None, None
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(num, den, alpha=alpha, method="wilson")
    return 100.0 * float(lo), 100.0 * float(hi)


def _none(x) -> float | None:
    return None if x is None or (isinstance(x, float) and not np.isfinite(x)) else float(x)


@dataclass(frozen=True)
class SchemeResult:
    scheme: Scheme
    lines: pd.DataFrame = field(repr=False)  # every line of the cohort with its step and flags
    steps: pd.DataFrame = field(repr=False)
    outside: pd.DataFrame = field(repr=False)
    refractory: pd.DataFrame = field(repr=False)
    refractory_cox: CoxResult | None = field(repr=False)
    adherence: pd.DataFrame = field(repr=False)  # one row per measure and step
    skipped: pd.DataFrame = field(repr=False)  # patient level: drill-down
    not_escalated: pd.DataFrame = field(repr=False)  # patient level: drill-down
    arms: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)
    alpha: float = 0.05
    call: Call | None = field(default=None, compare=False)

    @property
    def summary(self) -> pd.DataFrame:
        """One row per step: lines, responses by the assessment (% with Wilson limits), median
        time to response and time on step (the ``steps`` table)."""
        return self.steps

    # ---------------------------------------------------------------- results.json
    def to_dict(self) -> dict:
        s = self.scheme
        steps = []
        for r in self.steps.itertuples():
            steps.append({"step": int(r.step), "name": r.name, "agents": list(s.steps[int(r.step) - 1].agents),
                          "lines": int(r.lines), "responses": int(r.responses), "response_pct": _none(r.response_pct),
                          "response_pct_ci": [_none(r.response_lower), _none(r.response_upper)],
                          "median_weeks": _none(r.median), "median_ci": [_none(r.median_lower), _none(r.median_upper)],
                          "excluded_lines": int(r.excluded_lines), "patients": int(r.patients),
                          "time_on_step_median_weeks": _none(r.time_on_step),
                          "time_on_step_ci": [_none(r.time_on_step_lower), _none(r.time_on_step_upper)]})
        refractory = {}
        for r in self.refractory.itertuples():
            refractory[r.agent] = {"step": None if pd.isna(r.step) else int(r.step), "lines": int(r.lines),
                                   "responses": int(r.responses), "response_pct": _none(r.response_pct),
                                   "response_pct_ci": [_none(r.response_lower), _none(r.response_upper)],
                                   "median_weeks": _none(r.median), "median_ci": [_none(r.median_lower),
                                                                                   _none(r.median_upper)]}
        adherence = {}
        for key, rows in self.adherence.groupby("measure", sort=False):
            total = rows[rows["step"] == "all"].iloc[0]
            adherence[key] = {"numerator": int(total["numerator"]), "denominator": int(total["denominator"]),
                              "pct": _none(total["pct"]), "definition": total["definition"],
                              "by_step": {str(r["step"]): {"numerator": int(r["numerator"]),
                                                           "denominator": int(r["denominator"]), "pct": _none(r["pct"])}
                                          for _, r in rows.iterrows() if r["step"] != "all"}}
        ln = self.lines
        inc = ln[ln["included"] == 1]
        return {
            "name": s.name, "source": s.source, "assess_weeks": s.assess_weeks,
            "assess_window_weeks": s.assess_window_weeks, "escalate_weeks": s.escalate_weeks,
            "definition": s.to_dict(),
            "steps": steps,
            "outside": {"lines": int((inc["step"] == 0).sum()), "derived_lines": int((ln["step"] == 0).sum()),
                        "agents": {r.agent: {"lines": int(r.lines), "derived_lines": int(r.derived_lines)}
                                   for r in self.outside.itertuples()}},
            "refractory": {"definition": "an included line of a patient in whom an earlier included line (lower "
                                         "line_number) ended without a response event",
                           "lines": int(inc["refractory"].sum()),
                           "responses": int(inc.loc[inc["refractory"], "event"].sum()),
                           "agents": refractory,
                           "cox": self.refractory_cox.to_dict() if self.refractory_cox is not None else None,
                           "caveat": REFRACTORY_CAVEAT},
            "adherence": adherence,
            "warnings": list(self.warnings),
        }

    # ---------------------------------------------------------------- tables and figures
    def tables(self) -> dict[str, TableSpec]:
        steps = self.steps.rename(columns={"median": "median_weeks", "time_on_step": "time_on_step_weeks"})
        out = {
            "steps": TableSpec(steps, f"{self.scheme.name}: outcomes per step",
                               counts=("lines", "responses", "excluded_lines", "patients"),
                               derived=("response_pct", "response_lower", "response_upper", "median_weeks",
                                        "median_lower", "median_upper", "time_on_step_weeks", "time_on_step_lower",
                                        "time_on_step_upper")),
            "outside": TableSpec(self.outside, "Lines of agents outside the scheme", counts=("lines", "derived_lines")),
            "refractory": TableSpec(self.refractory, "Refractory lines by agent (an earlier included line ended "
                                    "without a response)", counts=("lines", "responses"),
                                    derived=("response_pct", "response_lower", "response_upper", "median",
                                             "median_lower", "median_upper")),
            "adherence": TableSpec(self.adherence, "Adherence to the scheme", counts=("numerator", "denominator"),
                                   derived=("pct",)),
            "skipped": TableSpec(self.skipped, "Lines that entered a step with an earlier step skipped",
                                 patient_level=True, in_report=False),
            "not_escalated": TableSpec(self.not_escalated, "Failed assessments not escalated in time",
                                       patient_level=True, in_report=False),
        }
        if self.refractory_cox is not None:
            out["refractory_cox"] = self.refractory_cox.tables()["hazard_ratios"]
        return out

    def figures(self) -> dict[str, FigureSpec]:
        out = {"ladder": FigureSpec(lambda mc, hidden: ladder_figure(self, min_cell=mc),
                                    "The scheme's steps with this cohort's outcomes"),
               "paths": FigureSpec(lambda mc, hidden: paths_figure(self, min_cell=mc),
                                   "Patients' paths through the steps"),
               "refractory": FigureSpec(lambda mc, hidden: refractory_figure(self, min_cell=mc),
                                        "Response among refractory lines by agent, beside published series")}
        if self.refractory_cox is not None and len(self.refractory_cox.summary):
            out["refractory_cox"] = FigureSpec(
                lambda mc, hidden: self.refractory_cox.figure(
                    title="Refractory lines: Cox model, adjusted (hazard ratios of response)", min_cell=mc),
                "Refractory lines: adjusted Cox model")
        return out


# -------------------------------------------------------------------- the fit
@recorded(derivation="derivation", full="full", prepared="prepared", table="table")
def fit_scheme(derivation: Derivation, full: Derivation, prepared: Prepared | None = None,
               scheme: Scheme | None = None, adjust_for: tuple[str, ...] = (), alpha: float = 0.05,
               table: pd.DataFrame | None = None) -> SchemeResult:
    """The scheme view of the (filtered) cohort ``derivation``; ``full``: the whole export's
    derivation, the patients' history (refractory, skipped steps, escalation). ``table``: the
    analysis table of ``derivation`` and ``prepared``, if already built (it is built otherwise)."""
    from .survival import fit_km

    scheme = scheme or Scheme.default()
    warns: list[str] = []
    arms = tuple(derivation.options.arms)
    history = _history(full.lines, scheme)
    for part in _assessments(history, full.trajectories, scheme):  # on history's index: its columns added, in
        for c in part.columns:                                     # place (a join would copy every column)
            history[c] = part[c]
    shown = history["line_id"].isin(derivation.lines["line_id"].to_numpy())
    if shown.all() and history.index.equals(pd.RangeIndex(len(history))):
        lines = history  # no cohort filter: every line (not a copy of them all)
    else:
        lines = history[shown].reset_index(drop=True)
    del history, shown
    inc = lines[lines["included"] == 1]

    # per step
    names = {i: s.name for i, s in enumerate(scheme.steps, 1)}
    km_table = pd.DataFrame({"arm": inc["step_name"], "time": inc["time_weeks"].astype(float),
                             "event": inc["event"].astype(int)})
    ordered = [names[i] for i in names]
    km = fit_km(km_table, ordered, alpha=alpha, tests=False) if len(inc) else None
    stay = pd.DataFrame({"arm": inc["step_name"], "time": ((inc["end_day"] - inc["start_day"]) / 7.0).astype(float),
                         "event": (inc["end_reason"] != "last visit").astype(int)})
    km_stay = fit_km(stay, ordered, alpha=alpha, tests=False) if len(inc) else None
    rows = []
    for i, name in names.items():
        sub, all_lines = inc[inc["step"] == i], lines[lines["step"] == i]
        n, r = len(sub), int(sub["event"].sum())
        lo, hi = wilson(r, n, alpha)
        row = {"step": i, "name": name, "agents": ", ".join(scheme.steps[i - 1].agents), "lines": n, "responses": r,
               "response_pct": _pct(r, n), "response_lower": lo, "response_upper": hi,
               "excluded_lines": len(all_lines) - n, "patients": int(sub["patient_id"].nunique())}
        for prefix, fit in (("median", km), ("time_on_step", km_stay)):
            s = fit.summary.loc[name] if fit is not None and n else None
            row |= {prefix: s["median"] if s is not None else np.nan,
                    f"{prefix}_lower": s["median_lower"] if s is not None else np.nan,
                    f"{prefix}_upper": s["median_upper"] if s is not None else np.nan}
        rows.append(row)
    steps = pd.DataFrame(rows).replace([np.inf, -np.inf], np.nan)  # a median not reached: NaN (null in results.json)
    for fit in (km, km_stay):
        if fit is not None:
            warns.extend(w for w in fit.warnings if "log-rank" not in w and "no included lines" not in w)

    outside_all = lines[lines["step"] == 0]
    outside = (outside_all.groupby("label").agg(derived_lines=("line_id", "size"), lines=("included", "sum"))
               .reset_index().rename(columns={"label": "agent"}))
    outside = outside[["agent", "lines", "derived_lines"]].sort_values(["lines", "agent"], ascending=[False, True],
                                                                         ignore_index=True)
    if len(outside_all):
        warns.append(f"{len(outside_all)} line(s) of agents outside the scheme ({', '.join(outside['agent'])}) "
                     "have no step; they are counted apart")

    refractory = _refractory_table(inc, scheme, alpha, warns)
    cox = None
    ref_ids = set(inc.loc[inc["refractory"], "line_id"])
    if ref_ids:
        table = analysis_table(derivation, prepared) if table is None else table
        table = table[table["line_id"].isin(ref_ids)].reset_index(drop=True)
        if len(table):
            cox = fit_cox(table, arms, tuple(adjust_for), alpha=alpha)
            warns.extend(f"refractory Cox model: {w}" for w in cox.warnings)
    adherence, skipped, not_escalated = _adherence(lines, scheme)
    return SchemeResult(scheme, lines, steps, outside, refractory, cox, adherence, skipped, not_escalated, arms,
                        warns, alpha)


def _history(lines: pd.DataFrame, scheme: Scheme) -> pd.DataFrame:
    """Every derived line with its step (0: outside), the scheme's label of its agent, whether it
    is refractory and which earlier steps its patient had."""
    ln = lines.sort_values(["patient_id", "line_number"], kind="stable").reset_index(drop=True)
    agents = pd.unique(ln["agent"])
    step_of = {a: scheme.step_of(a) or 0 for a in agents}
    label_of = {a: scheme.label_of(a) for a in agents}
    out = ln[["patient_id", "line_id", "line_number", "agent", "arm", "start_day", "end_day", "included",
              "exclusion_reason", "event", "time_weeks", "end_reason"]].copy()
    out["included"] = out["included"].astype(int)
    out["label"] = out["agent"].map(label_of)
    out["step"] = out["agent"].map(step_of).astype(int)
    out["step_name"] = out["step"].map({s: scheme.step_name(s) for s in pd.unique(out["step"])})
    failed = ((out["included"] == 1) & (out["event"].fillna(1) == 0)).astype(int)
    earlier_failures = failed.groupby(out["patient_id"]).cumsum() - failed
    out["refractory"] = (out["included"] == 1) & (earlier_failures > 0)
    # for each step j: has the patient had a line (any status) of step j before this line?
    patient = out["patient_id"].to_numpy()
    before = {}
    for j in range(1, len(scheme.steps)):
        in_j = (out["step"] == j).astype(int)
        before[j] = (in_j.groupby(patient).cumsum() - in_j).to_numpy() > 0
    first = (~out.duplicated(["patient_id", "step"]) & (out["step"] >= 2)).to_numpy()
    skipped = np.full(len(out), "", dtype=object)
    counted: set[int] = set()  # a step skipped is counted once per patient: where the patient jumped over it
    last = None
    entries = np.flatnonzero(first)
    # plain lists: indexing a numpy array element by element costs more than the loop's own work
    had = {j: b[entries].tolist() for j, b in before.items()}
    for n, (i, who, k) in enumerate(zip(entries.tolist(), patient[entries].tolist(),
                                        out["step"].to_numpy()[entries].tolist())):
        if who != last:
            counted, last = set(), who
        new = [j for j in range(1, k) if not had[j][n] and j not in counted]
        if new:
            counted.update(new)
            skipped[i] = ", ".join(map(str, new))
    out["skipped_steps"] = skipped
    out["enters_step"] = first
    return out


def _assessments(history: pd.DataFrame, trajectories: pd.DataFrame, scheme: Scheme) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per line in a step: whether it reached the assessment window, its assessment visit, and
    whether that assessment failed and was escalated."""
    a, w, e = scheme.assess_weeks, scheme.assess_window_weeks, scheme.escalate_weeks
    h = history
    duration = (h["end_day"] - h["start_day"]) / 7.0
    reached = (h["included"] == 1) & (h["step"] > 0) & (duration >= a - w - 1e-9)
    t = trajectories[(trajectories["weeks"] > 0) & trajectories["cdasi_activity"].notna()
                     & (trajectories["weeks"] >= a - w - 1e-9) & (trajectories["weeks"] <= a + w + 1e-9)]
    t = t.assign(dist=(t["weeks"] - a).abs()).sort_values(["line_id", "dist", "weeks"], kind="stable")
    visit = t.drop_duplicates("line_id").set_index("line_id")
    ids = h["line_id"]
    assess_weeks = ids.map(visit["weeks"]).where(reached)
    assess_day = ids.map(visit["visit_day"]).where(reached)
    judged = pd.DataFrame({"reached_assessment": reached, "judged": assess_weeks.notna(),
                           "assessment_weeks": assess_weeks, "assessment_day": assess_day}, index=h.index)
    responded = (h["event"] == 1) & (h["time_weeks"] <= assess_weeks + 1e-9)
    fail = judged["judged"] & ~responded
    top = h["step"] == len(scheme.steps)
    # a line of a later step started from the assessment day to escalate_weeks after it
    escalated = pd.Series(False, index=h.index)
    changed = pd.Series("", index=h.index, dtype=object)
    due = h.loc[fail & ~top, ["patient_id", "line_number", "step"]].assign(day=assess_day[fail & ~top])
    if len(due):
        pairs = due.reset_index().merge(h[["patient_id", "line_number", "start_day", "step", "label"]],
                                        on="patient_id", suffixes=("", "_next"))
        pairs = pairs[(pairs["line_number_next"] > pairs["line_number"]) & (pairs["start_day"] >= pairs["day"])
                      & (pairs["start_day"] <= pairs["day"] + e * 7 + 1e-9)]
        escalated.loc[pairs.loc[pairs["step_next"] > pairs["step"], "index"].unique()] = True
        pairs = pairs.sort_values(["index", "line_number_next"])
        alone = ~pairs["index"].duplicated(keep=False)  # one line started: its label, no join
        changed.loc[pairs.loc[alone, "index"].to_numpy()] = pairs.loc[alone, "label"].to_numpy()
        if not alone.all():
            started = pairs[~alone].groupby("index")["label"].agg(", ".join)
            changed.loc[started.index] = started
    failed = pd.DataFrame({"failed_assessment": fail, "top_step": top, "escalated": escalated,
                           "started_in_window": changed}, index=h.index)
    return judged, failed


def _refractory_table(inc: pd.DataFrame, scheme: Scheme, alpha: float, warns: list[str]) -> pd.DataFrame:
    from .survival import fit_km

    ref = inc[inc["refractory"]]
    labels = [x for x in scheme.labels() if x in set(ref["label"])] + sorted(set(ref["label"]) - set(scheme.labels()))
    cols = ["agent", "step", "lines", "responses", "response_pct", "response_lower", "response_upper", "median",
            "median_lower", "median_upper"]
    if ref.empty:
        warns.append("no refractory lines (no patient has an included line after an included line without a "
                     "response)")
        return pd.DataFrame(columns=cols)
    km = fit_km(pd.DataFrame({"arm": ref["label"], "time": ref["time_weeks"].astype(float),
                              "event": ref["event"].astype(int)}), labels, alpha=alpha, tests=False)
    rows = []
    for lab in labels:
        sub = ref[ref["label"] == lab]
        n, r = len(sub), int(sub["event"].sum())
        lo, hi = wilson(r, n, alpha)
        s = km.summary.loc[lab]
        step = int(sub["step"].iloc[0])
        rows.append({"agent": lab, "step": step if step else None, "lines": n, "responses": r,
                     "response_pct": _pct(r, n), "response_lower": lo, "response_upper": hi,
                     "median": s["median"], "median_lower": s["median_lower"], "median_upper": s["median_upper"]})
    return pd.DataFrame(rows, columns=cols).replace([np.inf, -np.inf], np.nan)


ADHERENCE = {
    "judged_at_assessment": "lines judged at the step's assessment time: a scored follow-up visit within the "
                            "assessment window, among lines whose follow-up reached it",
    "escalated_after_failure": "failed assessments followed by a line of a later step within the escalation time, "
                               "among failed assessments below the top step",
    "entered_without_skipping": "first lines in a step (2 and above) that jumped over no untried step, among first "
                                "lines in a step (2 and above)",
}


def _adherence(lines: pd.DataFrame, scheme: Scheme) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rows = []
    measures = (
        ("judged_at_assessment", lines["reached_assessment"], lines["judged"]),
        ("escalated_after_failure", lines["failed_assessment"] & ~lines["top_step"], lines["escalated"]),
        ("entered_without_skipping", lines["enters_step"], lines["skipped_steps"] == ""),
    )
    for key, den_mask, ok in measures:
        den_mask = den_mask.fillna(False).astype(bool)
        for step in ["all", *range(1, len(scheme.steps) + 1)]:
            m = den_mask if step == "all" else den_mask & (lines["step"] == step)
            den, num = int(m.sum()), int((m & ok.fillna(False).astype(bool)).sum())
            rows.append({"measure": key, "step": step, "step_name": "all steps" if step == "all" else
                         scheme.step_name(step), "numerator": num, "denominator": den, "pct": _pct(num, den),
                         "definition": ADHERENCE[key]})
    adherence = pd.DataFrame(rows)
    adherence["step"] = adherence["step"].astype(str)
    skipped = lines[lines["enters_step"] & (lines["skipped_steps"] != "")]
    skipped = skipped.assign(skipped=[", ".join(f"{j}. {scheme.step_name(int(j))}" for j in s.split(", "))
                                      for s in skipped["skipped_steps"]])
    skipped = skipped[["patient_id", "line_id", "line_number", "label", "step", "step_name", "skipped"]].rename(
        columns={"label": "agent"}).reset_index(drop=True)
    ne = lines[lines["failed_assessment"] & ~lines["top_step"] & ~lines["escalated"]]
    not_escalated = ne[["patient_id", "line_id", "line_number", "label", "step", "step_name", "assessment_weeks",
                        "started_in_window"]].rename(columns={"label": "agent"}).reset_index(drop=True)
    return adherence, skipped, not_escalated


# -------------------------------------------------------------------- figures
# Okabe-Ito colours, one per step, the same in the ladder and the paths (steps 2-4 of the default
# scheme take the colours of the arms they hold: MMF blue, IVIG orange, JAKi green).
STEP_COLOURS = ("#56B4E9", "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#F0E442")


def step_colour(step: int) -> str:
    return STEP_COLOURS[(step - 1) % len(STEP_COLOURS)]


def ladder_figure(result: SchemeResult, min_cell: int | None = None) -> go.Figure:
    """The ladder as the department defined it: one stair per step, rising left to right, with
    the step's agents, lines, responses and median time to response."""
    s, steps = result.scheme, result.steps
    k = len(s.steps)
    fig = go.Figure()
    label = ci_label(result.alpha)
    for r in steps.itertuples():
        i = int(r.step)
        fig.add_shape(type="rect", x0=i - 1 + 0.03, x1=i - 0.03, y0=0, y1=i, line=dict(color="#555555", width=1),
                      fillcolor="#F2F2F2", layer="below")
        small = min_cell is not None and 0 < r.lines < min_cell
        if r.lines and not small and not pd.isna(r.response_pct):  # shaded: the share of lines with a response
            fig.add_shape(type="rect", x0=i - 1 + 0.03, x1=i - 0.03, y0=0, y1=i * r.response_pct / 100,
                          line=dict(width=0), fillcolor=step_colour(i), opacity=0.55, layer="below")
        pct = "" if r.response_pct is None or pd.isna(r.response_pct) or small else f" ({r.response_pct:.0f}%)"
        med = ("median not reached" if pd.isna(r.median) else f"median {r.median:.1f} wk") if r.lines and not small \
            else ""
        name = "<br>".join(f"<b>{t}</b>" for t in textwrap.wrap(f"{i}. {r.name}", 24))  # stays above its stair
        body = (f"{name}<br>{r.agents}<br>{count_text(int(r.lines), min_cell)} lines<br>"
                f"{count_text(int(r.responses), min_cell)} responses{pct}" + (f"<br>{med}" if med else ""))
        fig.add_annotation(x=i - 0.5, y=i, yanchor="bottom", text=body, showarrow=False, font=dict(size=12),
                           align="center")
    outside = result.outside
    foot = (f"Outside the scheme: {', '.join(f'{a} {count_text(int(n), min_cell)}' for a, n in zip(outside['agent'], outside['lines']))} "
            "included lines" if len(outside) else "Every line's agent is in a step")
    fig.update_xaxes(range=[-0.05, k + 0.05], visible=False)
    fig.update_yaxes(range=[0, k + 1.6], visible=False)
    base_layout(fig, f"{s.name}<br><sup>Shaded: the share of each step's lines with a response; medians: "
                f"Kaplan-Meier time to response; judged at {s.assess_weeks:g} weeks (±{s.assess_window_weeks:g})</sup>",
                height=300 + 70 * k)
    fig.add_annotation(text=foot, xref="paper", yref="paper", x=0, y=-0.06, xanchor="left", yanchor="top",
                       showarrow=False, font=dict(size=12, color="#555555"))
    fig.update_layout(margin=dict(l=70, r=30, t=90, b=60), showlegend=False)
    return needs_width(fig, 170 * k)


def paths_figure(result: SchemeResult, min_cell: int | None = None, max_moves: int = 4) -> go.Figure:
    """Patients' paths through the steps (not the agents): each patient's steps in the order
    entered, repeats of the same step merged, up to ``max_moves`` + 1 columns. Flows of fewer
    than ``min_cell`` patients are left out."""
    ln = result.lines.sort_values(["patient_id", "line_number"], kind="stable")
    step = ln["step"].to_numpy()
    node_name = np.where(step > 0, [f"{x}. {result.scheme.step_name(int(x))}" if x else "" for x in step],
                         "Outside the scheme")
    seq = pd.DataFrame({"patient_id": ln["patient_id"].to_numpy(), "node": node_name})
    seq = seq[seq["node"] != seq.groupby("patient_id")["node"].shift()]  # merge repeats of a step
    seq["col"] = seq.groupby("patient_id").cumcount()
    seq = seq[seq["col"] <= max_moves]
    seq["key"] = seq["col"].astype(str) + "|" + seq["node"]
    pairs = seq.assign(nxt=seq.groupby("patient_id")["key"].shift(-1)).dropna(subset=["nxt"])
    flows = pairs.groupby(["key", "nxt"]).size().reset_index(name="n")
    flows = flows[flows["n"] >= (min_cell or 1)]
    keys = sorted(set(flows["key"]) | set(flows["nxt"]), key=lambda s: (int(s.split("|")[0]), s))
    idx = {k: i for i, k in enumerate(keys)}
    totals = seq.groupby("key")["patient_id"].nunique()
    def colour(key: str) -> str:
        name = key.split("|", 1)[1]
        return "#BBBBBB" if name.startswith("Outside") else step_colour(int(name.split(".")[0]))

    fig = go.Figure(go.Sankey(
        arrangement="snap",
        node=dict(label=[f"{k.split('|', 1)[1].split('. ', 1)[0]} ({count_text(int(totals.get(k, 0)), min_cell)})"
                         if not k.split("|", 1)[1].startswith("Outside")
                         else f"outside ({count_text(int(totals.get(k, 0)), min_cell)})" for k in keys],
                  customdata=[k.split("|", 1)[1] for k in keys],
                  hovertemplate="%{customdata}: %{value} patients<extra></extra>",
                  color=[colour(k) for k in keys], pad=14, thickness=16),
        link=dict(source=[idx[a] for a in flows["key"]], target=[idx[b] for b in flows["nxt"]],
                  value=flows["n"].tolist(), color="rgba(150,150,150,0.35)")))
    legend = "; ".join(f"{i}. {st.name}" for i, st in enumerate(result.scheme.steps, 1))
    base_layout(fig, "Patients' paths through the steps<br><sup>Columns: the first, second, ... step each patient "
                "entered; numbers: patients; grey: agents outside the scheme</sup>", height=560)
    fig.add_annotation(text=f"Steps: {legend}", xref="paper", yref="paper", x=0, y=-0.04, xanchor="left",
                       yanchor="top", showarrow=False, font=dict(size=12, color="#555555"),
                       width=figure_width() - 60, align="left")
    fig.update_layout(margin=dict(t=120, b=80))
    cols = sorted({int(k.split("|")[0]) for k in keys})
    columns = len(cols)
    ordinal = ["First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth"]
    for i, c in enumerate(cols):  # a header over each column of nodes
        fig.add_annotation(text=f"<b>{ordinal[c] if c < len(ordinal) else f'{c + 1}th'}</b>", xref="paper",
                           yref="paper", y=1.0, yanchor="bottom", x=i / max(1, columns - 1), showarrow=False,
                           font=dict(size=13), xanchor="left" if i == 0 else "right" if i == columns - 1 else "center")
    if flows.empty:
        fig.add_annotation(text="No patient moved between steps" + (f" in flows of {min_cell} or more" if min_cell
                                                                    else ""),
                           xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font=dict(size=15))
    return needs_width(fig, 150 * max(columns, 1))  # a node label ("2 (118)") beside each column's nodes


def refractory_figure(result: SchemeResult, min_cell: int | None = None) -> go.Figure:
    """Response among refractory lines by agent (this cohort: filled circles with Wilson
    intervals) beside published series (hollow grey diamonds and ranges, labelled as published)."""
    ref = result.refractory
    arms = list(result.arms)
    label = ci_label(result.alpha)
    fig = go.Figure()
    published = published_series(result.alpha)
    rows = list(ref["agent"]) + [a for a, *_ in published if a not in set(ref["agent"])]
    ypos = {a: -i for i, a in enumerate(rows)}  # one row per agent, top down; a published series just below
    ylab = {}
    for r in ref.itertuples():
        small = min_cell is not None and r.lines < min_cell
        ylab[r.agent] = f"{r.agent} (n = {count_text(int(r.lines), min_cell)})"
        if small or r.response_pct is None or pd.isna(r.response_pct):
            continue
        colour = arm_color(r.agent, arms) if r.agent in arms else "#555555"
        fig.add_trace(go.Scatter(
            x=[r.response_pct], y=[ypos[r.agent]], mode="markers", marker=dict(size=11, color=colour),
            error_x=dict(type="data", symmetric=False, array=[r.response_upper - r.response_pct],
                         arrayminus=[r.response_pct - r.response_lower], color=colour, thickness=2, width=6),
            name="This cohort, refractory lines", legendgroup="cohort", showlegend=r.Index == 0,
            hovertemplate=f"{r.agent}: {r.responses} of {r.lines} refractory lines responded "
                          f"({r.response_pct:.0f}%, {label} {r.response_lower:.0f}-{r.response_upper:.0f}%)<extra></extra>"))
    for j, (agent, mid, lo, hi, text, source) in enumerate(published):
        ylab.setdefault(agent, f"{agent} (none here)")
        fig.add_trace(go.Scatter(
            x=[mid], y=[ypos[agent] - 0.3], mode="markers",
            marker=dict(size=10, symbol="diamond-open", color="#777777", line=dict(width=2)),
            error_x=dict(type="data", symmetric=False, array=[hi - mid], arrayminus=[mid - lo],
                         color="#999999", thickness=1.5, width=4) if hi > lo else None,
            name="Published series (not this cohort)", legendgroup="published", showlegend=j == 0,
            hovertemplate=f"Published, not this cohort: {agent}, {text} ({source})<extra></extra>"))
    order = [a for a in rows if a in ylab]
    fig.update_yaxes(tickvals=[ypos[a] for a in order], ticktext=[ylab[a] for a in order], title_text="",
                     range=[-len(rows) + 0.4, 0.6], showgrid=False, zeroline=False)
    fig.update_xaxes(range=[0, 100], title_text="Lines with a response (%)", ticksuffix="%")
    base_layout(fig, f"Refractory lines: response by agent<br><sup>This cohort with {label}s (Wilson); grey "
                "diamonds: published series, not this cohort (see the notes)</sup>",
                height=260 + 46 * max(1, len(order)))
    fig.update_layout(margin=dict(l=150, r=30, t=100, b=110),
                      legend=dict(orientation="h", yanchor="top", y=-0.28, xanchor="left", x=0))
    return fig
