"""Table 1 by arm, with standardised mean differences (SMD).

One row per characteristic of the included lines in each arm. The SMD of a row is the largest
absolute pairwise SMD between arms: (m1 - m2) / sqrt((s1^2 + s2^2) / 2), with s^2 = p(1 - p) for
proportions (Austin, Stat Med 2009). |SMD| > 0.1 is the usual mark of imbalance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from ..protocol import Call, TableSpec, recorded

__all__ = ["Table1", "table1", "smd", "weighted_mean_var"]

BINARY = (("female", "Female"), ("mda5", "Anti-MDA5"), ("tif1g", "Anti-TIF1-gamma"), ("nxp2", "Anti-NXP2"),
          ("sae", "Anti-SAE"), ("mi2", "Anti-Mi-2"), ("negative", "Antibody negative"),
          ("ild", "Interstitial lung disease"), ("malignancy", "Malignancy"),
          ("moderate_severe", "Baseline CDASI activity > 14 (moderate-severe)"))
CONTINUOUS = (("age_at_onset", "Age at onset, years"), ("baseline_cdasi", "Baseline CDASI activity, points"),
              ("line_number", "Line number"))


def weighted_mean_var(x: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    x = np.asarray(x, float)
    w = np.ones_like(x) if w is None else np.asarray(w, float)
    keep = np.isfinite(x) & np.isfinite(w)
    x, w = x[keep], w[keep]
    if w.sum() <= 0:
        return np.nan, np.nan
    m = float(np.sum(w * x) / np.sum(w))
    v = float(np.sum(w * (x - m) ** 2) / np.sum(w))
    return m, v


def smd(x: pd.Series, groups: pd.Series, levels: list[str], weights: pd.Series | None = None,
        binary: bool = False) -> float:
    """Largest absolute pairwise standardised mean difference across ``levels``."""
    stats = {}
    for g in levels:
        m = (groups == g).to_numpy()
        if m.sum() == 0:
            continue
        mean, var = weighted_mean_var(x.to_numpy()[m], None if weights is None else weights.to_numpy()[m])
        if binary and np.isfinite(mean):
            var = mean * (1 - mean)
        stats[g] = (mean, var)
    best = np.nan
    for a, b in combinations(stats, 2):
        (m1, v1), (m2, v2) = stats[a], stats[b]
        denom = np.sqrt((v1 + v2) / 2)
        if not np.isfinite(m1) or not np.isfinite(m2):
            continue
        d = 0.0 if denom == 0 and m1 == m2 else (abs(m1 - m2) / denom if denom > 0 else np.inf)
        best = d if not np.isfinite(best) else max(best, d)
    return float(best)


@dataclass(frozen=True)
class Table1:
    arms: list[str]
    table: pd.DataFrame  # display table: characteristic, one column per arm, SMD
    values: pd.DataFrame  # numbers behind it: variable, arm, n, count, pct, mean, sd, median, q1, q3, missing
    warnings: list[str] = field(default_factory=list)
    call: Call | None = field(default=None, compare=False)
    alpha: float = 0.05  # the protocol's; Table 1 has no interval

    @property
    def summary(self) -> pd.DataFrame:
        return self.table

    def tables(self) -> dict[str, TableSpec]:
        lines = self.table.iloc[0] if len(self.table) else {}
        n = {a: int(lines[a]) if str(lines.get(a, "")).isdigit() else 0 for a in self.arms}
        return {"table": TableSpec(self.table, "Table 1: characteristics by arm", column_n=n,
                                   derived_across=("SMD",), text_counts=tuple(self.arms))}

    def figures(self) -> dict:
        return {}

    def to_dict(self) -> dict:
        return {"arms": self.arms, "rows": self.table.to_dict(orient="records"),
                "values": self.values.replace({np.nan: None}).to_dict(orient="records"),
                "smd_definition": "largest absolute pairwise standardised mean difference between arms",
                "warnings": list(self.warnings)}


@recorded(table="table")
def table1(table: pd.DataFrame, arms: list[str] | tuple[str, ...], alpha: float = 0.05) -> Table1:
    arms = [a for a in arms]
    t = table.copy()
    t["moderate_severe"] = np.where(t["baseline_cdasi"].isna(), np.nan, (t["baseline_cdasi"] > 14).astype(float))
    groups = t["arm"].astype(str).astype("category")  # compared with each arm many times: codes, not strings
    present = [a for a in arms if (groups == a).any()]
    warns = [f"{a}: no included lines" for a in arms if a not in present]
    rows, values = [], []

    def cell_n(arm):
        return int((groups == arm).sum())

    rows.append({"characteristic": "Lines, n"} | {a: str(cell_n(a)) for a in arms} | {"SMD": ""})
    rows.append({"characteristic": "Patients, n"}
                | {a: str(t.loc[groups == a, "patient_id"].nunique()) for a in arms} | {"SMD": ""})
    for var, label in CONTINUOUS:
        if var not in t.columns:
            continue
        row = {"characteristic": label}
        for a in arms:
            x = t.loc[groups == a, var].dropna()
            if x.empty:
                row[a] = "-"
                values.append({"variable": var, "arm": a, "n": 0, "missing": int((groups == a).sum())})
                continue
            q1, med, q3 = np.percentile(x, [25, 50, 75])
            row[a] = f"{x.mean():.1f} ({x.std(ddof=1) if len(x) > 1 else 0:.1f}); {med:g} [{q1:g}-{q3:g}]"
            values.append({"variable": var, "arm": a, "n": len(x), "mean": x.mean(),
                           "sd": x.std(ddof=1) if len(x) > 1 else 0.0, "median": med, "q1": q1, "q3": q3,
                           "missing": int((groups == a).sum() - len(x))})
        row["SMD"] = _fmt_smd(smd(t[var], groups, present))
        rows.append(row)
    for var, label in BINARY:
        if var not in t.columns or t[var].notna().sum() == 0:
            continue
        row = {"characteristic": label + ", n (%)"}
        for a in arms:
            x = t.loc[groups == a, var].dropna()
            k = int(x.sum())
            row[a] = f"{k} ({100 * k / len(x):.0f}%)" if len(x) else "-"
            values.append({"variable": var, "arm": a, "n": len(x), "count": k,
                           "pct": 100 * k / len(x) if len(x) else np.nan,
                           "missing": int((groups == a).sum() - len(x))})
        row["SMD"] = _fmt_smd(smd(t[var], groups, present, binary=True))
        rows.append(row)
    cols = ["characteristic", *arms, "SMD"]
    return Table1(arms, pd.DataFrame(rows, columns=cols), pd.DataFrame(values), warns, alpha=alpha)


def _fmt_smd(x: float) -> str:
    return "" if not np.isfinite(x) else f"{x:.2f}"
