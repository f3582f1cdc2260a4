"""Therapy lines, baselines, follow-up windows and response events (contract.md section 2).

Every rule is implemented once, vectorised over all lines, and tested edge by edge against
hand-worked fixtures in ``tests/test_derive.py``. :func:`derive` never modifies its input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..ingest.drugs import arm_of
from .options import DeriveOptions, ResponseRule
from ..ingest.schema import LINES_COLUMNS, TRAJECTORY_COLUMNS
from ..ingest.validate import Prepared, order_by_group_and_day

__all__ = ["Derivation", "derive", "episodes_from_visits", "followup_visits", "meets_rule", "patient_codes"]

EXCLUSION_REASONS = ("no baseline", "no follow-up")
CENSOR_REASONS = ("stopped", "switched", "added", "last visit")
_EPS = 1e-9


@dataclass
class Derivation:
    """The derived tables.

    - ``lines``: one row per line, included or not (contract columns first, then
      ``end_reason``, ``n_followup_visits``, ``ongoing``);
    - ``trajectories``: the baseline and follow-up visits of each included line;
    - ``episodes``: the episodes the lines came from;
    - ``attrition``: from rows read to included lines, every step counted with its reason.
    """

    lines: pd.DataFrame
    trajectories: pd.DataFrame
    episodes: pd.DataFrame
    attrition: pd.DataFrame
    options: DeriveOptions
    episode_source: str
    counts: dict = field(default_factory=dict)

    def included(self, arms_only: bool = True) -> pd.DataFrame:
        keep = self.lines["included"].eq(1)
        if arms_only:
            keep &= self.lines["arm"].ne("")
        return self.lines[keep]

    def to_dict(self) -> dict:
        lines = self.lines
        included = lines["included"].eq(1).fillna(False).to_numpy(dtype=bool)
        event = lines["event"]

        def tally(column: str, reasons, mask: np.ndarray) -> dict[str, int]:
            # each reason counted from the column's codes (found once), not by comparing the strings of
            # every line again for each reason and arm (0.5 s at 100,000 patients)
            codes, uniques = coded[column]
            found = dict(zip(uniques, np.bincount(codes[mask & (codes >= 0)], minlength=len(uniques))))
            return {r: int(found.get(r, 0)) for r in reasons}

        coded = {c: pd.factorize(lines[c].to_numpy()) for c in ("exclusion_reason", "censor_reason", "arm")}
        every = np.ones(len(lines), dtype=bool)
        arm_codes, arm_uniques = coded["arm"]
        by_arm = {}
        for arm in self.options.arms:
            position = [i for i, u in enumerate(arm_uniques) if u == arm]
            sub = arm_codes == position[0] if position else np.zeros(len(lines), dtype=bool)
            by_arm[arm] = {"derived": int(sub.sum()), "included": int((sub & included).sum()),
                           "events": int(event[sub & included].sum()),
                           "excluded": tally("exclusion_reason", EXCLUSION_REASONS, sub)}
        return {"derived": len(lines), "included": int(lines["included"].sum()),
                "excluded": tally("exclusion_reason", EXCLUSION_REASONS, every),
                "events": int(event[included].sum()),
                "censored": tally("censor_reason", CENSOR_REASONS, included),
                "by_arm": by_arm, "episode_source": self.episode_source}


def meets_rule(baseline: pd.Series | np.ndarray, activity: pd.Series | np.ndarray, rule: ResponseRule) -> np.ndarray:
    """Whether each follow-up score meets the response rule against its baseline."""
    b = np.asarray(baseline, dtype=float)
    a = np.asarray(activity, dtype=float)
    if rule.kind == "points":
        return (b - a) >= rule.value - _EPS
    if rule.kind == "percent":  # (b - a) / b >= P%, written without division
        return (b > 0) & ((b - a) * 100.0 >= rule.value * b - _EPS)
    if rule.kind == "atmost":
        return a <= rule.value + _EPS
    return a == 0


def episodes_from_visits(visits: pd.DataFrame) -> pd.DataFrame:
    """Runs of consecutive visits listing an agent: start = first such visit day, stop = last
    such visit day; ongoing when the run reaches the patient's last visit."""
    cols = ["patient_id", "agent", "start_day", "stop_day", "ongoing", "stop_reason"]
    if visits.empty:
        return pd.DataFrame(columns=cols)
    v = visits[["patient_id", "day", "agents"]].copy()
    v["vidx"] = v.groupby("patient_id", sort=False).cumcount()
    last_idx = v.groupby("patient_id", sort=False)["vidx"].max()
    ex = v.explode("agents").dropna(subset=["agents"]).rename(columns={"agents": "agent"})
    if ex.empty:
        return pd.DataFrame(columns=cols)
    ex = ex.sort_values(["patient_id", "agent", "vidx"], kind="stable")
    continues = (ex["patient_id"].eq(ex["patient_id"].shift()) & ex["agent"].eq(ex["agent"].shift())
                 & ex["vidx"].eq(ex["vidx"].shift() + 1))
    run = (~continues).cumsum()
    g = ex.groupby(run, sort=False)
    ep = pd.DataFrame({"patient_id": g["patient_id"].first(), "agent": g["agent"].first(),
                       "start_day": g["day"].min(), "stop_day": g["day"].max().astype(float),
                       "last_vidx": g["vidx"].max()}).reset_index(drop=True)
    ep["ongoing"] = ep["last_vidx"].to_numpy() == ep["patient_id"].map(last_idx).to_numpy()
    ep.loc[ep["ongoing"], "stop_day"] = np.nan
    ep["stop_reason"] = np.where(ep["ongoing"], "", "unknown")
    return ep[cols]


def _next_visit_after(visit_pc: np.ndarray, visit_day: np.ndarray, pc: np.ndarray, day: np.ndarray) -> np.ndarray:
    """The first visit day strictly after ``day`` for each (patient code, day); NaN when there is
    none. Patients are integer codes (:func:`patient_codes`): merge_asof's ``by`` on strings
    cost 1.7 s at 100,000 patients."""
    left = pd.DataFrame({"pc": pc, "d": np.asarray(day, dtype=float), "pos": np.arange(len(pc))}).sort_values("d")
    right = pd.DataFrame({"pc": visit_pc, "day": np.asarray(visit_day, dtype=float)}).sort_values("day")
    m = pd.merge_asof(left, right, left_on="d", right_on="day", by="pc", direction="forward",
                      allow_exact_matches=False)
    out = np.full(len(pc), np.nan)
    out[m["pos"].to_numpy()] = m["day"].to_numpy()
    return out


def _labels(conditions: list, choices: list[str], default: str) -> np.ndarray:
    """``np.select(conditions, choices, default)`` as an object array holding one str object per
    label: ``np.select`` on strings gives a fixed-width array whose every element becomes its own
    str object in a frame (360,000 copies of a handful of words at 100,000 patients)."""
    labels = np.array([*choices, default], dtype=object)
    return labels[np.select(conditions, list(range(len(choices))), len(choices))]


def patient_codes(*ids: pd.Series) -> list[np.ndarray]:
    """The same integer code for the same patient id across ``ids`` (joins on integers, not strings)."""
    codes, _ = pd.factorize(pd.concat(ids, ignore_index=True))
    out, start = [], 0
    for s in ids:
        out.append(codes[start:start + len(s)].astype(np.int64))
        start += len(s)
    return out


def followup_visits(cand: pd.DataFrame, scored: pd.DataFrame, line_code: np.ndarray,
                     visit_code: np.ndarray) -> pd.DataFrame:
    """Each candidate line's scored visits after its baseline visit and its start day, up to and
    including its end day, line by line and by day within a line (``cand``'s columns, then
    ``day`` and ``cdasi_activity``); ``line_code`` and ``visit_code``: their patients' codes.

    A range join: with the scored visits sorted by patient and day, a line's follow-up visits are
    one contiguous run, found by two binary searches. Joining every line to every visit of its
    patient and filtering (what this replaced) built about 6 million rows at 100,000 patients."""
    day = scored["day"].to_numpy(dtype=np.int64)
    offset = -min(int(day.min(initial=0)), 0)  # days may be negative on a day basis: keys stay ordered
    width = int(day.max(initial=0)) + offset + 2
    key = visit_code * width + (day + offset)
    order = np.argsort(key, kind="stable")
    key = key[order]
    after = np.fmax(cand["baseline_day"].to_numpy(dtype=float), cand["start_day"].to_numpy(dtype=float))
    upto = np.nan_to_num(cand["end_day"].to_numpy(dtype=float), nan=-np.inf)  # no end: no follow-up
    base = line_code * width + offset
    # Days are whole numbers: "after" is exclusive, "up to" inclusive. Both are clipped to one day
    # either side of the scored days, so a query stays inside its own patient's run of keys (an end
    # day may fall after the last scored visit: an unscored last visit).
    lowest, highest = -offset - 1, width - offset - 1
    lo = np.searchsorted(key, base + np.clip(after, lowest, highest).astype(np.int64), side="right")
    hi = np.searchsorted(key, base + np.clip(upto, lowest, highest).astype(np.int64), side="right")
    n = np.maximum(hi - lo, 0)
    line_rows = np.repeat(np.arange(len(cand)), n)
    visit_rows = order[np.repeat(lo, n) + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)]
    fu = cand.take(line_rows)
    fu.index = pd.RangeIndex(len(fu))  # not reset_index: that copies every column once more
    fu["day"] = scored["day"].to_numpy().take(visit_rows)
    fu["cdasi_activity"] = scored["cdasi_activity"].to_numpy().take(visit_rows)
    return fu


def derive(prepared: Prepared, options: DeriveOptions | None = None) -> Derivation:
    """Derive therapy lines, baselines, follow-up windows, events and trajectories."""
    options = options or DeriveOptions()
    visits = prepared.visits
    source = "therapies file" if prepared.therapies is not None else "visits (systemic_therapy)"
    episodes = prepared.therapies if prepared.therapies is not None else episodes_from_visits(visits)
    episodes = episodes[["patient_id", "agent", "start_day", "stop_day", "ongoing", "stop_reason"]].copy()
    episodes = episodes.astype({"patient_id": str, "agent": str, "start_day": "int64", "stop_day": float,
                                "ongoing": bool})
    episodes["stop_reason"] = episodes["stop_reason"].fillna("").astype(str)

    # Lines: every episode start (episodes of one agent never overlap), ordered within the patient.
    ln = episodes.sort_values(["patient_id", "start_day", "agent"], kind="stable").reset_index(drop=True)
    ln["line_number"] = ln.groupby("patient_id", sort=False).cumcount() + 1
    ln["line_id"] = ln["patient_id"] + ":" + ln["line_number"].astype(str)
    ln["arm"] = ln["agent"].map({a: arm_of(a, options.arms) or "" for a in ln["agent"].unique()}).astype(object)

    # End day: the earliest of the agent's stop, any other new agent's start, the patient's last visit
    # (a patient's latest visit day, grouped on integer codes, not on a million patient id strings).
    visit_pc, line_pc = patient_codes(visits["patient_id"], ln["patient_id"])
    last_visit = pd.Series(visits["day"].to_numpy(dtype=float, na_value=np.nan)).groupby(visit_pc).max()
    last_by_code = np.full(int(max(visit_pc.max(initial=-1), line_pc.max(initial=-1))) + 1, np.nan)
    last_by_code[last_visit.index.to_numpy()] = last_visit.to_numpy()
    ln["last_visit_day"] = last_by_code[line_pc]
    # The next start: the start day of the patient's next group of lines (ln is sorted by patient and
    # start day, so lines that start together are contiguous)
    start = ln["start_day"].to_numpy(dtype=np.int64)
    new_group = np.ones(len(ln), dtype=bool)
    new_group[1:] = (line_pc[1:] != line_pc[:-1]) | (start[1:] != start[:-1])
    group = np.cumsum(new_group) - 1
    first = np.flatnonzero(new_group)
    group_next = np.full(len(first), np.nan)
    same_patient = line_pc[first[1:]] == line_pc[first[:-1]]
    group_next[:-1] = np.where(same_patient, start[first[1:]], np.nan)
    ln["next_start"] = group_next[group] if len(ln) else np.zeros(0)
    stop = ln["stop_day"].to_numpy(dtype=float)
    nxt = ln["next_start"].to_numpy(dtype=float)
    last = ln["last_visit_day"].to_numpy(dtype=float)
    end = np.fmin(np.fmin(stop, nxt), last)
    ln["end_day"] = end
    is_stop = stop == end
    is_next = ~is_stop & (nxt == end)
    next_visit = _next_visit_after(visit_pc, visits["day"].to_numpy(), line_pc,
                                   np.nan_to_num(np.where(is_next, nxt, np.nan), nan=-1e12))
    gone = ~ln["ongoing"].to_numpy() & ~(stop >= np.where(np.isnan(next_visit), np.inf, next_visit))
    ln["end_reason"] = _labels([is_stop, is_next & gone, is_next], ["stopped", "switched", "added"], "last visit")

    # Baseline: the latest scored visit in [start + lo, start + hi].
    lo, hi = options.baseline_window_days
    has_score = visits["cdasi_activity"].notna().to_numpy()
    scored = visits.loc[has_score, ["patient_id", "day", "cdasi_activity"]]
    scored_pc = visit_pc[has_score]
    left = pd.DataFrame({"pc": line_pc, "key": (ln["start_day"] + hi).astype("int64").to_numpy(),
                         "pos": np.arange(len(ln))}).sort_values("key")
    right = pd.DataFrame({"pc": scored_pc, "baseline_day": scored["day"].to_numpy(),
                          "baseline_cdasi": scored["cdasi_activity"].to_numpy()})
    right = right.assign(key=right["baseline_day"].astype("int64")).sort_values("key")
    bl = pd.merge_asof(left, right, on="key", by="pc", direction="backward").sort_values("pos")
    ok = bl["baseline_day"].to_numpy(dtype=float) >= (ln["start_day"].to_numpy() + lo)
    ln["baseline_day"] = np.where(ok, bl["baseline_day"].to_numpy(dtype=float), np.nan)
    ln["baseline_cdasi"] = np.where(ok, bl["baseline_cdasi"].to_numpy(dtype=float), np.nan)
    del left, right, bl, ok  # at 100,000 patients each of these is tens of MB: not kept to the end

    # Follow-up: scored visits after the baseline visit and the start day, up to and including the end day.
    has_base = ln["baseline_day"].notna().to_numpy()
    cand = ln.loc[has_base, ["line_id", "start_day", "baseline_day", "baseline_cdasi", "end_day"]]
    cand["pos"] = np.flatnonzero(has_base)  # the line's row in ln (and in lines)
    fu = followup_visits(cand, scored, line_pc[has_base], scored_pc)
    del cand, scored, scored_pc
    meets = pd.Series(meets_rule(fu["baseline_cdasi"], fu["cdasi_activity"], options.response), index=fu.index)
    # per line, by its row in ln (fu's pos): grouped on integers, not on the line id strings
    fu_pos = fu["pos"].to_numpy(dtype=np.int64)
    if options.confirm:
        nxt_meets = meets.groupby(fu_pos, sort=False).shift(-1, fill_value=False).astype(bool)
        meets = meets & nxt_meets
    fu_day = fu["day"].to_numpy(dtype=float)
    met = meets.to_numpy(dtype=bool)

    def per_line(day: np.ndarray, line: np.ndarray, how: str) -> pd.Series:
        out = np.full(len(ln), np.nan)
        found = pd.Series(day).groupby(line).agg(how)
        if len(found):
            out[found.index.to_numpy(dtype=np.int64)] = found.to_numpy()
        return pd.Series(out, index=ln.index)

    last_fu = per_line(fu_day, fu_pos, "max")
    first_event = per_line(fu_day[met], fu_pos[met], "min")

    has_fu = pd.Series(np.bincount(fu_pos, minlength=len(ln)), index=ln.index).astype(int)
    ln["n_followup_visits"] = has_fu
    ln["included"] = ((ln["baseline_day"].notna()) & (has_fu > 0)).astype(int)
    ln["exclusion_reason"] = _labels([ln["baseline_day"].isna().to_numpy(), (has_fu == 0).to_numpy()],
                                     list(EXCLUSION_REASONS), "")
    ev_day = first_event
    inc = ln["included"].eq(1)
    ln["event"] = pd.array(np.where(inc, ev_day.notna().astype(int), 0), dtype="Int64")
    ln.loc[~inc, "event"] = pd.NA
    t_day = ev_day.fillna(last_fu)
    del meets, met, fu_day, last_fu, first_event
    ln["time_weeks"] = np.where(inc, (t_day - ln["start_day"]) / 7.0, np.nan)
    ln["censor_reason"] = ln["end_reason"].where((inc & ev_day.isna()).to_numpy(), "")
    for c in ("end_day", "baseline_day"):
        ln[c] = pd.array(ln[c].round(), dtype="Int64")
    ln["stop_reason"] = ln["stop_reason"].fillna("")
    lines = ln[list(LINES_COLUMNS) + ["end_reason", "n_followup_visits", "ongoing"]]  # ln has a RangeIndex
    del ln, ev_day, t_day, has_fu

    # Trajectories: the baseline visit and every follow-up visit of each included line (every follow-up
    # visit's line is included), in the order of patient_id, line_number and visit_day. Lines are in
    # that order of patient_id and line_number already, so the rows are ordered by (line row, day) on
    # integers, and each column is built once by taking from lines: no frame of a million rows is
    # concatenated or sorted on strings.
    base_pos = np.flatnonzero(inc.to_numpy())
    pos = np.concatenate([base_pos, fu["pos"].to_numpy(dtype=np.int64)])
    visit_day = np.concatenate([lines["baseline_day"].to_numpy(dtype=np.int64, na_value=0)[base_pos],
                                fu["day"].to_numpy(dtype=np.int64)])
    activity = np.concatenate([lines["baseline_cdasi"].to_numpy(dtype=float)[base_pos],
                               fu["cdasi_activity"].to_numpy(dtype=float)])
    del fu
    order = order_by_group_and_day(pos, visit_day)
    pos, visit_day, activity = pos[order], visit_day[order], activity[order]
    del order
    trajectories = pd.DataFrame({
        "patient_id": lines["patient_id"].to_numpy()[pos], "line_id": lines["line_id"].to_numpy()[pos],
        "arm": lines["arm"].to_numpy()[pos], "line_number": lines["line_number"].to_numpy(dtype=np.int64)[pos],
        "visit_day": visit_day, "weeks": (visit_day - lines["start_day"].to_numpy(dtype=np.int64)[pos]) / 7.0,
        "cdasi_activity": activity, "baseline_cdasi": lines["baseline_cdasi"].to_numpy(dtype=float)[pos]},
        columns=list(TRAJECTORY_COLUMNS))

    attrition = _attrition(prepared, lines, options)
    counts = {"lines_derived": len(lines), "lines_included": int(lines["included"].sum()),
              "trajectory_rows": len(trajectories)}
    return Derivation(lines, trajectories, episodes.reset_index(drop=True), attrition, options, source, counts)


def _attrition(prepared: Prepared, lines: pd.DataFrame, options: DeriveOptions) -> pd.DataFrame:
    c = prepared.counts
    rows = [
        ("rows read", c.get("rows_read", 0), ""),
        ("rows with errors (not used)", c.get("rows_with_errors", 0), "see the validation report"),
        ("repeated rows merged", c.get("duplicate_rows_merged", 0), "same patient and day, same values"),
        ("visits", c.get("visits", len(prepared.visits)), ""),
        ("visits with a CDASI activity score", c.get("visits_with_activity", 0), ""),
        ("patients", c.get("patients", 0), ""),
        ("patients with a therapy line", int(lines["patient_id"].nunique()), ""),
        ("therapy lines derived", len(lines), "all systemic agents"),
    ]
    # masks over the lines' columns, not filtered copies of the whole table (18 columns)
    in_arm = (lines["arm"] != "").to_numpy()
    included, event = lines["included"], lines["event"]
    rows.append((f"lines in the arms ({', '.join(options.arms)})", int(in_arm.sum()), ""))
    for reason in EXCLUSION_REASONS:
        rows.append((f"  excluded: {reason}", int(((lines["exclusion_reason"] == reason).to_numpy() & in_arm).sum()),
                     reason))
    rows.append(("lines included in the arms", int(included[in_arm].sum()), ""))
    for arm in options.arms:
        sub = (lines["arm"] == arm).to_numpy() & in_arm
        rows.append((f"  {arm}", int(included[sub].sum()), f"{int(event[sub].sum())} responses"))
    return pd.DataFrame(rows, columns=["step", "n", "note"])
