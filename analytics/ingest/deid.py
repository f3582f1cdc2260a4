"""De-identification guard: refuse identifier-like columns and values.

HIPAA Safe Harbor lists names, record numbers, dates of birth, addresses, phone numbers,
email addresses, social security and health-plan numbers among the identifiers, and asks that
ages over 89 be aggregated as "90+"; the GDPR counts the same as personal data. The guard raises an
*error* finding for each, naming the column, the rule, an example row (the value masked) and the
fix; a file with such a finding is refused. It looks at

- **headers**, in English, Spanish, Catalan, Portuguese, French, Italian, German and Dutch: the
  vocabulary is ``identifiers.toml`` beside this module (rule ``identifier_column``);
- **values**, whatever the header: national identity and health numbers with a valid check
  digit or letter (:mod:`.nationalids`), record numbers, email addresses, phone and social
  security numbers in free text (``identifier_value``), a column of dates of birth
  (``identifier_birth_date``), a column of person names (``identifier_person_name``);
- **patient ids** that look like record numbers or national ids (``identifier_patient_id``),
  which a documented override in the mapping file (``patient_id_override = "why"``) turns into
  an info finding whose reason is recorded with the results.

What it cannot catch is in the README ("De-identification guard").
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from .distinct import distinct
from .io import RawTable
from .nationalids import identify_many, in_text
from .validation_report import Finding, ValidationReport

__all__ = ["scan_identifiers", "header_identifier", "mask", "vocabulary", "words", "mask_patient_ids",
           "GUARD_RULES"]

GUARD_RULES = ("identifier_column", "identifier_value", "identifier_birth_date", "identifier_person_name",
               "identifier_patient_id", "patient_id_override", "age_over_89")

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# Phone numbers in free text: international (+44 20 7946 0958), North American with dashes, dots or
# brackets ((555) 123-4567, 555.123.4567), and any run of 9+ digits after a phone label in the guard's
# languages (Tel. 612 345 678, Handy: 0151 1234567). Bare numbers separated by spaces ("120 80 1500")
# are doses and scores, not phones.
_PHONE = re.compile(
    r"\+\d{1,3}(?:[\s.-]?\d{2,4}){3,5}\b"
    r"|\(\d{3}\)\s?\d{3}[\s.-]\d{4}\b|\b\d{3}-\d{3}-\d{4}\b|\b\d{3}\.\d{3}\.\d{4}\b"
    r"|(?<![A-Za-z])(?:tel(?:[eéè]f[oó]no?|[eé]phone|efon|efoon)?|tlf|tfno|phone|m[oó]vil|mobile?|mobiel|handy|gsm"
    r"|cell(?:ulare)?|telem[oó]vel|fax)\.?\s*(?:n[º°o]\.?\s*)?[:#]?\s*\d(?:[\s./-]?\d){8,}",
    re.IGNORECASE)
_SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
# Columns whose values are machine-checked elsewhere and hold no free text.
_NOT_FREE_TEXT = {"visit_date", "visit_day", "malignancy_screening_date", "pft_date", "hrct_date", "antibody_panel_date",
                  "start_date", "start_day", "stop_date", "stop_day", "cdasi_activity",
                  "cdasi_damage", "prednisone_mg_day", "skindex29_symptoms", "skindex29_emotions",
                  "skindex29_functioning", "itch_vas", "pga_skin", "age_at_onset"}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_LANGUAGES = {"en": "English", "es": "Spanish", "ca": "Catalan", "pt": "Portuguese", "fr": "French",
              "it": "Italian", "de": "German", "nl": "Dutch"}
_MAX_JOIN = 5  # a term may be up to five neighbouring words written together
_SAMPLE = 5000  # distinct values judged per column by the value rules (spread over the column)


# ---------------------------------------------------------------- vocabulary
def words(text: str) -> list[str]:
    """``text`` case-folded, without accents, cut into words at camelCase and anything that is not
    a letter or digit: "FechaDeNacimiento" and "fecha de nacimiento" -> [fecha, de, nacimiento]."""
    text = _CAMEL.sub(" ", str(text))
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return [w for w in re.split(r"[^0-9a-z]+", text) if w]


@dataclass(frozen=True)
class Vocabulary:
    terms: dict[str, tuple[str, str]]  # joined term -> (what, language)
    stems: dict[str, str]  # stem -> what
    unless: dict[str, frozenset[str]]  # what -> words that, in a header, cancel a match of it
    prefixes: tuple[str, ...]  # record-number prefixes, each a joined word run
    sources: dict[str, list[str]]  # what -> sources


def _vocabulary_text() -> str:
    return resources.files(__package__).joinpath("identifiers.toml").read_text(encoding="utf-8")


@functools.cache
def vocabulary() -> Vocabulary:
    """The identifier vocabulary, from ``identifiers.toml`` (read once)."""
    import tomllib

    raw = tomllib.loads(_vocabulary_text())
    terms: dict[str, tuple[str, str]] = {}
    stems: dict[str, str] = {}
    unless: dict[str, frozenset[str]] = {}
    sources: dict[str, list[str]] = {}
    for kind in raw["kinds"].values():
        what = kind["what"]
        sources[what] = list(kind.get("sources", []))
        unless[what] = frozenset("".join(words(t)) for t in kind.get("unless", []))
        for key, values in kind.items():
            if key in ("what", "sources", "unless"):
                continue
            for term in values:
                joined = "".join(words(term))
                if key == "stems":
                    stems[joined] = what
                else:
                    terms.setdefault(joined, (what, _LANGUAGES.get(key, key)))
    prefixes = tuple(sorted({"".join(words(t)) for t in raw["record_number_prefixes"]["terms"]}, key=len, reverse=True))
    return Vocabulary(terms, stems, unless, prefixes, sources)


def header_identifier(header: str) -> list[tuple[str, str, str]]:
    """What a header looks like it holds: (what, the term or stem that matched, its language)."""
    vocab = vocabulary()
    w = words(header)
    found: dict[str, tuple[str, str, str]] = {}
    for i in range(len(w)):
        for j in range(i + 1, min(len(w), i + _MAX_JOIN) + 1):
            joined = "".join(w[i:j])
            if joined in vocab.terms:
                what, language = vocab.terms[joined]
                found.setdefault(what, (what, " ".join(w[i:j]), language))
    for word in (*w, "".join(w)):
        for stem, what in vocab.stems.items():
            if stem in word:
                found.setdefault(what, (what, stem, "a word containing it"))
    present = set(w)
    return sorted(m for what, m in found.items() if not present & vocab.unless[what])


@functools.cache
def _prefix_patterns() -> tuple[re.Pattern, re.Pattern]:
    """(free text: a prefix word, then a number of 4+ digits; a patient id: a prefix and digits only)."""
    alts = "|".join(r"[\s._-]?".join(re.escape(ch) for ch in p) for p in vocabulary().prefixes)
    label = r"(?:\s*(?:n[º°o]\.?|nr\.?|no\.?|num\.?|number|#|:|-)\s*)*"
    not_a_date = r"(?!\d{4}[-/.]\d{1,2}[-/.]\d{1,2})(?!\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})"
    text = re.compile(rf"(?<![A-Za-z0-9])(?:{alts}){label}\s*{not_a_date}\d(?:[\s\-]?\d){{3,}}", re.IGNORECASE)
    pid = re.compile(rf"(?:{alts}){label}[\s:#._\-/]*\d{{4,}}[A-Za-z]?", re.IGNORECASE)
    return text, pid


# ---------------------------------------------------------------- helpers
def mask(value: object, keep: int = 1) -> str:
    """A value with all but the first character of each word masked: "María García" -> "M**** G*****",
    "12345678Z" -> "1********". Shown in findings so that a report never repeats an identifier."""
    text = str(value)[:40]
    out, seen = [], 0
    for ch in text:
        if ch.isalnum():
            out.append(ch if seen < keep else "*")
            seen += 1
        else:
            out.append(ch)
            seen = 0
    return "".join(out)


def _ids(table: RawTable, mask_: pd.Series) -> list[str]:
    if "patient_id" not in table.data.columns:
        return []
    return table.data.loc[mask_, "patient_id"].head(20).tolist()


def _uniques(s: pd.Series, limit: int | None = _SAMPLE) -> tuple[np.ndarray, pd.Series]:
    """(codes, distinct non-blank stripped values as a Series indexed by code), at most ``limit`` of
    them, spread evenly over the column's distinct values."""
    codes, uniques = distinct(s)
    u = pd.Series(uniques, dtype=object).astype(str).str.strip()
    u = u[u != ""]
    if limit is not None and len(u) > limit:
        u = u.iloc[np.linspace(0, len(u) - 1, limit).astype(int)]
    return codes, u


def _example(table: RawTable, col: str, rows_mask: pd.Series) -> tuple[str, list[int]]:
    rows = table.rows(rows_mask)
    if not rows:
        return "", []
    value = table.data[col].iloc[int(np.flatnonzero(rows_mask.to_numpy())[0])]
    return f"; e.g. row {rows[0]}: {mask(str(value).strip())!r}", rows


def _column_finding(table: RawTable, col: str, rule: str, message: str, fix: str) -> Finding:
    """A finding about a whole column: its non-blank rows (the first 50 listed), an example masked."""
    nonblank = table.data[col].astype(str).str.strip() != ""
    example, rows = _example(table, col, nonblank)
    return Finding(rule, "error", message + example, fix=fix, column=col, file=table.kind, rows=rows[:50],
                   count=int(nonblank.sum()))


def _rows_of(s: pd.Series, codes: np.ndarray, hit_codes) -> pd.Series:
    hit = np.zeros(int(codes.max()) + 2 if len(codes) else 1, dtype=bool)
    hit[np.asarray(list(hit_codes), dtype=int)] = True
    return pd.Series(hit[codes], index=s.index)


# ---------------------------------------------------------------- rules
def _header_rule(table: RawTable) -> tuple[list[Finding], set[str]]:
    findings, flagged = [], set()
    data = table.data
    for label in table.unmatched:
        matched = header_identifier(label)
        if not matched:
            continue
        flagged.add(label)
        what = " / ".join(m[0] for m in matched)
        why = "; ".join(f"{m[1]!r} ({m[2]})" for m in matched)
        findings.append(_column_finding(
            table, label, "identifier_column",
            f"column {label!r} looks like it holds {what}, which identify a patient (the header matches {why})",
            "delete this column from the export (or, if it holds no identifiers, rename it) and load the file again"))
    return findings, flagged


def _text_rules(table: RawTable, col: str, codes: np.ndarray, u: pd.Series) -> list[Finding]:
    """Identifier-like values inside free text: emails, phones, SSNs, record numbers, lettered national ids."""
    s = table.data[col]
    long = u[u.str.len() >= 7]
    if long.empty:
        return []
    text_re, _ = _prefix_patterns()
    checks = [("email addresses", lambda v: v.str.contains(_EMAIL, regex=True)),
              ("social security numbers", lambda v: v.str.contains(_SSN, regex=True))]
    if col != "patient_id":  # a patient id may start with "+" (formula-like ids are accepted); its record
        # numbers are the patient-id rule's
        checks.insert(1, ("phone numbers", lambda v: v.str.contains(_PHONE, regex=True)))
        checks.append(("record numbers (a label such as MRN or NHC, then a number)",
                       lambda v: v.str.contains(text_re, regex=True)))
    findings = []
    for what, test in checks:
        hits = long[test(long)]
        if hits.empty:
            continue
        findings.append(_value_finding(table, col, s, codes, hits.index, what))
    if col != "patient_id":
        lettered = long[long.str.contains(r"[0-9]", regex=True) & long.str.contains(r"[A-Za-z]", regex=True)]
        found = {i: f for i, v in lettered.items() if (f := in_text(v)) is not None}
        if found:
            labels = sorted({f.label for f in found.values()})
            findings.append(_value_finding(table, col, s, codes, list(found), " / ".join(labels)))
    return findings


def _value_finding(table, col, s, codes, hit_codes, what) -> Finding:
    rows_mask = _rows_of(s, codes, hit_codes)
    example, rows = _example(table, col, rows_mask)
    return Finding(
        "identifier_value", "error", f"column {col!r} contains values that look like {what}{example}",
        fix=f"remove the {what.split(' (')[0]} from column {col!r} (or drop the column) and load the file again",
        column=col, file=table.kind, rows=rows, patient_ids=_ids(table, rows_mask))


def _national_id_column(table: RawTable, col: str, codes: np.ndarray, u: pd.Series) -> Finding | None:
    """A column most of whose distinct values are national identity numbers with a valid check."""
    found = identify_many(u)  # a decimal number is not an id
    if not found or len(found) < 0.5 * len(u):
        return None
    labels = pd.Series([f.label for f in found.values()]).value_counts()
    s = table.data[col]
    rows_mask = _rows_of(s, codes, found)
    example, rows = _example(table, col, rows_mask)
    return Finding(
        "identifier_value", "error",
        f"column {col!r} holds {labels.index[0]}: {len(found)} of {len(u)} distinct value(s) pass the number's "
        f"check{example}",
        fix=f"delete column {col!r} from the export and load the file again", column=col, file=table.kind,
        rows=rows, patient_ids=_ids(table, rows_mask))


_DATE_SHAPE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[T ][\d:.]+)?|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}(?:[T ][\d:.]+)?")


def _parse_dates(values: pd.Series) -> pd.Series:
    """Dates in any of the export's forms (ISO first; dd.mm.yyyy read day first: a year apart at most)."""
    iso = pd.to_datetime(values, errors="coerce", format="ISO8601")
    rest = iso.isna()
    if rest.any():
        iso[rest] = pd.to_datetime(values[rest], errors="coerce", dayfirst=True, format="mixed")
    return iso


def _per_patient(table: RawTable, col: str) -> tuple[pd.Series, pd.Series] | None:
    """(patient -> the column's single value, share of patients whose value is constant), or None."""
    data = table.data
    if "patient_id" not in data.columns:
        return None
    v = data[col].astype(str).str.strip()
    keep = v != ""
    if not keep.any():
        return None
    g = pd.DataFrame({"p": data.loc[keep, "patient_id"], "v": v[keep]}).groupby("p", sort=False)["v"]
    n = g.nunique()
    return g.first(), float((n == 1).mean())


def _birth_date_rule(table: RawTable, col: str, u: pd.Series) -> Finding | None:
    """Dates constant within a patient, before the first visit and decades earlier: dates of birth."""
    data = table.data
    if "visit_date" not in data.columns or "patient_id" not in data.columns:
        return None
    if (u.str.fullmatch(_DATE_SHAPE)).mean() < 0.9 or _parse_dates(u).notna().mean() < 0.9:
        return None
    per = _per_patient(table, col)
    if per is None or per[1] < 0.95:
        return None
    first_value, _ = per
    codes, dates = distinct(data["visit_date"])  # each distinct visit date parsed once
    parsed = np.append(_parse_dates(pd.Series(dates, dtype=object).astype(str).str.strip()).to_numpy(),
                       np.datetime64("NaT", "ns"))  # code -1 (no value): NaT
    first_visit = pd.Series(parsed[codes], index=data.index).groupby(data["patient_id"]).min()
    born = pd.Series(_parse_dates(pd.Series(first_value.to_numpy(), dtype=object)).to_numpy(), index=first_value.index)
    gap = (first_visit.reindex(born.index) - born).dt.days / 365.25
    gap = gap.dropna()
    # three patients at least and a median of 18 years (an adult's age): one date of onset 16 years back is
    # a long history, not a birth date (hypothesis found that false positive)
    if len(gap) < 3 or (gap > 0).mean() < 0.9 or gap.median() < 18:
        return None
    return _column_finding(
        table, col, "identifier_birth_date",
        f"column {col!r} looks like dates of birth: one date per patient, before the first visit by a median of "
        f"{gap.median():.0f} years",
        f"delete column {col!r} (give the age at onset as age_at_onset, with ages over 89 as \"90+\") and load "
        "the file again")


_NAME_WORD = re.compile(r"[^\W\d_][^\W\d_'’\-]*(?:['’\-][^\W\d_]+)*")
_PARTICLES = {"de", "del", "la", "las", "los", "van", "von", "der", "den", "ten", "ter", "da", "das", "do", "dos",
              "di", "du", "des", "le", "y", "i", "e", "el", "al", "bin", "zu", "della", "dello", "st"}


def _name_like(value: str) -> bool:
    parts = value.replace(",", " ").split()
    if not 1 <= len(parts) <= 5:
        return False
    capitalised = 0
    for p in parts:
        if p.lower() in _PARTICLES:
            continue
        if not _NAME_WORD.fullmatch(p) or not p[0].isupper() or len(p) < 2 or (len(p) > 3 and p.isupper()):
            return False
        capitalised += 1
    return capitalised >= 1


def _person_name_rule(table: RawTable, col: str, u: pd.Series, norm) -> Finding | None:
    """Capitalised words, constant within a patient, many distinct values: person names."""
    if len(u) < 5:
        return None
    name_like = u[u.map(_name_like)]
    if len(name_like) < 0.8 * len(u):
        return None
    if norm is not None:
        known = name_like.map(lambda v: norm.lookup(v) is not None)
        if known.mean() > 0.2:  # drug names (and their brands) are capitalised words too
            return None
    per = _per_patient(table, col)
    if per is None or per[1] < 0.95 or len(u) < 0.5 * len(per[0]):
        return None
    return _column_finding(
        table, col, "identifier_person_name",
        f"column {col!r} looks like person names: capitalised words, one value per patient, {len(u)} distinct "
        f"value(s) for {len(per[0])} patient(s)",
        f"delete column {col!r} from the export and load the file again (if it holds no person names, recode its "
        "values before the export: codes rather than capitalised words)")


_PREFIX_REASON, _DIGITS_REASON = "a record-number prefix and digits", "a run of 7 or more digits"


def _id_reasons(u: pd.Series, judged: dict | None = None) -> dict:
    """{index of ``u``: why} for the patient ids of ``u`` that look like record numbers or national
    ids, in the order the rules are tried (prefix, digits, a valid national number), then by index.
    ``judged``: the verdicts on ids already seen (the visits' ids, when the therapies file repeats
    them), used and extended: each distinct id is judged once per export."""
    if judged:
        known = u.map(judged)
        todo = u[known.isna().to_numpy()]
    else:
        known, todo = None, u
    reasons: dict = {}
    if len(todo):
        _, pid_re = _prefix_patterns()
        digits = todo.str.replace(r"[\s.\-/]", "", regex=True)
        for i in todo.index[todo.str.fullmatch(pid_re)]:
            reasons[i] = _PREFIX_REASON
        for i in todo.index[digits.str.fullmatch(r"\d{7,}")]:
            reasons.setdefault(i, _DIGITS_REASON)
        for i, f in identify_many(todo).items():
            reasons.setdefault(i, f"a valid {f.name}")
    if judged is not None:
        judged.update(zip(todo.tolist(), (reasons.get(i, "") for i in todo.index)))
    if known is not None:
        reasons.update((i, r) for i, r in known.items() if isinstance(r, str) and r)
    rank = {_PREFIX_REASON: 0, _DIGITS_REASON: 1}
    return dict(sorted(reasons.items(), key=lambda item: (rank.get(item[1], 2), item[0])))


def _patient_id_rule(table: RawTable, override: str | None, judged: dict | None = None) -> Finding | None:
    data = table.data
    if "patient_id" not in data.columns:
        return None
    s = data["patient_id"]
    codes, u = _uniques(s, limit=None)  # every id: one record number among pseudonyms is one too many
    if u.empty:
        return None
    header = table.headers.get("patient_id", "patient_id")
    header_kinds = [m for m in header_identifier(header)
                    if m[0] in ("medical record numbers", "national identity or social security numbers")]
    reasons = _id_reasons(u, judged)
    if not reasons and not header_kinds:
        return None
    why = pd.Series(list(reasons.values()), dtype=object).value_counts()
    parts = [f"{n} {'looks' if n == 1 else 'look'} like {r}" for r, n in why.items()]
    if header_kinds:
        parts.insert(0, f"the column is headed {header!r}, which names {header_kinds[0][0]}")
    rows_mask = _rows_of(s, codes, reasons) if reasons else pd.Series(True, index=s.index)
    example, rows = _example(table, "patient_id", rows_mask)
    n_ids = len(reasons) if reasons else len(u)
    if override:
        return Finding(
            "patient_id_override", "info",
            f"column 'patient_id': {n_ids} patient id(s) look like record numbers or national ids ({'; '.join(parts)}), "
            "accepted because "
            f"the mapping file says: {override!r}", column="patient_id", file=table.kind, count=n_ids)
    return Finding(
        "identifier_patient_id", "error",
        f"column 'patient_id': {n_ids} of {len(u)} patient id(s) look like record numbers or national ids, not "
        "pseudonyms "
        f"({'; '.join(parts)}){example}",
        fix="replace every patient_id with a pseudonym before the export: a study code from a key table kept apart "
            "from the data (CADM-0001, CADM-0002, ...), or a keyed hash (HMAC-SHA-256 with a secret the department "
            "keeps; a plain hash of a record number can be reversed by hashing every record number). If these ids "
            "are pseudonyms already, say why in the mapping file: patient_id_override = \"<the reason>\"; the "
            "reason is recorded in results.json and manifest.json",
        column="patient_id", file=table.kind, rows=rows, count=len(rows) or len(s))


def scan_identifiers(table: RawTable, patient_id_override: str | None = None, norm=None,
                     judged: dict | None = None) -> list[Finding]:
    """Findings for identifier-like headers, values and patient ids, and for ages over 89.
    ``norm`` (a DrugNormaliser) keeps drug names from reading as person names; ``judged``: a dict
    shared by the tables of one export, so that each distinct patient id is judged once."""
    findings, flagged = _header_rule(table)
    data = table.data
    if table.kind == "visits" or "patient_id" in data.columns:
        f = _patient_id_rule(table, patient_id_override, judged)
        if f is not None:
            findings.append(f)
    for col in data.columns:
        if col in _NOT_FREE_TEXT or col in flagged:
            continue
        s = data[col]
        if s.empty:
            continue
        codes, u = _uniques(s)
        if u.empty:
            continue
        f = _national_id_column(table, col, codes, u) if col != "patient_id" else None
        found = [f] if f is not None else _text_rules(table, col, codes, u)
        if col in table.unmatched and not found:
            f = _birth_date_rule(table, col, u) or _person_name_rule(table, col, u, norm)
            found = [f] if f is not None else []
        findings.extend(found)

    if "age_at_onset" in data.columns:
        codes, uniques = distinct(data["age_at_onset"])  # each distinct age once
        text = pd.Series(uniques, dtype=object).str.strip()
        over = (pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce") > 89).to_numpy()
        m = pd.Series(over[codes], index=data.index)
        if m.any():
            findings.append(Finding(
                "age_over_89", "error",
                f"{int(m.sum())} row(s) give an age over 89, which HIPAA Safe Harbor counts as an identifier",
                fix='write every age over 89 as "90+"', column="age_at_onset", file=table.kind,
                rows=table.rows(m), patient_ids=_ids(table, m)))
    return findings


def mask_patient_ids(report: ValidationReport) -> None:
    """When the patient ids are refused as identifiers, no finding repeats them: each example id is masked."""
    import dataclasses

    report.findings[:] = [dataclasses.replace(f, patient_ids=tuple(mask(p) for p in f.patient_ids))
                          if f.patient_ids else f for f in report.findings]
