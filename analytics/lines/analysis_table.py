"""Shared pieces of the model results: the line-level analysis table, warning capture."""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import numpy as np
import pandas as pd

from .derive import Derivation
from ..protocol import AnalysisWarning
from ..ingest.schema import ANTIBODIES
from ..ingest.validate import Prepared

__all__ = ["analysis_table", "capture_warnings", "ADJUSTMENT_SET", "COVARIATE_LABELS", "usable_covariates"]

# The usual adjustment set for confounding by indication (shared/domain.md).
ADJUSTMENT_SET = ("baseline_cdasi", "line_number", "mda5", "ild")
COVARIATE_LABELS = {
    "baseline_cdasi": "Baseline CDASI activity (points)", "line_number": "Line number",
    "mda5": "Anti-MDA5", "ild": "Interstitial lung disease", "age_at_onset": "Age at onset (years)",
    "female": "Female", "malignancy": "Malignancy", "tif1g": "Anti-TIF1-gamma",
}


@contextlib.contextmanager
def capture_warnings(sink: list[str]) -> Iterator[None]:
    """Collect every warning raised inside the block into ``sink``, never to stderr: as
    :class:`~analytics.protocol.AnalysisWarning` text that keeps the warning's category."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        text = AnalysisWarning(f"{w.category.__name__}: {str(w.message).strip()}", category=w.category.__name__)
        if text not in sink:
            sink.append(text)


def analysis_table(derivation: Derivation, prepared: Prepared | None = None) -> pd.DataFrame:
    """One row per included line in an arm: time, event, arm and the patient covariates.

    Columns: patient_id, line_id, arm (ordered Categorical of the requested arms), line_number,
    baseline_cdasi, time (weeks), event, censor_reason, stop_reason, and, where the export has
    them, female, age_at_onset, mda5, tif1g, ild, malignancy (0/1 or NaN when unknown)."""
    arms = list(derivation.options.arms)
    ln = derivation.lines
    t = ln[(ln["included"] == 1) & (ln["arm"] != "")].copy()
    out = pd.DataFrame({
        "patient_id": t["patient_id"].astype(str), "line_id": t["line_id"].astype(str),
        "arm": pd.Categorical(t["arm"], categories=arms, ordered=False),
        "line_number": t["line_number"].astype(float), "baseline_cdasi": t["baseline_cdasi"].astype(float),
        "time": t["time_weeks"].astype(float), "event": t["event"].astype(int),
        "censor_reason": t["censor_reason"].astype(str), "stop_reason": t["stop_reason"].astype(str),
        "start_day": t["start_day"].astype(int),
    }).reset_index(drop=True)
    if prepared is not None and len(prepared.visits):
        v = prepared.visits
        pcols = [c for c in ("sex", "age_at_onset", "antibody", "ild", "malignancy") if c in v.columns]
        if pcols:
            pat = v.groupby("patient_id")[pcols].first()
            p = pd.DataFrame(index=pat.index)
            if "sex" in pat:
                p["female"] = np.where(pat["sex"].isna() | (pat["sex"] == "unknown"), np.nan,
                                       (pat["sex"] == "female").astype(float))
            if "age_at_onset" in pat:
                p["age_at_onset"] = pat["age_at_onset"].astype(float)
            if "antibody" in pat:
                ab = pat["antibody"]
                known = (ab.notna() & (ab != "unknown")).to_numpy()
                codes, values = pd.factorize(ab.fillna(""))  # a handful of distinct codes, split once each
                codes_of = [set(str(x).split(";")) for x in values]
                for name in ANTIBODIES[:-1]:  # every code but "unknown"
                    has = np.array([name in c for c in codes_of], dtype=float)
                    p[name] = np.where(known, has[codes] if len(has) else np.nan, np.nan)
            for flag in ("ild", "malignancy"):
                if flag in pat:
                    p[flag] = pat[flag].astype("Float64").astype(float)
            out = out.join(p, on="patient_id")
    return out


def usable_covariates(table: pd.DataFrame, covariates, warns: list[str], consequence: str) -> list[str]:
    """The covariates that exist in ``table`` and vary; a warning for each one left out.

    ``consequence`` ends the warning, e.g. "the model is not adjusted for it"."""
    usable = []
    for c in covariates:
        if c not in table.columns:
            warns.append(f"covariate {c!r} is not in the export; {consequence}")
        elif table[c].nunique(dropna=True) < 2:
            warns.append(f"covariate {c!r} does not vary; {consequence}")
        else:
            usable.append(c)
    return usable
