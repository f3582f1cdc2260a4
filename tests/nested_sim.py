"""Simulated trajectories with a known truth at both levels (lines nested in patients), for the
mixed model's simulation tests and the nested lme4/lmerTest reference input."""

from __future__ import annotations

import numpy as np
import pandas as pd

ARMS = ("MMF", "IVIG", "JAKi")
# The truth: fixed effects, and per level (sd of intercept, sd of slope per week, correlation).
TRUTH = {"intercept": 14.0, "arm": {"MMF": 0.0, "IVIG": -1.0, "JAKi": 1.0},
         "slope": {"MMF": -0.30, "IVIG": -0.45, "JAKi": -0.60},
         "patient": (5.0, 0.15, -0.3), "line": (3.0, 0.10, -0.2), "residual_sd": 2.5}


def _cov(sd0: float, sd1: float, rho: float) -> np.ndarray:
    return np.array([[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]])


def simulate_nested(n_patients: int, seed: int, truth: dict = TRUTH, max_lines: int = 4,
                    one_arm_per_patient: bool = False) -> pd.DataFrame:
    """One row per visit: patient_id, line_id, arm, weeks, cdasi_activity. Each patient has 1 to
    ``max_lines`` lines of random arms (``one_arm_per_patient``: all of one arm), each line 1 to 7
    visits in its first 24 weeks (a fifth of lines have a single visit)."""
    rng = np.random.default_rng(seed)
    cp, cl = _cov(*truth["patient"]), _cov(*truth["line"])
    rows = []
    for i in range(n_patients):
        bp = rng.multivariate_normal([0, 0], cp)
        patient_arm = ARMS[int(rng.integers(0, 3))] if one_arm_per_patient else None
        for j in range(int(rng.integers(1, max_lines + 1))):
            arm = patient_arm if one_arm_per_patient else ARMS[int(rng.integers(0, 3))]
            bl = rng.multivariate_normal([0, 0], cl)
            k = 1 if rng.random() < 0.2 else int(rng.integers(2, 8))
            weeks = np.sort(rng.choice(np.arange(25), size=k, replace=False)).astype(float)
            mu = (truth["intercept"] + truth["arm"][arm] + bp[0] + bl[0]
                  + (truth["slope"][arm] + bp[1] + bl[1]) * weeks)
            for w, m in zip(weeks, mu):
                rows.append((f"P{i:04d}", f"P{i:04d}:{j + 1}", arm, w, m + rng.normal(0, truth["residual_sd"])))
    return pd.DataFrame(rows, columns=["patient_id", "line_id", "arm", "weeks", "cdasi_activity"])
