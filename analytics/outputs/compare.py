"""Export against export: two datasets of the library side by side (contract section 5).

    cdasi-outcomes compare ID_A ID_B [--db URL] [--spec F] --out DIR

Both exports are analysed with the same spec. ``compare.csv`` (machine-readable, one row per
item: section, item, a, b, change, note) and ``compare.html`` (tables for people) hold:

- **quality**: every indicator in A and in B, the change, and whether B lies beyond A's
  control limits (p-chart limits p_A +- 3 sqrt(p_A (1 - p_A) / n_B) for proportions; the XmR
  limits of A's complete periods for the median visit interval), i.e. more than common-cause
  variation;
- **counts**: patients, visits and therapy lines in each, with how many were added in B and
  how many of A's are missing from B;
- **outcomes** per arm: lines, responses, the Kaplan-Meier median and the cumulative response
  at 12 and 24 weeks;
- **retroactive changes**: visits of A that differ in B, a data-quality finding: a score changed
  at the same visit date, a visit whose date moved (same scores, another date within 30 days),
  or a visit that is gone.
"""

from __future__ import annotations

import dataclasses
import html
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..display.export import write_csv
from ..display.tables import for_people
from ..library import Library, current_user

__all__ = ["Comparison", "compare_datasets", "write_comparison", "retroactive_changes"]

SCORES = ("cdasi_activity", "cdasi_damage")
MOVED_WITHIN_DAYS = 30


@dataclass
class Comparison:
    a: dict  # the datasets' descriptions (Dataset.to_dict())
    b: dict
    quality: pd.DataFrame  # key, name, unit, better, a, b, change, lower, upper, beyond_limits, direction
    counts: pd.DataFrame  # item, a, b, added, missing_from_b
    outcomes: pd.DataFrame  # arm, measure, a, b, change
    changes: pd.DataFrame  # patient_id, visit, kind, column, a, b
    spec_text: str = ""

    def long(self) -> pd.DataFrame:
        """Every item as one row: section, item, a, b, change, note (compare.csv)."""
        rows = []
        for r in self.quality.itertuples():
            rows.append(("quality", r.key, r.a, r.b, r.change,
                         f"{r.unit}; {r.better} is better; " + ("beyond A's limits" if r.beyond_limits is True else
                                                                "within A's limits" if r.beyond_limits is False else
                                                                "no limits")))
        for r in self.counts.itertuples():
            rows.append(("counts", r.item, r.a, r.b, r.b - r.a, f"added {r.added}; missing from B {r.missing_from_b}"))
        for r in self.outcomes.itertuples():
            rows.append(("outcomes", f"{r.arm} {r.measure}", r.a, r.b, r.change, ""))
        for r in self.changes.itertuples():
            rows.append(("retroactive", f"{r.patient_id} {r.visit}", r.a, r.b, None, f"{r.kind}: {r.column}"))
        return pd.DataFrame(rows, columns=["section", "item", "a", "b", "change", "note"])


def _quality_rows(qa, qb) -> pd.DataFrame:
    from ..stats.quality import control_limits

    a, b = qa.summary.set_index("key"), qb.summary.set_index("key")
    rows = []
    for key in a.index.union(b.index, sort=False):
        ra = a.loc[key] if key in a.index else None
        rb = b.loc[key] if key in b.index else None
        ref = ra if ra is not None else rb
        va = float(ra["value"]) if ra is not None and pd.notna(ra["value"]) else np.nan
        vb = float(rb["value"]) if rb is not None and pd.notna(rb["value"]) else np.nan
        lo = hi = np.nan
        if ref["unit"] == "%" and ra is not None and rb is not None and ra["denominator"] > 0 and rb["denominator"] > 0:
            p = float(ra["numerator"]) / float(ra["denominator"])
            sigma = math.sqrt(p * (1 - p) / float(rb["denominator"]))
            lo, hi = max(0.0, 100 * (p - 3 * sigma)), min(100.0, 100 * (p + 3 * sigma))
        elif ra is not None:  # days: the XmR limits of A's complete periods
            per = qa.by_period[(qa.by_period["key"] == key) & qa.by_period["complete"]]
            lim = control_limits(per.reset_index(drop=True), False) if len(per) >= 2 else None
            if lim is not None and lim["upper"].notna().any():
                lo, hi = float(lim["lower"].iloc[0]), float(lim["upper"].iloc[0])
        beyond = None if np.isnan(lo) or np.isnan(vb) else bool(vb < lo - 1e-9 or vb > hi + 1e-9)
        change = vb - va
        better = str(ref["better"])
        direction = ("" if not np.isfinite(change) or change == 0 else
                     "better" if (change > 0) == (better == "higher") else "worse")
        rows.append({"key": key, "name": ref["name"], "unit": ref["unit"], "better": better, "a": va, "b": vb,
                     "change": change, "lower": lo, "upper": hi, "beyond_limits": beyond, "direction": direction})
    return pd.DataFrame(rows)


def _visit_keys(prepared) -> pd.Series:
    v = prepared.visits
    if prepared.time_basis == "date" and "visit_date" in v:
        return v["patient_id"].astype(str) + " " + v["visit_date"].dt.strftime("%Y-%m-%d")
    return v["patient_id"].astype(str) + " day " + v["day"].astype(str)


def _counts(pa, pb, da, db) -> pd.DataFrame:
    rows = []
    for item, sa, sb in (("patients", set(pa.visits["patient_id"]), set(pb.visits["patient_id"])),
                         ("visits", set(_visit_keys(pa)), set(_visit_keys(pb))),
                         ("therapy lines", set(da.lines["line_id"]), set(db.lines["line_id"]))):
        rows.append({"item": item, "a": len(sa), "b": len(sb), "added": len(sb - sa), "missing_from_b": len(sa - sb)})
    return pd.DataFrame(rows)


def _outcomes(ma, mb, arms) -> pd.DataFrame:
    rows = []
    sa, sb = ma["km"].summary, mb["km"].summary
    for arm in arms:
        for measure, col in (("lines", "lines"), ("responses", "events"), ("median weeks", "median"),
                             ("response by 12 weeks", "cum_12w"), ("response by 24 weeks", "cum_24w")):
            va = float(sa.loc[arm, col]) if arm in sa.index and col in sa else np.nan
            vb = float(sb.loc[arm, col]) if arm in sb.index and col in sb else np.nan
            if col.startswith("cum_"):
                va, vb = 100 * va, 100 * vb
            va, vb = (np.nan if not np.isfinite(x) else x for x in (va, vb))
            rows.append({"arm": arm, "measure": measure, "a": va, "b": vb, "change": vb - va})
    return pd.DataFrame(rows)


def retroactive_changes(pa, pb) -> pd.DataFrame:
    """Visits of the earlier export ``pa`` that differ in the later ``pb``: a changed score at the
    same visit, a visit whose date moved (the same scores at another date within
    MOVED_WITHIN_DAYS days of the patient's), or a visit that is gone."""
    cols = [c for c in SCORES if c in pa.visits and c in pb.visits]
    ka, kb = _visit_keys(pa), _visit_keys(pb)
    a = pa.visits.assign(_key=ka.to_numpy()).drop_duplicates("_key").set_index("_key")
    b = pb.visits.assign(_key=kb.to_numpy()).drop_duplicates("_key").set_index("_key")
    rows = []
    both = a.index.intersection(b.index)
    for c in cols:
        va, vb = a.loc[both, c], b.loc[both, c]
        diff = ~((va == vb) | (va.isna() & vb.isna()))
        for key in both[diff.to_numpy()]:
            rows.append({"patient_id": a.at[key, "patient_id"], "visit": key.split(" ", 1)[1], "kind": "score changed",
                         "column": c, "a": _text(va[key]), "b": _text(vb[key])})
    gone = a.index.difference(b.index)
    new = b.loc[b.index.difference(a.index)]
    dated = pa.time_basis == "date" and pb.time_basis == "date"
    for key in gone:
        r = a.loc[key]
        moved = None
        if dated and len(new):
            cand = new[new["patient_id"] == r["patient_id"]]
            if len(cand):
                close = cand[(cand["visit_date"] - r["visit_date"]).abs() <= pd.Timedelta(days=MOVED_WITHIN_DAYS)]
                same = close[np.logical_and.reduce([(close[c] == r[c]) | (close[c].isna() & pd.isna(r[c]))
                                                    for c in cols])] if cols else close
                if len(same):
                    moved = same.iloc[0]
        if moved is not None:
            rows.append({"patient_id": r["patient_id"], "visit": key.split(" ", 1)[1], "kind": "date changed",
                         "column": "visit_date", "a": key.split(" ", 1)[1],
                         "b": moved["visit_date"].strftime("%Y-%m-%d")})
        else:
            rows.append({"patient_id": r["patient_id"], "visit": key.split(" ", 1)[1], "kind": "visit missing from B",
                         "column": "", "a": ", ".join(f"{c} {_text(r[c])}" for c in cols), "b": ""})
    out = pd.DataFrame(rows, columns=["patient_id", "visit", "kind", "column", "a", "b"])
    return out.sort_values(["patient_id", "visit", "kind"]).reset_index(drop=True)


def _text(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "blank"
    return f"{v:g}" if isinstance(v, (int, float, np.floating, np.integer)) else str(v)


def compare_datasets(library: Library, id_a: int, id_b: int, spec=None, progress=None) -> Comparison:
    """Analyse datasets ``id_a`` (the earlier) and ``id_b`` of ``library`` with the same spec
    and compare them."""
    from ..pipeline import analyze, load
    from ..spec import AnalysisSpec

    spec = spec or AnalysisSpec()
    spec = dataclasses.replace(spec, data_sha256=None)  # one analysis, two datasets: no "other data" warning
    say = progress or (lambda _m: None)
    done = {}
    for which, dataset_id in (("a", id_a), ("b", id_b)):
        ds = library.dataset(dataset_id)
        say(f"analysing dataset {ds.id} ({ds.label})")
        with library.checked_out(ds.id) as paths:
            prepared, _ = load(paths["visits"], paths.get("therapies"), paths.get("mapping"))
            done[which] = (ds, prepared, analyze(prepared, spec=spec))
    (da, pa, aa), (db, pb, ab) = done["a"], done["b"]
    return Comparison(da.to_dict(), db.to_dict(), _quality_rows(aa.models["quality"], ab.models["quality"]),
                      _counts(pa, pb, aa.full, ab.full), _outcomes(aa.models, ab.models, list(spec.derive.arms)),
                      retroactive_changes(pa, pb), spec.to_toml())


def write_comparison(c: Comparison, out: str | Path) -> dict[str, Path]:
    """compare.csv (every item, machine-readable) and compare.html (self-contained, for people)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(c.long(), out / "compare.csv")
    quality = c.quality.drop(columns=["unit"]).rename(columns={"a": "value_a", "b": "value_b"})
    sections = [
        ("Quality indicators", "Beyond limits: B lies outside A's control limits (p-chart for proportions, XmR for "
                               "the visit interval), more than common-cause variation.",
         _people(quality, {"key": "Key", "name": "Indicator", "better": "Better", "value_a": "A", "value_b": "B",
                           "change": "Change", "lower": "A's lower limit", "upper": "A's upper limit",
                           "beyond_limits": "Beyond limits", "direction": "Change is"})),
        ("Patients, visits and lines", "", _people(c.counts, {"item": "Item", "a": "A", "b": "B", "added": "Added in B",
                                                              "missing_from_b": "Missing from B"})),
        ("Outcomes per arm", "Kaplan-Meier; response in %.",
         _people(c.outcomes, {"arm": "Arm", "measure": "Measure", "a": "A", "b": "B", "change": "Change"})),
        ("Values changed retroactively", f"{len(c.changes)} visit(s) of A differ in B: a data-quality finding.",
         _people(c.changes, {"patient_id": "Patient", "visit": "Visit", "kind": "Change", "column": "Column",
                             "a": "In A", "b": "In B"})),
    ]
    head = (f"A: dataset {c.a['id']} {html.escape(c.a['label'])} (imported {c.a['imported_at']}, {c.a['patients']} "
            f"patients); B: dataset {c.b['id']} {html.escape(c.b['label'])} (imported {c.b['imported_at']}, "
            f"{c.b['patients']} patients)")
    body = "".join(f"<h2>{html.escape(t)}</h2><p>{html.escape(note)}</p>{frame.to_html(index=False, escape=True, border=0)}"
                   for t, note, frame in sections)
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Export against export</title>"
            "<style>body{font-family:Arial,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px}"
            "th{background:#f3f3f3}</style></head><body><h1>Export against export</h1>"
            f"<p>{head}</p>{body}<h2>Analysis spec</h2><pre>{html.escape(c.spec_text)}</pre></body></html>")
    html_path = out / "compare.html"
    html_path.write_text(page, encoding="utf-8")
    return {"csv": csv_path, "html": html_path}


def _people(frame: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """A section's table as text: numbers without scientific notation or NaN, headers named."""
    text = for_people(frame.rename(columns={k: f"_{k}" for k in frame.columns}))
    text.columns = [labels.get(c, c) for c in frame.columns]
    return text
