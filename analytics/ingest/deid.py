"""De-identification guard: refuse identifier-like columns and values.

HIPAA Safe Harbor lists names, record numbers, dates of birth, addresses, phone numbers,
email addresses and social security numbers among the identifiers, and asks that ages over
89 be aggregated as "90+". The guard raises an *error* finding for each, naming the column
and what to do; a file with such a finding is refused.
"""

from __future__ import annotations

import re

import pandas as pd

from .distinct import distinct
from .io import RawTable
from .validation_report import Finding
from .schema import normalise_header

__all__ = ["scan_identifiers"]

# Header tokens (after splitting on punctuation and camelCase) that mark an identifier column.
_ID_TOKENS = {
    "name": "names", "firstname": "names", "lastname": "names", "surname": "names", "fullname": "names",
    "forename": "names", "givenname": "names", "familyname": "names", "initials": "names",
    "mrn": "medical record numbers", "medicalrecord": "medical record numbers", "medicalrecordnumber":
        "medical record numbers", "hospitalnumber": "medical record numbers", "nhs": "medical record numbers",
    "nhsnumber": "medical record numbers", "chartnumber": "medical record numbers", "hospitalid":
        "medical record numbers", "recordnumber": "medical record numbers",
    "dob": "dates of birth", "dateofbirth": "dates of birth", "birthdate": "dates of birth",
    "birthday": "dates of birth", "birth": "dates of birth", "born": "dates of birth",
    "address": "addresses", "street": "addresses", "zip": "addresses", "zipcode": "addresses",
    "postcode": "addresses", "postalcode": "addresses", "city": "addresses",
    "phone": "phone numbers", "telephone": "phone numbers", "mobile": "phone numbers", "cell": "phone numbers",
    "fax": "phone numbers", "tel": "phone numbers",
    "email": "email addresses", "mail": "email addresses", "emailaddress": "email addresses",
    "ssn": "social security numbers", "socialsecurity": "social security numbers",
    "socialsecuritynumber": "social security numbers", "nationalid": "social security numbers",
    "insurance": "insurance numbers", "insurancenumber": "insurance numbers",
}
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?:\+\d{1,3}[\s.-]?)?\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b|\+\d{1,3}(?:[\s.-]?\d{2,4}){3,5}\b")
_SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
_VALUE_CHECKS = (("email addresses", _EMAIL), ("phone numbers", _PHONE), ("social security numbers", _SSN))
# Columns whose values are machine-checked elsewhere and hold no free text.
_NOT_FREE_TEXT = {"visit_date", "visit_day", "malignancy_screening_date", "pft_date", "hrct_date", "antibody_panel_date", "start_date", "start_day", "stop_date", "stop_day", "cdasi_activity",
                  "cdasi_damage", "prednisone_mg_day", "skindex29_symptoms", "skindex29_emotions",
                  "skindex29_functioning", "itch_vas", "pga_skin", "age_at_onset"}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _header_tokens(header: str) -> set[str]:
    words = [w.lower() for w in re.split(r"[^0-9A-Za-z]+", _CAMEL.sub(" ", header)) if w]
    tokens = set(words)
    for i in range(len(words)):  # joined neighbours: "date of birth" -> "dateofbirth"
        for j in range(i + 2, min(len(words), i + 4) + 1):
            tokens.add("".join(words[i:j]))
    tokens.add(normalise_header(header))
    return tokens


def _ids(table: RawTable, mask: pd.Series) -> list[str]:
    if "patient_id" not in table.data.columns:
        return []
    return table.data.loc[mask, "patient_id"].head(20).tolist()


def scan_identifiers(table: RawTable) -> list[Finding]:
    """Findings for identifier-like columns, identifier-like values in free text, and ages over 89."""
    findings: list[Finding] = []
    data = table.data
    for label in table.unmatched:
        what = sorted({_ID_TOKENS[t] for t in _header_tokens(label) if t in _ID_TOKENS})
        if what:
            findings.append(Finding(
                "identifier_column", "error",
                f"column {label!r} looks like it holds {' / '.join(what)}, which identify a patient",
                fix="delete this column from the export (or, if it holds no identifiers, rename it) and load the "
                    "file again", column=label, file=table.kind, count=len(data)))

    for col in data.columns:
        if col in _NOT_FREE_TEXT:
            continue
        s = data[col]
        if s.empty:
            continue
        uniques = pd.Series(distinct(s)[1])
        uniques = uniques[uniques.str.len() >= 7]
        # A patient id may start with "+" (spreadsheet formula-like ids are accepted): no phone check there.
        checks = _VALUE_CHECKS if col != "patient_id" else (_VALUE_CHECKS[0], _VALUE_CHECKS[2])
        for what, pattern in checks:
            hit_values = uniques[uniques.str.contains(pattern, regex=True)]
            if hit_values.empty:
                continue
            mask = s.isin(set(hit_values))
            findings.append(Finding(
                "identifier_value", "error",
                f"column {col!r} contains values that look like {what}",
                fix=f"remove the {what} from column {col!r} (or drop the column) and load the file again",
                column=col, file=table.kind, rows=table.rows(mask), patient_ids=_ids(table, mask)))

    if "age_at_onset" in data.columns:
        codes, uniques = distinct(data["age_at_onset"])  # each distinct age once
        text = pd.Series(uniques, dtype=object).str.strip()
        over = (pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce") > 89).to_numpy()
        mask = pd.Series(over[codes], index=data.index)
        if mask.any():
            findings.append(Finding(
                "age_over_89", "error",
                f"{int(mask.sum())} row(s) give an age over 89, which HIPAA Safe Harbor counts as an identifier",
                fix='write every age over 89 as "90+"', column="age_at_onset", file=table.kind,
                rows=table.rows(mask), patient_ids=_ids(table, mask)))
    return findings
