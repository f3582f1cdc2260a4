"""National identity and health numbers recognised by their check digit or letter.

The checks are python-stdnum's (a well-kept library of number formats); the German health-insurance
number (Krankenversichertennummer), which stdnum does not know, is checked here by its published rule.
Each format has a *shape* (a regular expression on the compact value: separators removed,
upper case), so that the checksum runs only on values of the right form, and each value is judged
once per distinct value.

``find(values)`` says which format each value is; ``in_text(text)`` finds the numbers inside free
text that carry letters (DNI, NIE, codice fiscale, KVNR), which are specific enough to find without
a label. Pure digit runs (BSN, NIF, NHS number...) are found in free text only after a label such as
"BSN" or "DNI": one 9-digit number in 11 passes the BSN's 11-test by chance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

__all__ = ["IdFormat", "FORMATS", "compact", "identify", "identify_many", "in_text"]


def _kvnr(value: str) -> bool:
    """Germany's Krankenversichertennummer (the unchangeable part, 10 characters): a letter and 9
    digits. The letter becomes its number 01-26; the 10 digits are weighted 1, 2, 1, 2, ...; the
    digit sums of the products add up to the check digit modulo 10 (GKV-Spitzenverband,
    Richtlinien nach § 290 SGB V, Anlage 1)."""
    if not re.fullmatch(r"[A-Z]\d{9}", value):
        return False
    digits = f"{ord(value[0]) - 64:02d}" + value[1:9]
    total = 0
    for i, d in enumerate(digits):
        p = int(d) * (1 if i % 2 == 0 else 2)
        total += p // 10 + p % 10
    return total % 10 == int(value[9])


def _stdnum(module: str) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        import importlib

        return importlib.import_module(f"stdnum.{module}").is_valid(value)
    return check


@dataclass(frozen=True)
class IdFormat:
    key: str
    name: str  # one of them: "Spanish DNI"
    label: str  # what a user reads of a column of them: "Spanish DNI numbers (valid check letter)"
    shape: re.Pattern
    valid: Callable[[str], bool]
    letters: bool  # carries letters: specific enough to find in free text without a label


_CF = "[0-9LMNPQRSTUV]"
FORMATS: tuple[IdFormat, ...] = (
    IdFormat("es.dni", "Spanish DNI", "Spanish DNI numbers (valid check letter)", re.compile(r"\d{8}[A-Z]"), _stdnum("es.dni"), True),
    IdFormat("es.nie", "Spanish NIE", "Spanish NIE numbers (valid check letter)", re.compile(r"[XYZ]\d{7}[A-Z]"), _stdnum("es.nie"), True),
    IdFormat("it.codicefiscale", "Italian codice fiscale", "Italian codici fiscali (valid check character)",
             re.compile(rf"[A-Z]{{6}}{_CF}{{2}}[A-EHLMPR-T]{_CF}{{2}}[A-Z]{_CF}{{3}}[A-Z]"), _stdnum("it.codicefiscale"), True),
    IdFormat("de.kvnr", "German KVNR", "German health-insurance numbers (KVNR, valid check digit)", re.compile(r"[A-Z]\d{9}"), _kvnr, True),
    IdFormat("fr.nir", "French NIR", "French NIR / social security numbers (valid key)", re.compile(r"[1-478]\d{4}(?:\d{2}|2A|2B)\d{8}"),
             _stdnum("fr.nir"), False),
    IdFormat("nl.bsn", "Dutch BSN", "Dutch BSN numbers (valid 11-test)", re.compile(r"\d{9}"), _stdnum("nl.bsn"), False),
    IdFormat("pt.nif", "Portuguese NIF", "Portuguese NIF numbers (valid check digit)", re.compile(r"[1-35689]\d{8}"), _stdnum("pt.nif"), False),
    IdFormat("pt.cc", "Portuguese citizen card number", "Portuguese citizen card numbers (valid check digit)", re.compile(r"\d{9}[A-Z0-9]{2}\d"),
             _stdnum("pt.cc"), True),
    IdFormat("gb.nhs", "UK NHS number", "UK NHS numbers (valid check digit)", re.compile(r"\d{10}"), _stdnum("gb.nhs"), False),
    IdFormat("be.nn", "Belgian national register number", "Belgian national register numbers (valid check)", re.compile(r"\d{11}"), _stdnum("be.nn"), False),
    IdFormat("ch.ssn", "Swiss AHV number", "Swiss AHV numbers (valid check digit)", re.compile(r"756\d{10}"), _stdnum("ch.ssn"), False),
    IdFormat("at.vnr", "Austrian social insurance number", "Austrian social insurance numbers (valid check digit)", re.compile(r"\d{10}"), _stdnum("at.vnr"), False),
    IdFormat("se.personnummer", "Swedish personal identity number", "Swedish personal identity numbers (valid check digit)",
             re.compile(r"(?:19|20)?\d{10}"), _stdnum("se.personnummer"), False),
    IdFormat("no.fodselsnummer", "Norwegian national identity number", "Norwegian national identity numbers (valid check digits)", re.compile(r"\d{11}"),
             _stdnum("no.fodselsnummer"), False),
    IdFormat("pl.pesel", "Polish PESEL", "Polish PESEL numbers (valid check digit)", re.compile(r"\d{11}"), _stdnum("pl.pesel"), False),
)
_SEPARATORS = re.compile(r"[\s.\-/]")
_DECIMAL = re.compile(r"\s*\d+[.,]\d+\s*")  # 1234567.89 is a number, not an id without its dot


def compact(value: str) -> str:
    """The value without spaces, dots, dashes or slashes, in upper case: "1234 5678-z" -> "12345678Z"."""
    return _SEPARATORS.sub("", value).upper()


def identify(value: str) -> IdFormat | None:
    """The first format ``value`` is a valid number of, or None. Any separators are allowed."""
    c = compact(value)
    if not 9 <= len(c) <= 16 or not any(ch.isdigit() for ch in c) or _DECIMAL.fullmatch(value):
        return None
    return _first(c)


def identify_many(values: "pd.Series") -> dict:
    """{index: format} for the values of a Series of text that are valid numbers of a format: the
    shapes are matched on the whole Series at once, the checks run only on values of some shape."""
    c = values.astype(str).str.replace(_SEPARATORS.pattern, "", regex=True).str.upper()
    any_shape = "|".join(f"(?:{f.shape.pattern})" for f in FORMATS)
    cand = c[c.str.len().between(9, 16) & c.str.fullmatch(any_shape) & ~values.astype(str).str.fullmatch(_DECIMAL.pattern)]
    return {i: fmt for i, v in cand.items() if (fmt := _first(v)) is not None}


def _first(value: str, formats: tuple[IdFormat, ...] = FORMATS) -> IdFormat | None:
    """The first of ``formats`` whose shape the compact ``value`` has and whose check it passes."""
    for fmt in formats:
        if fmt.shape.fullmatch(value):
            try:
                if fmt.valid(value):
                    return fmt
            except Exception:  # noqa: BLE001 - a malformed value is not an identifier; stdnum raises on some forms
                continue
    return None


_LETTERED = tuple(f for f in FORMATS if f.letters)
_WORD = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]{9,16}(?![A-Za-z0-9])")


def in_text(text: str) -> IdFormat | None:
    """A number carrying letters (DNI, NIE, codice fiscale, KVNR, Portuguese CC)
    written as one word inside free text, or None."""
    for m in _WORD.finditer(text):
        word = m.group(0).upper()
        if not (any(ch.isdigit() for ch in word) and any(ch.isalpha() for ch in word)):
            continue
        if (fmt := _first(word, _LETTERED)) is not None:
            return fmt
    return None
