"""One vocabulary: input columns, their aliases and the data dictionary.

Everything that names a column reads it from here. The README's data dictionary is
generated from :data:`VISIT_COLUMNS` and :data:`THERAPY_COLUMNS` and a test holds the
two together (``tests/test_readme.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "Column",
    "VISIT_COLUMNS",
    "THERAPY_COLUMNS",
    "PATIENT_LEVEL",
    "ANTIBODIES",
    "STOP_REASONS",
    "LINES_COLUMNS",
    "TRAJECTORY_COLUMNS",
    "normalise_header",
    "data_dictionary_markdown",
]


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # text | date | day | number | category | flag | therapy
    required: str  # "yes" | "no" | "one of visit_date/visit_day" ...
    meaning: str
    low: float | None = None
    high: float | None = None
    patient_level: bool = False
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def range_text(self) -> str:
        if self.low is None and self.high is None:
            return ""
        if self.high is None:
            return f">= {self.low:g}"
        return f"{self.low:g}-{self.high:g}"


VISIT_COLUMNS: tuple[Column, ...] = (
    Column("patient_id", "text", "yes", "De-identified patient code (text; leading zeros kept).",
           aliases=("patient", "pid", "subject", "subject_id", "study_id", "record_id", "participant_id", "case_id")),
    Column("visit_date", "date", "one of visit_date/visit_day",
           "Visit date, ISO 8601 (YYYY-MM-DD), or day-first dd.mm.yyyy (see date_format); may be date-shifted "
           "per patient.",
           aliases=("date", "visit", "visit_dt", "date_of_visit", "assessment_date", "exam_date")),
    Column("visit_day", "day", "one of visit_date/visit_day",
           "Integer day of the visit from any per-patient anchor.",
           aliases=("day", "study_day", "days", "visit_study_day", "ady")),
    Column("cdasi_activity", "number", "yes", "CDASI v2 activity score; may be blank at a visit.", 0, 100,
           aliases=("cdasi_a", "cdasi_act", "cdasi_activity_score", "cdasi_activity_total", "cdasia", "activity")),
    Column("cdasi_damage", "number", "no", "CDASI v2 damage score.", 0, 32,
           aliases=("cdasi_d", "cdasi_dam", "cdasi_damage_score", "cdasi_damage_total", "cdasid", "damage")),
    Column("systemic_therapy", "therapy", "no",
           'Systemic agents current at the visit, separated by ";" or "+" (generic, brand or abbreviation).',
           aliases=("therapy", "systemic", "systemic_agents", "treatment", "treatments", "current_therapy",
                    "medications", "drugs")),
    Column("prednisone_mg_day", "number", "no", "Concomitant glucocorticoid dose, prednisone mg/day.", 0, None,
           aliases=("prednisone", "prednisone_mg", "pred_mg_day", "steroid_dose", "prednisone_dose")),
    Column("skindex29_symptoms", "number", "no", "Skindex-29 symptoms scale.", 0, 100),
    Column("skindex29_emotions", "number", "no", "Skindex-29 emotions scale.", 0, 100),
    Column("skindex29_functioning", "number", "no", "Skindex-29 functioning scale.", 0, 100),
    Column("itch_vas", "number", "no", "Itch visual analogue scale.", 0, 10, aliases=("itch", "pruritus_vas")),
    Column("pga_skin", "number", "no", "Physician global assessment of skin activity (0-10).", 0, 10,
           aliases=("pga", "md_global_skin")),
    Column("sex", "category", "no", "female, male, other or unknown (F/M accepted). Constant within a patient.",
           patient_level=True, aliases=("gender",)),
    Column("age_at_onset", "number", "no",
           'Age in years at disease onset; ages over 89 must be given as "90+" (HIPAA Safe Harbor).',
           0, 89, patient_level=True, aliases=("age_onset", "onset_age", "age_at_diagnosis", "age")),
    Column("antibody", "category", "no",
           'Myositis-specific antibodies, one or more of mda5, tif1g, nxp2, sae, mi2, negative, unknown '
           '(separated by ";" or ","). Constant within a patient.',
           patient_level=True, aliases=("antibodies", "msa", "autoantibody", "myositis_antibody")),
    Column("ild", "flag", "no", "Interstitial lung disease: yes/no (1/0, true/false). Constant within a patient.",
           patient_level=True, aliases=("interstitial_lung_disease",)),
    Column("malignancy", "flag", "no", "Associated malignancy: yes/no. Constant within a patient.",
           patient_level=True, aliases=("cancer", "cancer_associated")),
    Column("malignancy_screening_date", "event_date", "no",
           "Date of a cancer screening (e.g. CT chest/abdomen/pelvis) done at or since the visit; for quality "
           "indicators.", aliases=("cancer_screening_date", "malignancy_screen_date")),
    Column("pft_date", "event_date", "no", "Date of pulmonary function tests; for quality indicators.",
           aliases=("pulmonary_function_test_date", "lung_function_date")),
    Column("hrct_date", "event_date", "no", "Date of a high-resolution chest CT; for quality indicators.",
           aliases=("chest_hrct_date", "hrct")),
    Column("antibody_panel_date", "event_date", "no", "Date of the myositis antibody panel; for quality indicators.",
           aliases=("msa_panel_date", "myositis_panel_date")),
)

THERAPY_COLUMNS: tuple[Column, ...] = (
    Column("patient_id", "text", "yes", "De-identified patient code, as in the visits file.",
           aliases=VISIT_COLUMNS[0].aliases),
    Column("drug", "therapy", "yes", "One systemic agent (generic, brand or abbreviation).",
           aliases=("agent", "medication", "drug_name", "therapy")),
    Column("start_date", "date", "one of start_date/start_day", "Date the agent was started (like visit_date).",
           aliases=("start", "started", "date_start")),
    Column("start_day", "day", "one of start_date/start_day", "Day the agent was started, same anchor as visit_day."),
    Column("stop_date", "date", "no", "Date the agent was stopped; blank = ongoing.",
           aliases=("stop", "end_date", "stopped", "date_stop")),
    Column("stop_day", "day", "no", "Day the agent was stopped; blank = ongoing.", aliases=("end_day",)),
    Column("stop_reason", "category", "no",
           "inefficacy, adverse_event, remission, patient_choice, other or unknown.",
           aliases=("reason", "reason_stopped", "discontinuation_reason")),
)

PATIENT_LEVEL = tuple(c.name for c in VISIT_COLUMNS if c.patient_level)

ANTIBODIES = ("mda5", "tif1g", "nxp2", "sae", "mi2", "negative", "unknown")
ANTIBODY_ALIASES = {
    "mda5": "mda5", "antimda5": "mda5", "cadm140": "mda5", "ifih1": "mda5",
    "tif1g": "tif1g", "tif1gamma": "tif1g", "antitif1g": "tif1g", "antitif1gamma": "tif1g", "tif1": "tif1g",
    "tif1γ": "tif1g", "p155": "tif1g", "p155140": "tif1g",
    "nxp2": "nxp2", "antinxp2": "nxp2", "mjantigen": "nxp2", "mj": "nxp2",
    "sae": "sae", "antisae": "sae", "sae1": "sae", "sae2": "sae",
    "mi2": "mi2", "antimi2": "mi2",
    "negative": "negative", "neg": "negative", "none": "negative", "seronegative": "negative",
    "unknown": "unknown", "unk": "unknown", "notdone": "unknown", "nd": "unknown", "pending": "unknown",
}
SEX_VALUES = {"f": "female", "female": "female", "w": "female", "woman": "female",
              "m": "male", "male": "male", "man": "male",
              "other": "other", "o": "other", "x": "other", "u": "unknown", "unknown": "unknown"}
FLAG_VALUES = {"yes": True, "y": True, "1": True, "true": True, "t": True, "present": True, "positive": True,
               "no": False, "n": False, "0": False, "false": False, "f": False, "absent": False, "negative": False}
STOP_REASONS = ("inefficacy", "adverse_event", "remission", "patient_choice", "other", "unknown")
STOP_REASON_ALIASES = {
    "inefficacy": "inefficacy", "ineffective": "inefficacy", "lackofefficacy": "inefficacy", "failure": "inefficacy",
    "nonresponse": "inefficacy", "refractory": "inefficacy",
    "adverseevent": "adverse_event", "ae": "adverse_event", "sideeffect": "adverse_event",
    "sideeffects": "adverse_event", "toxicity": "adverse_event", "intolerance": "adverse_event",
    "remission": "remission", "response": "remission", "improved": "remission",
    "patientchoice": "patient_choice", "patientpreference": "patient_choice", "patientdecision": "patient_choice",
    "other": "other", "cost": "other", "insurance": "other", "pregnancy": "other",
    "unknown": "unknown", "": "unknown", "unk": "unknown",
}

# Blank markers in exports: treated as an empty cell for every column.
BLANK_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", ".", "nr", "not recorded", "missing", "#n/a"})

LINES_COLUMNS = (
    "patient_id", "line_id", "line_number", "agent", "arm", "start_day", "end_day", "baseline_day",
    "baseline_cdasi", "included", "exclusion_reason", "event", "time_weeks", "censor_reason", "stop_reason",
)
TRAJECTORY_COLUMNS = (
    "patient_id", "line_id", "arm", "line_number", "visit_day", "weeks", "cdasi_activity", "baseline_cdasi",
)

_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalise_header(name: object) -> str:
    """Case-, space- and punctuation-insensitive key: ``"Patient ID" -> "patientid"``."""
    text = str(name).replace("\ufeff", "").strip().lower()
    text = text.replace("γ", "g")
    return _NON_ALNUM.sub("", text)


def data_dictionary_markdown() -> str:
    """The README's data dictionary, generated from the column definitions."""
    out = ["### Visits file (one row per visit)", "",
           "| column | required | range | meaning |", "|---|---|---|---|"]
    for c in VISIT_COLUMNS:
        out.append(f"| `{c.name}` | {c.required} | {c.range_text} | {c.meaning} |")
    out += ["", "### Therapies file (optional; one row per episode; wins over `systemic_therapy`)", "",
            "| column | required | range | meaning |", "|---|---|---|---|"]
    for c in THERAPY_COLUMNS:
        out.append(f"| `{c.name}` | {c.required} | {c.range_text} | {c.meaning} |")
    return "\n".join(out)
