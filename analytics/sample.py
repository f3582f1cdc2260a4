"""A seeded synthetic CADM cohort in the input format. Synthetic: no real patient is in it.

Calibrated on the published series in ``shared/domain.md`` (numbers are targets for the
simulation, never results that the analysis is told):

- mean age at onset about 50, about 80% female; baseline CDASI activity median about 17;
- antibodies: anti-TIF1-gamma ~32%, anti-MDA5 ~25% (ILD in ~60% of them), anti-NXP2 ~8%,
  anti-SAE ~4%, anti-Mi-2 ~5%; malignancy mostly with anti-TIF1-gamma;
- a stepwise ladder: hydroxychloroquine, then methotrexate or MMF (as a switch or an add-on),
  then IVIG, then a JAK inhibitor; most patients need a second agent (Anyanwu 2017);
- agent-specific improvement: MMF mostly within 4-8 weeks (Edge 2006), IVIG within 1-3 monthly
  cycles (ProDERM: -9.4 points at week 16), JAK inhibitors 28 -> ~10 by week 12 (Paik 2021);
  anti-MDA5 lowers the chance of response (Wolstencroft 2018);
- visits every 4-12 weeks while escalating, every 3-6 months when stable; flares (polyphasic
  course, Chansky 2018); blank scores now and then; stops for adverse events, remission
  (with restarts of the same agent after a flare) and patient choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .display.export import write_csv

__all__ = ["generate", "write_sample"]

# agent: (mean plateau reduction, time constant in weeks, primary non-response probability)
_EFFECT = {
    "hydroxychloroquine": (0.35, 10.0, 0.50),
    "methotrexate": (0.40, 8.0, 0.45),
    "mycophenolate": (0.55, 5.0, 0.30),
    "ivig": (0.65, 4.0, 0.22),
    "tofacitinib": (0.70, 4.0, 0.18), "ruxolitinib": (0.65, 4.0, 0.22), "baricitinib": (0.65, 4.0, 0.22),
    "upadacitinib": (0.70, 4.0, 0.20),
    "rituximab": (0.40, 10.0, 0.45),
}
_SPELLINGS = {
    "hydroxychloroquine": ["HCQ", "hydroxychloroquine", "Plaquenil"],
    "methotrexate": ["MTX", "methotrexate", "Otrexup"],
    "mycophenolate": ["MMF", "mycophenolate mofetil", "CellCept", "Myfortic"],
    "ivig": ["IVIG", "IVIg", "Privigen", "Octagam", "Gamunex"],
    "tofacitinib": ["tofacitinib", "Xeljanz"], "ruxolitinib": ["ruxolitinib", "Jakafi"],
    "baricitinib": ["baricitinib", "Olumiant"], "upadacitinib": ["upadacitinib", "Rinvoq"],
    "rituximab": ["rituximab", "Rituxan"],
}
_JAK = ("tofacitinib", "ruxolitinib", "baricitinib", "upadacitinib")
_JAK_P = (0.6, 0.15, 0.15, 0.10)
_ANTIBODIES = ("tif1g", "mda5", "nxp2", "sae", "mi2", "negative", "unknown")
_ANTIBODY_P = (0.32, 0.25, 0.08, 0.04, 0.05, 0.18, 0.08)


@dataclass
class _On:
    agent: str
    start_w: float
    level0: float  # activity when started
    reduction: float
    tau: float
    added: bool


def _next_agent(rng, tried: set[str], mda5: bool) -> tuple[str, bool] | None:
    """The next rung of the ladder and whether it is added on (True) or switched to."""
    jak = str(rng.choice(_JAK, p=_JAK_P))
    if "mycophenolate" not in tried and "methotrexate" not in tried:
        if mda5 and rng.random() < 0.25:
            return jak, False
        return ("mycophenolate" if rng.random() < 0.6 else "methotrexate"), bool(rng.random() < 0.5)
    options: list[tuple[str, float]] = []
    if "mycophenolate" not in tried:
        options.append(("mycophenolate", 0.6))
    if "ivig" not in tried:
        options.append(("ivig", 1.1 if not mda5 else 0.6))
    if not tried.intersection(_JAK):
        options.append((jak, 0.8 if not mda5 else 1.4))
    if "rituximab" not in tried and len(tried) >= 4:
        options.append(("rituximab", 0.3))
    if not options:
        return None
    names, w = zip(*options)
    pick = str(rng.choice(names, p=np.array(w) / sum(w)))
    return pick, bool(rng.random() < 0.35)


EXPORT_END = pd.Timestamp("2025-06-30")  # the sample export's last date


def _patient(rng, i: int, rng_dates=None):
    pid = f"CADM-{i + 1:04d}"
    sex = "female" if rng.random() < 0.80 else "male"
    age = int(np.clip(round(rng.normal(50, 13)), 18, 85))
    antibody = str(rng.choice(_ANTIBODIES, p=_ANTIBODY_P))
    mda5 = antibody == "mda5"
    ild = bool(rng.random() < (0.6 if mda5 else 0.08))
    malignancy = bool(rng.random() < (0.25 if antibody == "tif1g" else 0.03))
    rng.integers(0, 3500)  # (kept: the clinical draws stay those of earlier releases; dates come from rng_dates)
    level = float(np.clip(rng.lognormal(math.log(17), 0.45), 4, 60))
    responsiveness = float(rng.beta(5, 2)) * (0.7 if mda5 else 1.0)
    horizon = float(rng.uniform(78, 312))
    spell = {a: str(rng.choice(s)) for a, s in _SPELLINGS.items()}
    sep = "; " if rng.random() < 0.8 else " + "
    damage = float(rng.poisson(3))
    pred = float(rng.choice([0, 0, 10, 20, 30]))

    def start(agent: str, t: float, current: float, added: bool) -> _On:
        mean_r, tau, p_non = _EFFECT[agent]
        if rng.random() < p_non:
            r = float(rng.uniform(0.0, 0.15))
        else:
            r = float(np.clip(mean_r * responsiveness * rng.lognormal(0, 0.2) + 0.15, 0.1, 0.95))
        return _On(agent, t, current, r, tau, added)

    def activity(on: list[_On], t: float, base: float) -> float:
        value = base
        for o in on:
            value = value * (1 - o.reduction * (1 - math.exp(-(t - o.start_w) / o.tau)))
        return value

    t = 0.0
    first = "hydroxychloroquine" if rng.random() < 0.85 else ("methotrexate" if rng.random() < 0.6 else "mycophenolate")
    on = [start(first, 0.0, level, False)]
    base = level
    tried = {first}
    visits: list[dict] = []
    episodes = [{"agent": first, "start_w": 0.0, "stop_w": None, "reason": ""}]
    flare_t, flare_size = -1e9, 0.0
    remitted: list[str] = []

    def stop_episode(agent: str, when: float, why: str) -> None:
        for ep in reversed(episodes):
            if ep["agent"] == agent and ep["stop_w"] is None:
                ep["stop_w"], ep["reason"] = when, why
                return

    while t <= horizon:
        if rng.random() < 0.05:
            flare_t, flare_size = t, float(rng.uniform(6, 14))
        underlying = activity(on, t, base)
        score = float(np.clip(round(underlying + flare_size * math.exp(-(t - flare_t) / 6.0)
                                    + rng.normal(0, 1.8)), 0, 100))
        damage = min(32.0, damage + (1.0 if rng.random() < 0.04 else 0.0))
        pred = 0.0 if pred < 2.5 else round(pred * 0.8 / 2.5) * 2.5
        visits.append({
            "patient_id": pid, "visit_date": t,
            "cdasi_activity": score if rng.random() > 0.06 else np.nan, "cdasi_damage": damage,
            "systemic_therapy": sep.join([spell[o.agent] for o in on] + (["prednisone"] if pred else [])),
            "prednisone_mg_day": pred,
            "skindex29_symptoms": float(np.clip(round(18 + 1.6 * score + rng.normal(0, 8)), 0, 100)),
            "skindex29_emotions": float(np.clip(round(20 + 1.3 * score + rng.normal(0, 9)), 0, 100)),
            "skindex29_functioning": float(np.clip(round(10 + 1.1 * score + rng.normal(0, 8)), 0, 100)),
            # + 0.0: a clipped -0.0 becomes 0.0 (NumPy 1 and 2 differ; the file must not)
            "itch_vas": float(np.clip(round(score / 5 + rng.normal(0, 1.2), 1), 0, 10)) + 0.0,
            "pga_skin": float(np.clip(round(score / 6 + rng.normal(0, 0.8), 1), 0, 10)) + 0.0,
            "sex": sex, "age_at_onset": age, "antibody": antibody,
            "ild": "yes" if ild else "no", "malignancy": "yes" if malignancy else "no"})

        # Decisions at this visit, about the newest agent.
        reason = ""
        if on:
            newest = on[-1]
            weeks_on = t - newest.start_w
            if rng.random() < 0.02:
                reason = "adverse_event"
            elif weeks_on >= 12 and score > newest.level0 - 4 and rng.random() < 0.75:
                reason = "inefficacy"
            elif weeks_on >= 52 and score <= 2 and rng.random() < 0.3:
                reason = "remission"
            elif rng.random() < 0.005:
                reason = "patient_choice"
        elif remitted and score >= 8:  # a flare after stopping in remission: restart the same agent
            agent = remitted.pop()
            base = max(underlying, 1.0)
            on = [start(agent, t, base, False)]
            episodes.append({"agent": agent, "start_w": t, "stop_w": None, "reason": ""})
        if reason:
            nxt = None if reason in ("remission", "patient_choice") else _next_agent(rng, tried, mda5)
            add_on = nxt is not None and nxt[1] and reason == "inefficacy"
            if not add_on:
                gone = on.pop()
                stop_episode(gone.agent, t, reason)
                if reason == "remission":
                    remitted.append(gone.agent)
            base = max(underlying, 1.0)
            # what the agents still taken achieved is kept; a new agent acts on the current level
            on = [_On(o.agent, o.start_w, base, 0.0, o.tau, o.added) for o in on]
            if nxt is not None:
                tried.add(nxt[0])
                on.append(start(nxt[0], t, base, add_on))
                episodes.append({"agent": nxt[0], "start_w": t, "stop_w": None, "reason": ""})
        escalating = bool(on) and (t - on[-1].start_w) < 26
        t += float(rng.uniform(4, 12)) if escalating else float(rng.uniform(12, 26))
    # Dates: the last visit falls at the export's end for patients still followed (85%), 1-4 years
    # earlier for those lost to follow-up. Screenings (for the quality indicators) come from the
    # same separate stream, so the clinical values never depend on them.
    rd = rng_dates if rng_dates is not None else np.random.default_rng(i)
    gap = 0.0 if rd.random() < 0.85 else float(rd.uniform(365, 4 * 365))
    anchor = EXPORT_END - pd.Timedelta(days=round(visits[-1]["visit_date"] * 7) + round(gap) + int(rd.integers(0, 60)))
    high_risk = antibody in ("tif1g", "nxp2")
    for k, row in enumerate(visits):
        t_w = row["visit_date"]
        row["visit_date"] = (anchor + pd.Timedelta(days=round(t_w * 7))).date().isoformat()
        year = int(t_w // 52)
        first_in_year = k == 0 or int(visits[k - 1]["_t"] // 52) != year
        row["_t"] = t_w
        screen = first_in_year and year < 3 and rd.random() < (0.8 if high_risk else (0.6 if year == 0 else 0.1))
        row["malignancy_screening_date"] = row["visit_date"] if screen else ""
        row["pft_date"] = row["visit_date"] if k == 0 and rd.random() < (0.9 if mda5 else 0.65) else ""
        row["hrct_date"] = row["visit_date"] if k == 0 and rd.random() < (0.9 if mda5 else 0.55) else ""
        row["antibody_panel_date"] = row["visit_date"] if k == 0 and antibody != "unknown" else ""
    for row in visits:
        row.pop("_t", None)
    rows = []
    for ep in episodes:
        rows.append({"patient_id": pid, "drug": spell.get(ep["agent"], ep["agent"]),
                     "start_date": (anchor + pd.Timedelta(days=round(ep["start_w"] * 7))).date().isoformat(),
                     "stop_date": "" if ep["stop_w"] is None else
                     (anchor + pd.Timedelta(days=round(ep["stop_w"] * 7))).date().isoformat(),
                     "stop_reason": ep["reason"]})
    return visits, rows


def generate(n_patients: int = 400, seed: int = 20210301) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (visits, therapies) DataFrames of a synthetic cohort. Same seed, same cohort."""
    rng = np.random.default_rng(seed)
    rng_dates = np.random.default_rng([seed, 1])  # dates and screenings: a separate stream
    visits, therapies = [], []
    for i in range(n_patients):
        v, e = _patient(rng, i, rng_dates)
        visits.extend(v)
        therapies.extend(e)
    vdf = pd.DataFrame(visits)
    for col in ("cdasi_activity", "cdasi_damage", "skindex29_symptoms", "skindex29_emotions",
                "skindex29_functioning"):
        vdf[col] = vdf[col].round().astype("Int64")  # whole-number scales are written as integers
    tdf = pd.DataFrame(therapies, columns=["patient_id", "drug", "start_date", "stop_date", "stop_reason"])
    tdf = tdf.drop_duplicates().sort_values(["patient_id", "start_date", "drug"], kind="stable")
    return vdf.reset_index(drop=True), tdf.reset_index(drop=True)


def write_sample(out: str | Path, n_patients: int = 400, seed: int = 20210301) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    visits, therapies = generate(n_patients, seed)
    return {"visits": write_csv(visits, out / "visits.csv"), "therapies": write_csv(therapies, out / "therapies.csv")}
